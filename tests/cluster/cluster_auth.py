#!/usr/bin/env python3
"""cluster_auth.py - the players' side of tests/cluster/cluster_auth.sh (a Redis
with a password or an ACL user; docs/cluster.md, "Redis with a password").

  cluster_auth.py share P1 P2 ROOM   - a player on each node enters ROOM (bytes:
                                       the argument, then a zero byte, then "!");
                                       each sees the other's entry and chat, every
                                       chat's exact bytes, one order on both
  cluster_auth.py refused PORT MODE  - a node whose AUTH is refused keeps serving:
                                       ping answered; MODE "no-ids": the login gets
                                       ERR_UNAVAILABLE (the node never reached
                                       Redis); MODE "logged-in": the login works (ids
                                       from its block) and S_ENTER_ROOM gets S_ERROR
                                       ERR_UNAVAILABLE; ping answered after
"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from cluster import Conn, chat, enter, get, login, members, ok, ERR_UNAVAILABLE  # noqa: E402
from wire2 import C_PING, S_CHAT, S_ENTER_ROOM, S_ERROR, S_LOGIN, S_MEMBER_JOINED, S_PONG, decode, fi, pkt  # noqa: E402,E501


def share(p1, p2, name):
    room = name.encode() + b"\0!"
    a, b = Conn(p1), Conn(p2)
    a.login(b"alice\0" + name.encode())
    b.login("bob \u2713")
    ok(a.pid != b.pid, "player ids unique across the nodes")
    a.send(enter(room))
    m = a.expect(S_ENTER_ROOM)
    ok(get(m, 1) == room and get(m, 2) == 1, f"alice enters {room!r}: {m}")
    b.send(enter(room))
    m = b.expect(S_ENTER_ROOM)
    ok(get(m, 2) == 2 and members(m) == [(b.pid, "bob \u2713".encode()),
                                         (a.pid, b"alice\0" + name.encode())],
       f"bob's member list spans both nodes: {m}")
    m = a.expect(S_MEMBER_JOINED)
    ok(get(decode(get(m, 2)), 1) == b.pid, f"alice hears bob join: {m}")
    texts = {a.pid: b"from alice: \xc3\xa9\0 " + name.encode(), b.pid: b"from bob \xe2\x9c\x93"}
    a.send(chat(texts[a.pid], 11))
    b.send(chat(texts[b.pid], 22))
    seqs = []
    for x in (a, b):
        seq = []
        for _ in range(2):
            m = x.expect(S_CHAT)
            ok(get(m, 4) == room, f"S_CHAT names its room: {m}")
            seq.append((get(m, 1), get(m, 2), get(m, 3, 0)))
        seqs.append(seq)
    ok(seqs[0] == seqs[1], f"one order on both nodes: {seqs}")
    ok(sorted(seqs[0]) == sorted([(a.pid, texts[a.pid], 11), (b.pid, texts[b.pid], 22)]),
       f"each chat once, exact bytes: {seqs[0]}")
    print(f"cluster_auth.py share {name}: PASS")
    return a, b, room


def refused(port, mode):
    c = Conn(port)
    c.send(pkt(C_PING, fi(1, 5)))
    ok(get(c.expect(S_PONG), 1) == 5, "ping while Redis refuses the node")
    c.send(login("carol"))
    got, m = c.recv()
    if mode == "no-ids":
        ok(got == S_ERROR and get(m, 1, 0) == ERR_UNAVAILABLE,
           f"login without ever reaching Redis: ERR_UNAVAILABLE, got {got} {m}")
    else:
        ok(got == S_LOGIN, f"login from the node's id block: got {got} {m}")
        c.send(enter(b"r\0auth"))
        m = c.expect(S_ERROR)
        ok(get(m, 1, 0) == ERR_UNAVAILABLE, f"S_ENTER_ROOM while AUTH is refused: {m}")
    c.send(pkt(C_PING, fi(1, 6)))
    ok(get(c.expect(S_PONG), 1) == 6, "ping after")
    print(f"cluster_auth.py refused {mode}: PASS")


if __name__ == "__main__":
    if sys.argv[1] == "share":
        share(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "refused":
        refused(int(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(f"cluster_auth.py: unknown command {sys.argv[1]}")
