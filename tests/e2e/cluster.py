#!/usr/bin/env python3
"""cluster.py - cport-server nodes sharing rooms through one Redis (issue 14,
docs/cluster.md), checked exactly from the clients' side.

  cluster.py rules P1 P2                  - two nodes: byte-string rooms, member lists
                                            across nodes (you first, oldest first, the
                                            cluster-wide count), presence, one chat order,
                                            S_LEAVE_ROOM after one's own chats, switching,
                                            ids unique
  cluster.py chat PORTS N SIZE CHATS [--redis RPORT --kill-pubsub] [--mid]
                                          - N players round-robin over the nodes (PORTS:
                                            P1,P2,...), rooms of SIZE; each sends CHATS
                                            chats; every member of a room receives every
                                            chat of the room exactly once, all members in
                                            one order. --kill-pubsub: CLIENT KILL TYPE
                                            pubsub halfway (a gap filled from the stream).
                                            --mid: halfway, print MID, wait for a line on
                                            stdin (the test restarts Redis), go on
  cluster.py ids PORT FILE N              - N logins on PORT: ids new and past every id in
                                            FILE (written by chat --ids FILE)
  cluster.py outage P1 P2                 - a player on node 2 disconnects while Redis is
                                            down (the shell kills it at DOWN, starts it at
                                            GONE): node 1's player gets its S_MEMBER_LEFT
                                            once Redis is back (the leave re-sent)
  cluster.py slow P1 P2 P3:PID3 [M1,M2]   - node 3 stopped (SIGSTOP) does not hold up nodes
                                            1 and 2; it catches up once continued
  cluster.py unavailable PORT             - a node with no Redis answers pings, and logins
                                            with ERR_UNAVAILABLE
  cluster.py nodes P1:PID1 P2:PID2 P3:PID3 - players on three nodes in one room; SIGTERM
                                            the second (its players leave at once), kill -9
                                            the third (they leave within the timeout): the
                                            first node's players see every S_MEMBER_LEFT
"""
import os, selectors, signal, socket, struct, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wire2 import *  # ids, codec, pkt

ERR_UNAVAILABLE = 10


def get(m, f, d=None):
    return m.get(f, [d])[0] if f in m else d


def members(m):
    return [(get(decode(x), 1, 0), get(decode(x), 2, b"")) for x in m.get(3, [])]


login = lambda name: pkt(C_LOGIN, fs(1, name))
enter = lambda room: pkt(C_ENTER_ROOM, fs(1, room))
chat = lambda text, t=0: pkt(C_CHAT, fs(1, text) + fi(2, t))
leave = lambda: pkt(C_LEAVE_ROOM)


class Conn:
    def __init__(self, port):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.q = []
        self.pid = None

    def send(self, data):
        self.s.sendall(data)

    def parse(self):
        """complete packets in the buffer"""
        out = []
        while len(self.buf) >= 4:
            size, pid = struct.unpack("<HH", self.buf[:4])
            if len(self.buf) < size:
                break
            out.append((pid, decode(self.buf[4:size])))
            self.buf = self.buf[size:]
        return out

    def recv(self):
        while not self.q:
            self.q += self.parse()
            if self.q:
                break
            d = self.s.recv(1 << 16)
            if not d:
                return None, None
            self.buf += d
        return self.q.pop(0)

    def expect(self, pid, skip=()):
        got, m = self.recv()
        while got in skip:
            got, m = self.recv()
        assert got == pid, f"port {self.port}: expected packet {pid}, got {got} {m}"
        return m

    def login(self, name):
        self.send(login(name))
        self.pid = get(self.expect(S_LOGIN), 1)
        return self.pid


def ok(cond, what):
    if not cond:
        if what.startswith("timeout waiting for the probe"):
            raise SystemExit(1)
        print(f"cluster.py: FAIL: {what}", file=sys.stderr)
        sys.exit(1)


# ---- rules ---------------------------------------------------------------

def rules(p1, p2):
    a, b, c = Conn(p1), Conn(p2), Conn(p2)
    a.login(b"a\0x")
    b.login("bob")
    c.login("carol")
    ok(len({a.pid, b.pid, c.pid}) == 3, "player ids unique across nodes")
    # byte-string rooms: "r\0x" and "r\0y" are two rooms everywhere
    a.send(enter(b"r\0x"))
    m = a.expect(S_ENTER_ROOM)
    ok(get(m, 1) == b"r\0x" and get(m, 2) == 1 and members(m) == [(a.pid, b"a\0x")], f"a enters: {m}")
    c.send(enter(b"r\0y"))
    m = c.expect(S_ENTER_ROOM)
    ok(get(m, 2) == 1 and members(m) == [(c.pid, b"carol")], f"r\\0y is another room: {m}")
    b.send(enter(b"r\0x"))
    m = b.expect(S_ENTER_ROOM)
    ok(get(m, 2) == 2 and members(m) == [(b.pid, b"bob"), (a.pid, b"a\0x")],
       f"b's list: you first, then the others oldest first, across nodes: {m}")
    m = a.expect(S_MEMBER_JOINED)
    ok(get(m, 1) == b"r\0x" and get(decode(get(m, 2)), 1) == b.pid, f"a hears b join: {m}")
    # c switches to r\0x: S_LEAVE_ROOM(r\0y) then S_ENTER_ROOM(r\0x), three members
    c.send(enter(b"r\0x"))
    m = c.expect(S_LEAVE_ROOM)
    ok(get(m, 1) == b"r\0y", f"switch: leave first: {m}")
    m = c.expect(S_ENTER_ROOM)
    ok(get(m, 2) == 3 and members(m) == [(c.pid, b"carol"), (a.pid, b"a\0x"), (b.pid, b"bob")],
       f"c's list: {m}")
    for x in (a, b):
        m = x.expect(S_MEMBER_JOINED)
        ok(get(decode(get(m, 2)), 1) == c.pid, f"hears c join: {m}")
    # chats from all three, interleaved: one order everywhere, with the room
    for i in range(20):
        for x in (a, b, c):
            x.send(chat(b"m%d\0%d" % (i, x.pid), i + 1))
    seqs = []
    for x in (a, b, c):
        seq = []
        for _ in range(60):
            m = x.expect(S_CHAT)
            ok(get(m, 4) == b"r\0x", f"S_CHAT names its room: {m}")
            seq.append((get(m, 1), get(m, 2), get(m, 3, 0)))
        seqs.append(seq)
    ok(seqs[0] == seqs[1] == seqs[2], "one chat order on both nodes")
    ok(len(set(seqs[0])) == 60, "every chat once")
    for x in (a, b, c):
        own = [t for p, t, _ in seqs[0] if p == x.pid]
        ok(own == [b"m%d\0%d" % (i, x.pid) for i in range(20)], "a player's chats in its order")
    # b chats then leaves: its own chats come before its S_LEAVE_ROOM; then nothing of the room
    b.send(chat(b"last words") + leave())
    m = b.expect(S_CHAT)
    ok(get(m, 2) == b"last words", f"b's own chat before its S_LEAVE_ROOM: {m}")
    b.expect(S_LEAVE_ROOM)
    for x in (a, c):
        m = x.expect(S_CHAT)
        ok(get(m, 2) == b"last words", f"{m}")
        m = x.expect(S_MEMBER_LEFT)
        ok(get(m, 2) == b.pid, f"hears b leave: {m}")
    a.send(chat(b"after"))
    for x in (a, c):
        ok(get(x.expect(S_CHAT), 2) == b"after", "chat after b left")
    b.send(pkt(C_PING, fi(1, 7)))
    m = b.expect(S_PONG)  # nothing of the room came to b after its S_LEAVE_ROOM
    # chat outside a room, leave outside a room: local errors as protocol 2 says
    b.send(chat(b"x"))
    ok(get(b.expect(S_ERROR), 1, 0) == 5, "chat outside a room: ERR_NOT_IN_ROOM")
    # a disconnects: the others hear it
    a.s.close()
    m = c.expect(S_MEMBER_LEFT)
    ok(get(m, 2) == a.pid, "a's disconnect is a leave")
    c.s.close()
    b.s.close()
    print("cluster.py rules: PASS")


# ---- many players ----------------------------------------------------------

class Player:
    def __init__(self, port, k):
        self.c = Conn(port)
        self.k = k
        self.c.s.setblocking(False)
        self.events = []  # (kind, ...) in arrival order
        self.entered = None
        self.left = 0
        self.unavailable = 0
        self.closed = False

    def pump(self):
        try:
            d = self.c.s.recv(1 << 18)
        except BlockingIOError:
            return
        except ConnectionResetError:
            d = b""
        if not d:
            self.closed = True
            return
        self.c.buf += d
        for pid, m in self.c.parse():
            if pid == S_LOGIN:
                self.c.pid = get(m, 1)
            elif pid == S_ENTER_ROOM:
                self.entered = m
            elif pid == S_CHAT:
                self.events.append(("chat", get(m, 1), get(m, 2)))
            elif pid == S_MEMBER_JOINED:
                self.events.append(("joined", get(decode(get(m, 2)), 1)))
            elif pid == S_MEMBER_LEFT:
                self.events.append(("left", get(m, 2)))
                self.left += 1
            elif pid == S_ERROR:
                ok(get(m, 1, 0) == ERR_UNAVAILABLE, f"unexpected S_ERROR {m}")
                self.unavailable += 1
            elif pid == S_LEAVE_ROOM:
                pass
            else:
                ok(False, f"unexpected packet {pid} {m}")

    def sendall(self, data):
        self.c.s.setblocking(True)
        self.c.send(data)
        self.c.s.setblocking(False)


def pump_until(players, cond, timeout, what):
    sel = selectors.DefaultSelector()
    for p in players:
        sel.register(p.c.s, selectors.EVENT_READ, p)
    end = time.time() + timeout
    while not cond():
        ok(time.time() < end, f"timeout waiting for {what}")
        for key, _ in sel.select(0.2):
            key.data.pump()
    sel.close()


def pump_for(players, seconds):
    """read what comes for `seconds`"""
    end = time.time() + seconds
    pump_until(players, lambda: time.time() >= end, seconds + 30, "time to pass")


def chat_run(args):
    ports = [int(x) for x in args[0].split(",")]
    n, size, chats = int(args[1]), int(args[2]), int(args[3])
    kill_pubsub = "--kill-pubsub" in args
    mid = "--mid" in args
    rport = args[args.index("--redis") + 1] if "--redis" in args else None
    players = [Player(ports[k % len(ports)], k) for k in range(n)]
    for p in players:
        p.sendall(login("p%d" % p.k))
    pump_until(players, lambda: all(p.c.pid for p in players), 60, "logins")
    ok(len({p.c.pid for p in players}) == n, "player ids unique across nodes")
    rooms = {}
    for p in players:
        p.room = b"room\0%d" % (p.k // size)
        rooms.setdefault(p.room, []).append(p)
        p.sendall(enter(p.room))
    pump_until(players, lambda: all(p.entered for p in players), 120, "S_ENTER_ROOM")
    # everyone hears everyone: presence spans nodes
    def full():
        for room, ps in rooms.items():
            for p in ps:
                seen = {pid for pid, _ in members(p.entered)} | {e[1] for e in p.events if e[0] == "joined"}
                if len(seen) < len(ps) and len(members(p.entered)) < 500:
                    return False
        return True
    pump_until(players, full, 120, "presence across nodes")
    for room, ps in rooms.items():
        for p in ps:
            seen = {pid for pid, _ in members(p.entered)} | {e[1] for e in p.events if e[0] == "joined"}
            ok(seen == {q.c.pid for q in ps}, "a member's view is the room's membership")
    sent = {room: set() for room in rooms}
    maybe = set()  # probes that may or may not have been published
    half = chats // 2

    def send_phase(lo, hi):
        for i in range(lo, hi):
            for p in players:
                t = b"%d:%d" % (p.k, i)
                p.sendall(chat(t))
                sent[p.room].add((p.c.pid, t))
            if i % 5 == 4:
                pump_until(players, lambda: True, 1, "")

    def chats_of(p):
        return [(e[1], e[2]) for e in p.events if e[0] == "chat"]

    def settled():
        return all(sent[p.room] <= set(chats_of(p)) for p in players)

    send_phase(0, half)
    if kill_pubsub:
        out = subprocess.run(["redis-cli", "-p", rport, "CLIENT", "KILL", "TYPE", "pubsub"],
                             capture_output=True, text=True).stdout.strip()
        print(f"cluster.py: CLIENT KILL TYPE pubsub: {out} killed")
    if mid:
        pump_until(players, settled, 120, "chats before the restart")
        print("MID", flush=True)
        sys.stdin.readline()
        # until the nodes are back, chats get ERR_UNAVAILABLE (or, refused while the
        # members join again after a lost state, are not published): probe until one
        # comes back; a probe that did not may still come (maybe)
        end = time.time() + 60
        probes = {}  # a player per node and room: each node reconnects on its own back-off,
        for p in players:  # and re-joins a room's members (after a lost state) in one burst
            probes.setdefault((p.c.port, p.room), p)
        for (port, _), probe in probes.items():
            k = 0
            while True:
                k += 1
                text = b"probe %d %d %d" % (port, probe.k, k)
                before = probe.unavailable
                probe.sendall(chat(text))
                back = lambda: any(e[0] == "chat" and e[2] == text for e in probe.events)
                try:
                    pump_until(players, lambda: back() or probe.unavailable > before, 3, "the probe")
                except SystemExit:
                    pass
                if back():
                    sent[probe.room].add((probe.c.pid, text))
                    break
                if probe.unavailable == before:
                    maybe.add((probe.c.pid, text))
                ok(time.time() < end, "nodes back after the restart")
                time.sleep(0.2)
    send_phase(half, chats)
    unav = sum(p.unavailable for p in players)
    ok(unav == 0 or mid, f"{unav} ERR_UNAVAILABLE with Redis up")
    try:
        pump_until(players, settled, 180, "every chat delivered")
    except SystemExit:
        for p in players:  # who misses what (the sender's node, its player, the chat)
            miss = sent[p.room] - set(chats_of(p))
            if miss:
                by = {q.c.pid: q for q in rooms[p.room]}
                print(f"cluster.py: player {p.c.pid} (node port {p.c.port}, room {p.room!r}) misses "
                      f"{len(miss)}: " + ", ".join(f"{t.decode(errors='replace')} from {pid} on "
                                                    f"{by[pid].c.port}" for pid, t in sorted(miss)[:8]),
                      file=sys.stderr)
        raise
    time.sleep(0.3)
    pump_until(players, lambda: True, 1, "")
    total = 0
    for room, ps in rooms.items():
        ref = chats_of(ps[0])
        ok(len(ref) == len(set(ref)), f"a chat delivered twice in {room}")
        ok(sent[room] <= set(ref) <= sent[room] | maybe, f"{room}: {len(sent[room] - set(ref))} chats "
           f"missing, {len(set(ref) - sent[room] - maybe)} foreign")
        for p in ps[1:]:
            ok(chats_of(p) == ref, f"{room}: two members saw different orders")
        total += len(ref) * len(ps)
    if "--ids" in args:
        with open(args[args.index("--ids") + 1], "w") as f:
            f.write(" ".join(str(p.c.pid) for p in players))
    print(f"cluster.py chat: PASS ({n} players on {len(ports)} nodes, {len(rooms)} rooms, "
          f"{total} deliveries verified)")


# ---- node lifecycle ------------------------------------------------------

def nodes_run(args):
    spec = [(int(a.split(":")[0]), int(a.split(":")[1])) for a in args]
    per = 3
    players = [Player(port, k) for k, (port, _) in enumerate(spec) for _ in range(per)]
    for i, p in enumerate(players):
        p.k = i
        p.sendall(login("n%d" % i))
    pump_until(players, lambda: all(p.c.pid for p in players), 60, "logins")
    for p in players:
        p.sendall(enter(b"hall"))
    pump_until(players, lambda: all(p.entered for p in players), 60, "S_ENTER_ROOM")
    n = len(players)
    pump_until(players, lambda: all(len({q for q, _ in members(p.entered)} |
                                        {e[1] for e in p.events if e[0] == "joined"}) == n
                                    for p in players), 60, "presence")
    first = players[:per]
    second = {p.c.pid for p in players[per:2 * per]}
    third = {p.c.pid for p in players[2 * per:]}
    gone = lambda who: {e[1] for e in who.events if e[0] == "left"}
    t0 = time.time()
    os.kill(spec[1][1], signal.SIGTERM)
    pump_until(first, lambda: all(second <= gone(p) for p in first), 20, "SIGTERM: the node's players leave")
    t_term = time.time() - t0
    t0 = time.time()
    os.kill(spec[2][1], signal.SIGKILL)
    pump_until(first, lambda: all(third <= gone(p) for p in first), 30, "kill -9: the node's players leave")
    t_kill = time.time() - t0
    # the survivors are still one room
    first[0].sendall(chat(b"still here"))
    pump_until(first, lambda: all(any(e[0] == "chat" and e[2] == b"still here" for e in p.events)
                                  for p in first), 20, "chat after the failures")
    for p in first:
        ok(gone(p) == second | third, "exactly the dead nodes' players left")
    print(f"cluster.py nodes: PASS (SIGTERM: members left after {t_term:.2f} s; kill -9: after "
          f"{t_kill:.2f} s)")


def slow_run(p1, p2, spec3, mports=None):
    """node 3 stopped (SIGSTOP: it reads nothing from Redis) for 5 s while nodes 1 and 2
    chat: they get every chat meanwhile; node 3, past its heartbeat deadline but connected,
    is not taken for dead (nobody gets S_MEMBER_LEFT); once it goes on, its player gets
    every chat, once, in the same order"""
    port3, pid3 = int(spec3.split(":")[0]), int(spec3.split(":")[1])
    players = [Player(p1, 0), Player(p2, 1), Player(port3, 2)]
    for p in players:
        p.sendall(login("s%d" % p.k))
    pump_until(players, lambda: all(p.c.pid for p in players), 30, "logins")
    for p in players:
        p.sendall(enter(b"slow"))
        pump_until(players, lambda: p.entered, 30, "S_ENTER_ROOM")
    chats_of = lambda p: [(e[1], e[2]) for e in p.events if e[0] == "chat"]
    os.kill(pid3, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        fast = players[:2]
        for i in range(100):
            for p in fast:
                p.sendall(chat(b"%d:%d" % (p.k, i)))
        pump_until(fast, lambda: all(len(chats_of(p)) >= 200 for p in fast), 60,
                   "chats on nodes 1 and 2 while node 3 is stopped")
        # stopped past its heartbeat deadline (3 s) and a sweep tick: its subscriber
        # connection is open, so it is not taken for dead (docs/cluster.md)
        rest = 5.0 - (time.monotonic() - stopped)
        if rest > 0:
            pump_for(fast, rest)
        if mports:  # and until node 1 or 2 counted it spared (a claim tick; bounded)
            spared = lambda: sum(metric(m, "cport_cluster_spared_nodes_total") or 0 for m in mports)
            end = time.monotonic() + 20
            while not spared():
                ok(time.monotonic() < end, "node 3 never counted as spared by node 1 or 2")
                pump_for(fast, 0.2)
    finally:
        os.kill(pid3, signal.SIGCONT)
    pump_until(players, lambda: len(chats_of(players[2])) >= 200, 60, "node 3 catching up")
    time.sleep(0.2)
    pump_until(players, lambda: True, 0.5, "")
    ref = chats_of(players[0])
    ok(len(ref) == 200 and len(set(ref)) == 200, "200 chats once")
    ok(chats_of(players[1]) == ref and chats_of(players[2]) == ref, "one order on all three nodes")
    for p in players:
        ok(not any(e[0] == "left" for e in p.events),
           f"nobody left (node 3 stopped 5 s is not dead): {[e for e in p.events if e[0] != 'chat']}")
    for p in players:
        p.c.s.close()
    print("cluster.py slow: PASS (nodes 1 and 2 got 200 chats while node 3 was stopped 5 s; "
          "nobody left; then node 3 got them, once, in the same order)")


def unavailable_run(port):
    """a node whose --cluster address is no Redis: it serves what needs no Redis"""
    c = Conn(port)
    c.send(pkt(C_PING, fi(1, 5)))
    ok(get(c.expect(S_PONG), 1) == 5, "ping without Redis")
    c.send(login("x"))
    m = c.expect(S_ERROR)
    ok(get(m, 1, 0) == ERR_UNAVAILABLE, f"login without Redis (no player ids): {m}")
    c.send(pkt(C_PING, fi(1, 6)))
    ok(get(c.expect(S_PONG), 1) == 6, "ping after")
    print("cluster.py unavailable: PASS")


def outage_run(p1, p2):
    """a player that disconnects while Redis is unreachable leaves in Redis too, once the
    node is back (its leave re-sent): the other node's players get S_MEMBER_LEFT for it,
    once, and a newcomer's member list no longer has it. The shell kills Redis when told
    DOWN and starts it again (appendonly: the rooms survive) when told GONE."""
    a, b, c = Conn(p1), Conn(p2), Conn(p2)
    for x, name in ((a, "oa"), (b, "ob"), (c, "oc")):
        x.login(name)
    for x in (a, b, c):
        x.send(enter(b"out\0age"))
        x.expect(S_ENTER_ROOM, skip=(S_MEMBER_JOINED,))
    print("DOWN", flush=True)
    ok(sys.stdin.readline().strip() == "down", "the shell did not kill Redis")
    c.s.close()  # its leave cannot reach Redis
    time.sleep(0.5)
    print("GONE", flush=True)
    ok(sys.stdin.readline().strip() == "up", "the shell did not start Redis again")
    left = []
    a.s.settimeout(60)
    while not left:
        try:
            got, m = a.recv()
        except socket.timeout:
            ok(False, "no S_MEMBER_LEFT for the player that disconnected while Redis was down")
        ok(got is not None, "node 1 closed the connection")
        if got == S_MEMBER_LEFT:
            left.append(get(m, 2))
        else:
            ok(got == S_MEMBER_JOINED, f"unexpected packet {got} {m}")
    ok(left == [c.pid], f"a hears c leave once the leave is re-sent: {left} {c.pid}")
    # a newcomer on node 1 sees the room as it is: a, b (and itself); nothing else came to a
    d = Conn(p1)
    d.login("od")
    d.send(enter(b"out\0age"))
    m = d.expect(S_ENTER_ROOM)
    ok(get(m, 2) == 3 and sorted(pid for pid, _ in members(m)) == sorted([a.pid, b.pid, d.pid]),
       f"the member list after the outage: {members(m)}")
    m = a.expect(S_MEMBER_JOINED)
    ok(get(decode(get(m, 2)), 1) == d.pid, f"a hears d join, and nothing before it: {m}")
    for x in (a, b, d):
        x.s.close()
    print("cluster.py outage: PASS (a leave made while Redis was down reached the other node)")


def ids_run(port, path, n):
    old = [int(x) for x in open(path).read().split()]
    new = [Conn(port) for _ in range(n)]
    got = [c.login("late%d" % k) for k, c in enumerate(new)]
    ok(len(set(got)) == n and not set(got) & set(old), "a player id repeated")
    ok(min(got) > max(old), "ids after the lost counter start past every earlier id")
    print(f"cluster.py ids: PASS ({n} new ids past {len(old)} earlier ones)")


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "rules":
        rules(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "chat":
        chat_run(sys.argv[2:])
    elif what == "slow":
        slow_run(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4],
                 [int(x) for x in sys.argv[5].split(",")] if len(sys.argv) > 5 else None)
    elif what == "unavailable":
        unavailable_run(int(sys.argv[2]))
    elif what == "outage":
        outage_run(int(sys.argv[2]), int(sys.argv[3]))
    elif what == "ids":
        ids_run(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif what == "nodes":
        nodes_run(sys.argv[2:])
    else:
        sys.exit("usage: see the header")
