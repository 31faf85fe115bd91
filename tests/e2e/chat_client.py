#!/usr/bin/env python3
"""An independent chat client for the end-to-end tests, written from
docs/protocol.md alone (a tiny protobuf codec included).

  chat_client.py PORT fanout   - three players in one room: every chat reaches
                                  every member exactly once, in order
  chat_client.py PORT garbage  - malformed input: each kind closes only its
                                  own connection (or just gets S_ERROR)
"""
import os, socket, struct, sys

PORT = int(sys.argv[1])
C_LOGIN, S_LOGIN, C_ENTER_ROOM, S_ENTER_ROOM, C_CHAT, S_CHAT, C_LEAVE_ROOM, S_LEAVE_ROOM, S_ERROR = range(1, 10)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_str(num, s):
    b = s.encode() if isinstance(s, str) else s
    return varint(num << 3 | 2) + varint(len(b)) + b


def field_int(num, v):
    return varint(num << 3) + varint(v)


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


def read_varint(b, i):
    shift = v = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def packet(pid, body=b""):
    return struct.pack("<HH", 4 + len(body), pid) + body


class Conn:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
        self.buf = b""

    def send(self, pid, body=b""):
        self.s.sendall(packet(pid, body))

    def recv(self):
        while True:
            if len(self.buf) >= 4:
                size, pid = struct.unpack("<HH", self.buf[:4])
                if len(self.buf) >= size:
                    body, self.buf = self.buf[4:size], self.buf[size:]
                    return pid, decode(body)
            d = self.s.recv(65536)
            if not d:
                return None, None
            self.buf += d

    def expect(self, pid):
        got, body = self.recv()
        assert got == pid, f"expected packet {pid}, got {got} {body}"
        return body

    def closed(self):
        """True once the server has closed this connection (EOF or reset)."""
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False


def fanout():
    players = []
    for name in ("ann", "bob", "cy"):
        c = Conn()
        # out of state first: a chat before login is an error, not a disconnect
        c.send(C_CHAT, field_str(1, "too early"))
        e = c.expect(S_ERROR)
        assert e[1] == [3], e  # ERR_NOT_LOGGED_IN
        c.send(C_LOGIN, field_str(1, name))
        pid = c.expect(S_LOGIN)[1][0]
        c.send(C_ENTER_ROOM, field_str(1, "py-room"))
        r = c.expect(S_ENTER_ROOM)
        assert r[1] == [b"py-room"] and r[2][0] == len(players) + 1, r
        players.append((c, pid))
    for k in range(5):
        for i, (c, pid) in enumerate(players):
            c.send(C_CHAT, field_str(1, f"{i}:{k}") + field_int(2, 1000 + k))
    for c, _ in players:
        seen = {}
        for _ in range(15):
            body = c.expect(S_CHAT)
            who, text, t = body[1][0], body[2][0].decode(), body[3][0]
            i, k = map(int, text.split(":"))
            assert players[i][1] == who, (who, text)
            assert t == 1000 + k
            assert seen.get(i, -1) + 1 == k, f"chat {text} out of order"
            seen[i] = k
        assert all(seen[i] == 4 for i in range(3)), seen
    c, _ = players[0]
    c.send(C_LEAVE_ROOM)
    assert c.expect(S_LEAVE_ROOM)[1] == [b"py-room"]
    c.send(C_LEAVE_ROOM)
    assert c.expect(S_ERROR)[1] == [5]  # ERR_NOT_IN_ROOM
    print("fanout ok")


def garbage():
    cases = {
        "size 0": struct.pack("<HH", 0, C_LOGIN),
        "size 3": struct.pack("<HH", 3, C_LOGIN),
        "size over max": struct.pack("<HH", 1025, C_LOGIN) + b"x" * 1021,
        "random 64 KiB": os.urandom(65536),
    }
    for what, data in cases.items():
        c = Conn()
        try:
            c.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert c.closed(), f"{what}: connection not closed"
    # undecodable body and unknown id: S_ERROR, then close
    for what, (pid, body, code) in {"undecodable": (C_LOGIN, b"\xff\xff\xff", 1),
                                    "unknown id": (999, b"", 2)}.items():
        c = Conn()
        c.send(pid, body)
        e = c.expect(S_ERROR)
        assert e[1] == [code], f"{what}: {e}"
        assert c.closed(), f"{what}: connection not closed after S_ERROR"
    # out of state: errors, and the connection stays usable
    c = Conn()
    c.send(C_ENTER_ROOM, field_str(1, "r"))
    assert c.expect(S_ERROR)[1] == [3]
    c.send(C_LOGIN, field_str(1, "x" * 40))
    assert c.expect(S_ERROR)[1] == [6]  # ERR_BAD_NAME
    c.send(C_LOGIN, field_str(1, "ok"))
    c.expect(S_LOGIN)
    c.send(C_LOGIN, field_str(1, "again"))
    assert c.expect(S_ERROR)[1] == [4]
    print("garbage ok")


{"fanout": fanout, "garbage": garbage}[sys.argv[2]]()
