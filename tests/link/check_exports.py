#!/usr/bin/env python3
"""Check that cport's libraries leave nothing but the API to the application.

    check_exports.py NM INCLUDE_DIR LIBCPORT_SO LIBCPORT_A

The API is every function and variable declared in INCLUDE_DIR (cport.h and cport/*.h); each
declaration must carry CP_API (include/cport/export.h), or the shared library hides it.
  - The shared library must export (nm -D --defined-only) exactly those names.
  - The static library's global definitions (nm -g --defined-only) must be those names and
    internal ones with the reserved prefix cp__, nothing else: an internal name without it
    could clash with an application's own when it links libcport.a.
Names the toolchain owns (__asan_*, __tsan_*, __ubsan_*, __sancov_*, __odr_asan*, and the
ELF bookkeeping _init, _fini, _edata, _end, __bss_start) are not cport's and are ignored.
Exit 0 when both hold; otherwise 1, naming every name that differs.
"""
import pathlib
import re
import subprocess
import sys

TOOLCHAIN = re.compile(r"^(__(asan|tsan|ubsan|sancov|msan|lsan)|__odr_asan|___asan|_init$|_fini$|"
                       r"_edata$|_end$|__bss_start$)")


def top_level_statements(text):
    """The file-scope declarations of a header (comments and preprocessor lines removed):
    each up to its ';', or up to the '}' that closes a function body at file scope.
    extern "C" { ... } is transparent."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)
    text = re.sub(r'extern\s+"C"\s*\{', " ", text)
    statements, cur, depth = [], [], 0
    for ch in text:
        if depth == 0 and ch == "}":  # the end of extern "C" { ... }
            continue
        cur.append(ch)
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0 and re.search(r"\)\s*\{", "".join(cur)):  # a function body
                statements.append("".join(cur).strip())
                cur = []
        elif ch == ";" and depth == 0:
            statements.append("".join(cur).strip())
            cur = []
    return statements


def declarations(include_dir):
    """Every function and variable the headers declare at file scope (not typedefs, not static
    inline helpers), and which of them lack CP_API."""
    names, unmarked = {}, []
    root = pathlib.Path(include_dir)
    for header in sorted(root.rglob("*.h")):
        for st in top_level_statements(header.read_text()):
            st = " ".join(st.split())
            if not st or re.match(r"(typedef|static)\b", st) or re.match(
                    r"(struct|union|enum)\s+\w+\s*(\{.*\})?\s*;$", st):
                continue
            if "(" in st.split("=")[0]:  # a function: the name before the first parenthesis
                name = re.search(r"([A-Za-z_]\w*)\s*\($", st[: st.index("(") + 1])
                kind = "function"
            else:  # a variable: the last name before an array bound or initializer
                name = re.search(r"([A-Za-z_]\w*)\s*(\[[^\]]*\]\s*)*(=.*)?;$", st)
                kind = "variable"
            if not name:
                sys.exit(f"check_exports: cannot read this declaration in {header}: {st}")
            where = f"{kind} in {header.relative_to(root)}"
            names[name.group(1)] = where
            if not re.search(r"\bCP_API\b", st):
                unmarked.append(f"{name.group(1)} ({where})")
    return names, unmarked


def defined_globals(nm, args, lib):
    out = subprocess.run([nm, *args, lib], check=True, capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # "address type name"; undefined and local symbols are not listed with these flags
        if len(parts) >= 3 and not TOOLCHAIN.match(parts[2]):
            names.add(parts[2].split("@")[0])  # a versioned name: name@VERSION
    return names


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    nm, include_dir, so, a = sys.argv[1:]
    api, unmarked = declarations(include_dir)
    if not api:
        sys.exit(f"check_exports: no declaration found under {include_dir}")
    failed = False
    for what in unmarked:
        print(f"{include_dir}: declares {what} without CP_API")
        failed = True

    exported = defined_globals(nm, ["-D", "--defined-only"], so)
    for name in sorted(exported - api.keys()):
        print(f"{so}: exports {name}, which include/ does not declare")
        failed = True
    for name in sorted(api.keys() - exported):
        print(f"{so}: does not export {name} ({api[name]})")
        failed = True

    static = defined_globals(nm, ["-g", "--defined-only"], a)
    for name in sorted(n for n in static - api.keys() if not n.startswith("cp__")):
        print(f"{a}: defines {name}, neither API nor internal with the reserved prefix cp__")
        failed = True
    for name in sorted(api.keys() - static):
        print(f"{a}: does not define {name} ({api[name]})")
        failed = True

    internal = sum(1 for n in static if n.startswith("cp__"))
    print(f"check_exports: {len(api)} API names; {so}: {len(exported)} exported; "
          f"{a}: {internal} internal cp__ names")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
