#!/usr/bin/env python3
"""example_client.py NAME PORT - a small client exchange with one of examples/, every byte
compared. Used by tests/e2e/examples.sh on Linux and under Wine (the example an .exe)."""
import socket
import struct
import sys

NAME, PORT = sys.argv[1], int(sys.argv[2])


def conn():
    return socket.create_connection(("127.0.0.1", PORT), timeout=20)


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        d = s.recv(n - len(got))
        assert d, f"EOF after {len(got)} of {n} bytes"
        got += d
    return got


def packet(pid, body):
    return struct.pack("<HH", 4 + len(body), pid) + body


def recv_packet(s):
    size, pid = struct.unpack("<HH", recv_exact(s, 4))
    return pid, recv_exact(s, size - 4)


def echo_port():
    a, b = conn(), conn()
    data = bytes((i * 7 + 3) % 251 for i in range(100000))
    a.sendall(data[:50000])
    b.sendall(b"second client")
    a.sendall(data[50000:])
    assert recv_exact(a, len(data)) == data, "echo differs"
    assert recv_exact(b, 13) == b"second client", "echo differs (b)"


def packet_echo():
    s = conn()
    pk = b"".join(packet(i, bytes([i]) * n) for i, n in enumerate([0, 1, 100, 4000, 7]))
    for i in range(0, len(pk), 3):  # a few bytes at a time: framing must hold
        s.sendall(pk[i:i + 3])
    assert recv_exact(s, len(pk)) == pk, "packet echo differs"


def broadcast():
    a = conn()
    a.sendall(packet(1, b"a1"))
    assert recv_packet(a) == (1, b"a1")  # a is registered
    b = conn()
    b.sendall(packet(2, b"b1"))
    assert recv_packet(b) == (2, b"b1")  # b is registered
    assert recv_packet(a) == (2, b"b1")
    a.sendall(packet(3, b"to everyone"))
    assert recv_packet(a) == (3, b"to everyone")
    assert recv_packet(b) == (3, b"to everyone")


def chat_relay():
    a, b = conn(), conn()

    def next_msg(s, want_count=None):
        while True:  # COUNT announcements (id 4) come every so often: skip them
            pid, body = recv_packet(s)
            if pid == 4:
                if want_count is not None and struct.unpack("<I", body)[0] == want_count:
                    return
                continue
            assert want_count is None, f"packet {pid} before the count"
            return pid, body

    a.sendall(packet(1, bytes([5])))
    b.sendall(packet(1, bytes([5])))
    next_msg(a, want_count=2)  # both are in room 5
    a.sendall(packet(2, b"hello \x00 room"))
    pid, body = next_msg(b)
    assert pid == 3 and body[8:] == b"hello \x00 room", (pid, body)
    assert struct.unpack("<Q", body[:8])[0] != 0


{"echo_port": echo_port, "packet_echo": packet_echo, "broadcast": broadcast,
 "chat_relay": chat_relay}[NAME]()
print(f"example_client: {NAME} ok")
