#!/usr/bin/env python3
"""Check that cport's libraries leave nothing but the API to the application.

    check_exports.py NM INCLUDE_DIR LIBCPORT_SO LIBCPORT_A

The API is every declaration marked CP_API in INCLUDE_DIR (cport.h and cport/*.h).
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


def api_names(include_dir):
    """The names of every CP_API declaration: functions and variables."""
    names = {}
    root = pathlib.Path(include_dir)
    for header in sorted(root.rglob("*.h")):
        text = header.read_text()
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)  # comments
        text = re.sub(r"//[^\n]*", " ", text)
        text = re.sub(r"^\s*#(?:[^\n]*\\\n)*[^\n]*", " ", text, flags=re.M)  # the preprocessor's
        for m in re.finditer(r"\bCP_API\b([^;{]*)", text):
            decl = m.group(1)
            if "(" in decl:  # a function: the name before the first parenthesis
                name = re.search(r"([A-Za-z_]\w*)\s*\($", decl[: decl.index("(") + 1])
                kind = "function"
            else:  # a variable: the last name before an array bound or initializer
                name = re.search(r"([A-Za-z_]\w*)\s*(\[[^\]]*\]\s*)*(=.*)?$", decl.strip(),
                                 flags=re.S)
                kind = "variable"
            if not name:
                sys.exit(f"check_exports: cannot read the declaration in {header}: CP_API{decl}")
            names[name.group(1)] = f"{kind} in {header.relative_to(root)}"
    return names


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
    api = api_names(include_dir)
    if not api:
        sys.exit(f"check_exports: no CP_API declaration found under {include_dir}")
    failed = False

    exported = defined_globals(nm, ["-D", "--defined-only"], so)
    for name in sorted(exported - api.keys()):
        print(f"{so}: exports {name}, which include/ does not declare with CP_API")
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
