#!/usr/bin/env python3
"""win_cluster.py WINPORT LINUXPORT - players on a Windows node (cport-server.exe under Wine)
and a Linux node of one cluster (tests/windows/e2e_cluster.sh), checked exactly from the
clients' side with tests/e2e/cluster.py's players:

  1. PER players on each node enter the byte-string room b"w\\0l": every player knows all
     2*PER members (its S_ENTER_ROOM's list and count, then S_MEMBER_JOINED), and a chat from
     each node reaches every member once, all members in one order;
  2. prints READY and waits for a line on stdin: meanwhile the test stops the Windows node
     with Ctrl+C; then every Linux player gets S_MEMBER_LEFT of exactly the Windows node's
     players, the Windows node's players are disconnected, and the Linux players still chat.
"""
import os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from cluster import Player, chat, enter, get, login, members, ok, pump_until  # noqa: E402

PER = 3
ROOM = b"w\0l"


def main(wport, lport):
    win = [Player(wport, k) for k in range(PER)]
    lin = [Player(lport, PER + k) for k in range(PER)]
    players = win + lin
    for p in players:
        p.sendall(login(b"p\0%d" % p.k))  # a byte-string name
    pump_until(players, lambda: all(p.c.pid for p in players), 30, "logins")
    pids = {p.c.pid for p in players}
    ok(len(pids) == 2 * PER, "player ids unique across the nodes")
    for p in players:  # one at a time: each S_ENTER_ROOM's count is exact
        p.sendall(enter(ROOM))
        pump_until(players, lambda: p.entered, 30, "S_ENTER_ROOM")
        # you first, then the others oldest first, across the nodes; the count cluster-wide
        want = [(q.c.pid, b"p\0%d" % q.k) for q in [p] + players[:p.k]]
        ok(get(p.entered, 1) == ROOM and get(p.entered, 2) == p.k + 1 and members(p.entered) == want,
           f"player {p.k}: S_ENTER_ROOM {p.entered}, want {want}")
    known = lambda p: {q for q, _ in members(p.entered)} | {e[1] for e in p.events if e[0] == "joined"}
    pump_until(players, lambda: all(known(p) == pids for p in players), 30,
               "presence across the nodes")
    win[0].sendall(chat(b"from windows"))
    lin[0].sendall(chat(b"from linux"))
    chats = lambda p: [e[2] for e in p.events if e[0] == "chat"]
    pump_until(players, lambda: all(len(chats(p)) >= 2 for p in players), 30, "chats")
    ref = chats(players[0])
    ok(sorted(ref) == [b"from linux", b"from windows"], f"chats once: {ref}")
    for p in players:
        ok(chats(p) == ref, f"player {p.k}: one order across the nodes: {chats(p)} vs {ref}")
    print("READY", flush=True)
    sys.stdin.readline()  # the test stopped the Windows node (Ctrl+C)
    wpids = {p.c.pid for p in win}
    gone = lambda p: {e[1] for e in p.events if e[0] == "left"}
    pump_until(players, lambda: all(wpids <= gone(p) for p in lin) and all(p.closed for p in win),
               20, "the Windows node's players leaving (S_MEMBER_LEFT on the Linux node)")
    for p in lin:
        ok(gone(p) == wpids and p.left == PER, f"player {p.k}: left {gone(p)}, want {wpids}")
    lin[1].sendall(chat(b"still here"))
    pump_until(lin, lambda: all(chats(p)[-1:] == [b"still here"] for p in lin), 20,
               "a chat on the Linux node after")
    for p in lin:
        p.c.s.close()
    print(f"win_cluster.py: PASS ({PER} players per node; presence, one order; the Windows "
          f"node's players left the Linux node's room)")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
