#!/usr/bin/env python3
"""An independent chat client for the end-to-end tests, written from
docs/protocol.md alone (a tiny protobuf codec included).

  chat_client.py PORT fanout          - three players in one room: every chat
                                         reaches every member exactly once, in order
  chat_client.py PORT garbage LOGFILE  - malformed input, each kind on its own
                                         connection: each closes only that
                                         connection, with a line in the server's
                                         log (LOGFILE, its stderr) naming the
                                         connection's address and why; packets out
                                         of state only get S_ERROR, and the
                                         connection stays usable. Prints
                                         "closes: bad_packet=N local=M" for the
                                         caller to compare with the server's counters.
"""
import os, random, socket, struct, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PORT = int(sys.argv[1])
C_LOGIN, S_LOGIN, C_ENTER_ROOM, S_ENTER_ROOM, C_CHAT, S_CHAT, C_LEAVE_ROOM, S_LEAVE_ROOM, S_ERROR = range(1, 10)


from wire2 import decode, fi, fs, read_varint, varint  # noqa: F401 (the codec)


def field_str(num, s):
    return fs(num, s)


def field_int(num, v):
    return varint(num << 3) + varint(v)  # 0 written too


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

    def expect(self, pid, skip=()):
        got, body = self.recv()
        while got in skip:
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
            body = c.expect(S_CHAT, skip=(12, 13))  # presence of the later players
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


def log_line(port, patterns, timeout=15):
    """The server's log line about the session from our local `port` that
    contains one of `patterns` (the session's end is logged just after the
    connection closes, so wait for it)."""
    tag = f"(127.0.0.1:{port}):"
    deadline = time.time() + timeout
    while True:
        with open(LOGFILE, errors="replace") as f:
            for line in f:
                if tag in line and any(p in line for p in patterns):
                    return line.strip()
        if time.time() > deadline:
            raise AssertionError(f"no server log line for 127.0.0.1:{port} with any of {patterns}")
        time.sleep(0.05)


def port_of(c):
    return c.s.getsockname()[1]


def garbage():
    closes = {"bad_packet": 0, "local": 0}
    logged = []  # (what, line)
    quiet_ports = []  # connections that must not be logged: nothing ended badly

    # A bystander, logged in and in a room throughout: it must not notice.
    by = Conn()
    by.send(C_LOGIN, field_str(1, "bystander"))
    by_id = by.expect(S_LOGIN)[1][0]
    by.send(C_ENTER_ROOM, field_str(1, "bystander-room"))
    by.expect(S_ENTER_ROOM)

    def send_raw(c, data):
        try:
            c.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed before it all went: fine

    # Bad headers: the engine ends the session (bad_packet), no reply.
    bad_headers = {f"size {n}": struct.pack("<HH", n, C_LOGIN) for n in range(4)}
    bad_headers["size over --max-packet"] = struct.pack("<HH", 1101, C_LOGIN) + b"x" * 1097
    for what, data in bad_headers.items():
        c = Conn()
        send_raw(c, data)
        assert c.closed(), f"{what}: connection not closed"
        logged.append((what, log_line(port_of(c), ["disconnected: bad_packet"])))
        closes["bad_packet"] += 1

    # A valid header with a body that does not decode, for every client
    # message; and an unknown id: S_ERROR, a log line, then a graceful close.
    names = {C_LOGIN: "C_LOGIN", C_ENTER_ROOM: "C_ENTER_ROOM", C_CHAT: "C_CHAT",
             C_LEAVE_ROOM: "C_LEAVE_ROOM", 10: "C_PING"}
    cases = [(f"undecodable {n}", pid, b"\xff\xff\xff", 1, f"{n} body of 3 bytes does not decode")
             for pid, n in names.items()]
    cases.append(("unknown id", 999, b"", 2, "unknown packet id 999"))
    for what, pid, body, code, text in cases:
        c = Conn()
        c.send(pid, body)
        e = c.expect(S_ERROR)
        assert e[1] == [code], f"{what}: {e}"
        assert c.closed(), f"{what}: connection not closed after S_ERROR"
        logged.append((what, log_line(port_of(c), [text])))
        closes["local"] += 1

    # 64 KiB of (seeded) random bytes: ends one way or another, and says why.
    c = Conn()
    send_raw(c, random.Random(6).randbytes(65536))
    assert c.closed(), "random 64 KiB: connection not closed"
    line = log_line(port_of(c), ["disconnected: bad_packet", "does not decode", "unknown packet id"])
    logged.append(("random 64 KiB", line))
    closes["bad_packet" if "bad_packet" in line else "local"] += 1

    # A truncated header, then the client closes: the server cannot tell this
    # from a client that just left (peer_closed, not logged); it must only
    # stay up, which the checks below and the dummy alongside see.
    t = Conn()
    send_raw(t, struct.pack("<HH", 40, C_LOGIN)[:2])
    t.s.close()

    # Out of state: S_ERROR, and the connection stays usable (each proves it
    # with a request that then succeeds). Not logged.
    c1 = Conn()  # chat before login
    c1.send(C_CHAT, field_str(1, "too early"))
    assert c1.expect(S_ERROR)[1] == [3]  # ERR_NOT_LOGGED_IN
    c1.send(C_LOGIN, field_str(1, "early-chat"))
    c1.expect(S_LOGIN)
    quiet_ports.append(port_of(c1))
    c2 = Conn()  # enter before login
    c2.send(C_ENTER_ROOM, field_str(1, "r"))
    assert c2.expect(S_ERROR)[1] == [3]
    c2.send(C_LOGIN, field_str(1, "x" * 40))
    assert c2.expect(S_ERROR)[1] == [6]  # ERR_BAD_NAME
    c2.send(C_LOGIN, field_str(1, "early-enter"))
    c2.expect(S_LOGIN)
    quiet_ports.append(port_of(c2))
    c3 = Conn()  # login twice
    c3.send(C_LOGIN, field_str(1, "twice"))
    c3.expect(S_LOGIN)
    c3.send(C_LOGIN, field_str(1, "again"))
    assert c3.expect(S_ERROR)[1] == [4]  # ERR_ALREADY_LOGGED_IN
    c3.send(C_ENTER_ROOM, field_str(1, "twice-room"))
    assert c3.expect(S_ENTER_ROOM)[1] == [b"twice-room"]
    quiet_ports.append(port_of(c3))
    c4 = Conn()  # leave when not in a room
    c4.send(C_LOGIN, field_str(1, "leaver"))
    c4.expect(S_LOGIN)
    c4.send(C_LEAVE_ROOM)
    assert c4.expect(S_ERROR)[1] == [5]  # ERR_NOT_IN_ROOM
    c4.send(C_ENTER_ROOM, field_str(1, "leaver-room"))
    assert c4.expect(S_ENTER_ROOM)[1] == [b"leaver-room"]
    c4.send(C_LEAVE_ROOM)
    assert c4.expect(S_LEAVE_ROOM)[1] == [b"leaver-room"]
    quiet_ports.append(port_of(c4))

    # The bystander still chats with its room (itself) as if nothing happened.
    by.send(C_CHAT, field_str(1, "still here") + field_int(2, 7))
    m = by.expect(S_CHAT)
    assert m[1] == [by_id] and m[2] == [b"still here"] and m[3] == [7], m
    with open(LOGFILE, errors="replace") as f:
        log = f.read()
    for p in quiet_ports + [port_of(by)]:
        assert f"(127.0.0.1:{p}):" not in log, f"a well-behaved connection was logged: {p}"
    for k in (c1, c2, c3, c4, by):
        k.s.close()
    for what, line in logged:
        print(f"  {what}: {line}")
    print(f"closes: bad_packet={closes['bad_packet']} local={closes['local']}")
    print("garbage ok")


LOGFILE = sys.argv[3] if len(sys.argv) > 3 else None
{"fanout": fanout, "garbage": garbage}[sys.argv[2]]()
