#!/usr/bin/env python3
"""A Linux peer that resets connections for a test running under Wine.

Wine 8.0 cannot close a socket abortively (tests/windows/probe_abort_close.c: wineserver shuts
the Linux socket down before it closes it, so a FIN goes before the RST), so a Windows test
under Wine asks this native process to be the client that resets:

    reset_helper.py PORTFILE

listens on 127.0.0.1 (a free port, written to PORTFILE once it listens) and serves one request
per control connection, a line "<server port> <hex bytes>\\n": it connects to 127.0.0.1:<server
port>, sends the bytes, reads as many back, closes with SO_LINGER {1, 0} (on Linux: an RST and
nothing else) and answers with the hex of what it read ("" if the connection ended first),
then closes the control connection. It runs until killed (tests/windows/with_reset_helper.sh
stops it).
"""
import os
import socket
import struct
import sys


def serve(ctl):
    line = b""
    while not line.endswith(b"\n"):
        chunk = ctl.recv(4096)
        if not chunk:
            return
        line += chunk
    port_s, hex_s = line.decode("ascii").split()
    out = bytes.fromhex(hex_s)
    got = b""
    with socket.create_connection(("127.0.0.1", int(port_s)), timeout=30) as c:
        c.sendall(out)
        while len(got) < len(out):
            chunk = c.recv(len(out) - len(got))
            if not chunk:
                break
            got += chunk
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ctl.sendall(got.hex().encode("ascii") + b"\n")


def main():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        ctl, _ = ls.accept()
        with ctl:
            ctl.settimeout(60)
            try:
                serve(ctl)
            except (OSError, ValueError) as e:
                print("reset_helper:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
