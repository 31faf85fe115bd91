#!/usr/bin/env python3
"""fake_sentinel.py - sentinels that misbehave, for tests/cluster/cluster_sentinel.sh.

  fake_sentinel.py PORTFILE MODE [ADDR PORT] - listens on a free 127.0.0.1 port (written to
      PORTFILE), until killed. MODE: "silent" accepts and never answers; "garbage" answers every
      command with +hello (not ADDRESS PORT); "names" answers every command with ADDR PORT.
"""
import socket, sys, threading


def serve(c, mode, answer):
    with c:
        while c.recv(4096):
            if mode == "garbage":
                c.sendall(b"+hello\r\n")
            elif mode == "names":
                c.sendall(answer)


def main():
    portfile, mode = sys.argv[1], sys.argv[2]
    answer = b""
    if mode == "names":
        a, p = sys.argv[3].encode(), sys.argv[4].encode()
        answer = b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(a), a, len(p), p)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    with open(portfile + ".tmp", "w") as f:
        f.write(str(s.getsockname()[1]))
    import os
    os.rename(portfile + ".tmp", portfile)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c, mode, answer), daemon=True).start()


if __name__ == "__main__":
    main()
