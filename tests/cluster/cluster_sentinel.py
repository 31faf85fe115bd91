#!/usr/bin/env python3
"""cluster_sentinel.py - the players' side of tests/cluster/cluster_sentinel.sh
(nodes behind Redis Sentinel; docs/cluster.md, "Redis Sentinel").

  cluster_sentinel.py failover P1 P2 ROOM DIR - a player on each node shares ROOM (a chat each
      way, exact bytes, one order: cluster_auth.py share); then writes DIR/ready and waits for
      DIR/go (the failover is done and both nodes are up again), keeping both players connected;
      then chats each way again: each chat reaches both players once, in the order sent, with its
      exact bytes (a chat sent after the other side saw the previous one shows no duplicate came
      in between)
"""
import os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from cluster import chat, get, ok  # noqa: E402
from wire2 import S_CHAT  # noqa: E402
from cluster_auth import share  # noqa: E402


def failover(p1, p2, name, flags):
    a, b, room = share(p1, p2, name)
    open(os.path.join(flags, "ready"), "w").close()
    go = os.path.join(flags, "go")
    for _ in range(1200):
        if os.path.exists(go):
            break
        time.sleep(0.05)
    ok(os.path.exists(go), "the failover did not finish in 60 s")

    def round_(sender, texts):
        for i, t in enumerate(texts):
            sender.send(chat(t, 100 + i))
        for x in (a, b):
            for i, t in enumerate(texts):
                m = x.expect(S_CHAT)
                ok(get(m, 4) == room and get(m, 1) == sender.pid and get(m, 2) == t and
                   get(m, 3, 0) == 100 + i,
                   f"port {x.port}: chat {i} {t!r} from {sender.pid} after the failover, got {m}")

    round_(a, [b"after: alice \xc3\xa9\0 1", b"after: alice 2"])
    round_(b, [b"after: bob \xe2\x9c\x93"])
    round_(a, [b"after: alice 3 (nothing in between)"])
    print(f"cluster_sentinel.py failover {name}: PASS")


if __name__ == "__main__":
    if sys.argv[1] == "failover":
        failover(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(f"cluster_sentinel.py: unknown command {sys.argv[1]}")
