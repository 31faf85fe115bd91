"""wire2.py - what the e2e clients of cport-server's chat mode share: packet
ids, a tiny protobuf codec (written from docs/protocol.md), framing, and the
server's /metrics and RSS. Imported by proto2.py, chat_client.py and
scale_bad_input.py (their own directory is on sys.path when run as scripts)."""
import socket, struct

(C_LOGIN, S_LOGIN, C_ENTER_ROOM, S_ENTER_ROOM, C_CHAT, S_CHAT, C_LEAVE_ROOM, S_LEAVE_ROOM, S_ERROR,
 C_PING, S_PONG, S_MEMBER_JOINED, S_MEMBER_LEFT) = range(1, 14)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def fs(num, b):
    """a length-delimited field (bytes, or str as UTF-8)"""
    b = b.encode() if isinstance(b, str) else b
    return varint(num << 3 | 2) + varint(len(b)) + b


def fi(num, v):
    """a varint field; 0 is left out, as proto3 encoders do"""
    return varint(num << 3) + varint(v) if v else b""


def read_varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def decode(body):
    """protobuf -> {field: [values]} (varints as int, length-delimited as bytes)"""
    out, i = {}, 0
    while i < len(body):
        key, i = read_varint(body, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(body, i)
        elif wt == 2:
            n, i = read_varint(body, i)
            v, i = body[i:i + n], i + n
        else:
            raise ValueError(f"wire type {wt}")
        out.setdefault(num, []).append(v)
    return out


def pkt(pid, body=b""):
    return struct.pack("<HH", 4 + len(body), pid) + body


def metrics_text(mport):
    s = socket.create_connection(("127.0.0.1", mport))
    s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    d = b""
    while True:
        x = s.recv(65536)
        if not x:
            break
        d += x
    s.close()
    return d.decode()


def metric(mport, name):
    for line in metrics_text(mport).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
