#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets: tests/fuzz/corpus/{framing,chat}/.

    tests/fuzz/make_seeds.py        (re)write the seeds listed here; other files in the corpora
                                    (seeds added by hand, the fuzzer's kept finds) stay

Each seed is small and means something (see the comment of each); the input formats are
described at the top of fuzz_framing.c and in parse_script() of fuzz_chat.c.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def pkt(pid, body=b""):
    """A cport packet: {uint16 size (header included), uint16 id} little-endian, then the body."""
    return struct.pack("<HH", 4 + len(body), pid) + body


# ---- framing -------------------------------------------------------------------------------------
# flags, max_packet (uint16), k (stop at packet k + 1), n (fail allocation n), number of chunk
# lengths, the lengths (b < 192: b, else 192 + (b - 192) * 256), then the stream.
STOP, NOMEM, CYCLE, GUARD_START, GUARD_ALT, EMPTY_FIRST = 1, 2, 4, 8, 16, 32


def framing(stream, flags=0, max_packet=16384, k=0, n=0, lens=()):
    return struct.pack("<BHBBB", flags, max_packet, k, n, len(lens)) + bytes(lens) + stream


THREE = pkt(1, b"abc") + pkt(2) + pkt(3, bytes(range(40)))

FRAMING = {
    "one_packet": framing(pkt(7, b"hello")),
    "three_whole": framing(THREE),
    "three_1byte_chunks": framing(THREE, CYCLE, lens=[1]),
    "split_header_2_2": framing(THREE, CYCLE, lens=[2]),
    "split_header_3_then_rest": framing(THREE, 0, lens=[3]),
    "split_body": framing(THREE, 0, lens=[9, 5]),
    "empty_chunks": framing(THREE, CYCLE | EMPTY_FIRST, lens=[0, 5, 0, 1]),
    "guard_start": framing(THREE, CYCLE | GUARD_START, lens=[6]),
    "guard_alternating": framing(THREE, CYCLE | GUARD_ALT, lens=[7, 1]),
    "tail_incomplete": framing(pkt(1, b"abc") + pkt(2, b"xyz")[:5]),
    "tail_header_only": framing(pkt(1, b"abc") + b"\x09\x00"),
    "bad_size_below_4": framing(pkt(1, b"abc") + b"\x03\x00\x01\x00" + pkt(1)),
    "bad_size_zero_split": framing(pkt(1) + b"\x00\x00\x00\x00", CYCLE, lens=[1]),
    "bad_size_over_max": framing(pkt(1, b"ab") + pkt(2, b"x" * 20), max_packet=16),
    "bad_header_split": framing(pkt(1, b"ab") + pkt(2, b"x" * 20), 0, max_packet=16, lens=[7, 2]),
    "exactly_max_packet": framing(pkt(5, b"y" * 12) * 2, max_packet=16),
    "max_packet_4": framing(pkt(1) * 3 + pkt(1, b"z"), max_packet=4),
    "big_packet_big_chunks": framing(pkt(9, bytes(1200)), CYCLE, lens=[150, 193]),
    "stop_at_second": framing(THREE, STOP, k=1),
    "stop_in_kept_part": framing(THREE, STOP | CYCLE, k=0, lens=[3]),
    "nomem_tail": framing(pkt(1) + pkt(2, b"abcdef")[:6], NOMEM, n=0),
    "nomem_header_part_grows": framing(THREE, NOMEM | CYCLE, n=1, lens=[2]),
    "empty_stream": framing(b""),
}

# ---- chat ----------------------------------------------------------------------------------------
# Records: h (client h & 1, kind (h >> 1) & 7), then the kind's bytes (see fuzz_chat.c).


def login(c, name):
    return bytes([c | 0 << 1, len(name)]) + name


def enter(c, length, which=0):  # a bounded room: length 1..32 (0 empty, 33 too long)
    return bytes([c | 1 << 1, length + 34 * which])


def chat(c, text):
    return bytes([c | 2 << 1]) + struct.pack("<H", len(text)) + text


def leave(c):
    return bytes([c | 3 << 1])


def body(c, sel, b):  # sel & 15 < 12: id 1, 3, 5, 7 by sel & 3; else 0, 2, 9, 256 + sel
    return bytes([c | 4 << 1, sel, len(b)]) + b


def raw(c, b):
    return bytes([c | 5 << 1, len(b)]) + b


CHAT = {
    "login": login(0, b"ann"),
    "conversation": login(0, b"ann") + login(1, b"bob") + enter(0, 5) + enter(1, 5)
    + chat(0, b"hi bob") + chat(1, b"hi ann") + leave(0) + chat(1, b"alone") + leave(1),
    "two_rooms": login(0, b"ann") + login(1, b"bob") + enter(0, 4) + enter(1, 4, 1)
    + chat(0, b"in a") + chat(1, b"in b") + enter(0, 4, 1) + chat(0, b"now in b"),
    "same_room_twice": login(0, b"ann") + enter(0, 3) + enter(0, 3) + chat(0, b"x"),
    "room_32_bytes": login(0, b"n" * 32) + enter(0, 32) + chat(0, b"long names"),
    "before_login": enter(0, 3) + chat(0, b"who") + leave(0) + login(0, b"late"),
    "bad_names": login(0, b"") + login(0, b"n" * 33) + login(0, b"ok") + login(0, b"again"),
    "bad_rooms": login(0, b"ann") + enter(0, 0) + enter(0, 33) + leave(0),
    "chat_too_long": login(0, b"ann") + enter(0, 2) + chat(0, b"t" * 1001) + chat(0, b"t" * 1000),
    "not_utf8": login(0, b"\xff\xfe") + login(1, b"ok") + enter(1, 1) + chat(1, b"\xed\xa0\x80"),
    "body_not_protobuf": login(1, b"bob") + body(0, 0, b"\xff\xff\xff") + login(0, b"after"),
    "body_real_ids": body(0, 0, b"\x0a\x03ann") + body(0, 1, b"\x0a\x05lobby")
    + body(0, 2, b"\x0a\x02hi\x10\x2a") + body(0, 3, b""),
    "unknown_id": login(0, b"ann") + body(0, 12, b"") + login(1, b"bob") + body(1, 15, b"zz"),
    "bad_header": login(0, b"ann") + raw(0, b"\x02\x00\x01\x00") + login(1, b"bob"),
    "oversize_header": login(0, b"ann") + raw(0, b"\xff\xff\x01\x00"),
    "tail_incomplete": login(0, b"ann") + raw(0, pkt(1, b"\x0a\x03bob")[:7]),
    "raw_enter_unbounded": login(0, b"ann") + raw(0, pkt(3, b"\x0a\x05lobby")) + chat(0, b"hi"),
    "error_then_garbage": body(0, 12, b"") + raw(0, b"\x00\x00\x00\x00" * 4),
    # fuzz_chat's own find (issue 13, "one reference per completion"): a strand run that banked
    # a third reference (a receive and another worker's broadcast send, one banked already)
    "refbank_third_reference": bytes.fromhex(
        "0003610000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "0000000000000000000003000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000003202d0000006e6e0103626f6202040226040400696e2061050400696effffffffffffff"
        "ffffffffffff206202260408006e6f7720696e20620000feffff7f000000000a0362"
    ),
}


def write(name, seeds):
    # Writes (and rewrites) its own seeds only: seeds added by hand or kept from the fuzzer's
    # finds (p2_*, refbank_third_reference) live in the same folder and stay.
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for k, v in sorted(seeds.items()):
        with open(os.path.join(d, k), "wb") as f:
            f.write(v)
    print(f"{d}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    write("framing", FRAMING)
    write("chat", CHAT)
