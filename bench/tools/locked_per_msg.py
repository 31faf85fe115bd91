#!/usr/bin/env python3
"""locked_per_msg.py DUMP BINARY - instructions and locked instructions per message, from a
callgrind dump of cport-server taken with --dump-instr=yes --compress-pos=no
--compress-strings=no (bench/profile MODE=window writes one).

A message is one call of cp_session_send_copy (cport-server's echo and packet-echo modes answer
each message with one). Locked instructions are those of BINARY (cport-server itself: the engine
is linked in) with a `lock` prefix, or an `xchg` with a memory operand (locked by definition);
objdump finds their addresses, the dump says how often each ran. Addresses of a PIE are taken
as the dump gives them (callgrind reports them relative to the object here).
"""
import collections
import re
import subprocess
import sys


def locked_addresses(binary):
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                         capture_output=True, text=True, check=True).stdout
    where, fn = {}, None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:", line)
        if m:
            fn = m.group(1)
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)$", line)
        if m:
            ins = m.group(2)
            if ins.startswith("lock ") or (ins.startswith("xchg") and "(" in ins):
                where[int(m.group(1), 16)] = fn
    return where


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dump, binary = sys.argv[1], sys.argv[2]
    name = binary.rsplit("/", 1)[-1]
    locked = locked_addresses(binary)
    ob = fn = cfn = None
    skip_next = False  # the cost line after calls= is the call's inclusive cost
    per_fn = collections.Counter()
    msgs = total = own = lock = 0
    for line in open(dump, encoding="utf-8", errors="replace"):
        if line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("cfn="):
            cfn = line[4:].strip()
        elif line.startswith("calls="):
            if cfn == "cp_session_send_copy" and (ob or "").endswith(name):
                msgs += int(line.split()[0][6:])
            skip_next = True
        elif line.startswith("0x"):
            if skip_next:
                skip_next = False
                continue
            parts = line.split()
            ir = int(parts[-1]) if len(parts) > 1 else 0
            total += ir
            if (ob or "").endswith(name):
                own += ir
                addr = int(parts[0], 16)
                if addr in locked:
                    lock += ir
                    per_fn[fn] += ir
    if not msgs:
        sys.exit(f"{dump}: no call of cp_session_send_copy from {name}: not cport-server's echo?")
    print(f"- messages in the window (calls of cp_session_send_copy): {msgs}")
    print(f"- instructions per message: {total / msgs:.1f} in user space, {own / msgs:.1f} in {name}")
    print(f"- locked instructions per message: {lock / msgs:.2f}")
    print()
    print("| locked/msg | function |")
    print("|---|---|")
    for f, n in per_fn.most_common(15):
        print(f"| {n / msgs:.2f} | {f} |")


if __name__ == "__main__":
    main()
