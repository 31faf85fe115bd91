#!/usr/bin/env python3
"""fake_sentinel.py - sentinels that misbehave, for tests/cluster/cluster_sentinel.sh.

  fake_sentinel.py PORTFILE MODE [ADDR PORT [PASS]] - listens on a free 127.0.0.1 port
      (written to PORTFILE), until killed. MODE: "silent" accepts and never answers; "garbage"
      answers every command with +hello (not ADDRESS PORT); "names" answers every command with
      ADDR PORT - with PASS, only after AUTH PASS (+OK; another password: -WRONGPASS; none:
      -NOAUTH), as a sentinel with requirepass does; "echoes" is "names" whose refusals quote
      the password they were given (as a proxy that echoes a command's arguments might), and
      its answer to anything after a refused AUTH too.
"""
import os, socket, sys, threading


def commands(buf):
    """The complete RESP commands (lists of bytes) at the head of buf, and the rest."""
    out = []
    while True:
        try:
            head, rest = buf.split(b"\r\n", 1)
            n, args = int(head[1:]), []
            for _ in range(n):
                h, rest = rest.split(b"\r\n", 1)
                k = int(h[1:])
                if len(rest) < k + 2:
                    raise ValueError
                args.append(rest[:k])
                rest = rest[k + 2:]
        except ValueError:
            return out, buf
        out.append(args)
        buf = rest


def serve(c, mode, answer, password):
    authed, buf, tried = password is None, b"", b""
    with c:
        while True:
            d = c.recv(4096)
            if not d:
                return
            if mode == "silent":
                continue
            cmds, buf = commands(buf + d)
            for args in cmds:
                if mode == "garbage":
                    c.sendall(b"+hello\r\n")
                elif args[0].upper() == b"AUTH":
                    authed, tried = args[-1] == password, args[-1]
                    quoted = b" '%s' (%s)" % (tried, tried) if mode == "echoes" else b""
                    c.sendall(b"+OK\r\n" if authed else b"-WRONGPASS invalid username-password pair%s\r\n" % quoted)
                elif not authed:
                    quoted = b" after AUTH '%s'" % tried if mode == "echoes" and tried else b""
                    c.sendall(b"-NOAUTH Authentication required%s.\r\n" % quoted)
                else:
                    c.sendall(answer)


def main():
    portfile, mode = sys.argv[1], sys.argv[2]
    answer, password = b"", None
    if mode in ("names", "echoes"):
        a, p = sys.argv[3].encode(), sys.argv[4].encode()
        answer = b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(p), p)
        if len(sys.argv) > 5:
            password = sys.argv[5].encode()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    os.rename(portfile + ".tmp", portfile)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, mode, answer, password), daemon=True).start()


if __name__ == "__main__":
    main()
