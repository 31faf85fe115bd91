#!/usr/bin/env bash
# Install cport into a temporary prefix (cmake --install) and build a program against it the
# ways the README shows, then run each build:
#   1. pkg-config, dynamic: only cport's .pc is visible (PKG_CONFIG_LIBDIR), so it must not need
#      liburing's; run through its rpath; it must need libcport.so.1 (the SONAME).
#   2. pkg-config --static: libcport.a and liburing (Libs.private); nothing of cport is needed
#      at run time.
#   3. CMake: find_package(cport 0.2) with CMAKE_PREFIX_PATH, cport::cport and
#      cport::cport_static (tests/link/consumer/), liburing's .pc still out of sight.
#
#   test_install.sh BUILD_DIR CC CMAKE [FLAGS]    FLAGS: the sanitizer flags the build used
set -euo pipefail
BUILD=$1
CC=$2
CMAKE=$3
read -ra FLAGS <<<"${4:-}"
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cport-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

fail() {
  echo "test_install: $*" >&2
  exit 1
}

P=$TMP/prefix
"$CMAKE" --install "$BUILD" --prefix "$P" >"$TMP/install.log" || {
  cat "$TMP/install.log" >&2
  fail "cmake --install failed"
}
pc=$(find "$P" -name cport.pc)
[[ -n $pc ]] || fail "no cport.pc installed"
LIBDIR=$(dirname "$(dirname "$pc")")
for f in include/cport.h include/cport/export.h include/cport/version.h; do
  [[ -f $P/$f ]] || fail "$f not installed"
done
[[ -L $LIBDIR/libcport.so.1 && -f $LIBDIR/libcport.a ]] || fail "no libcport.so.1 or libcport.a"
[[ -f $LIBDIR/cmake/cport/cportConfig.cmake ]] || fail "no cportConfig.cmake"
echo "test_install: installed into $P (libdir ${LIBDIR#"$P"/})"

# ---- pkg-config, with nothing but cport's .pc in sight -----------------------------------------
export PKG_CONFIG_LIBDIR=$LIBDIR/pkgconfig PKG_CONFIG_PATH=
version=$(pkg-config --modversion cport) || fail "pkg-config --modversion cport"
out=$(pkg-config --cflags --libs cport) || fail "pkg-config --cflags --libs cport"
read -ra dyn <<<"$out"
out=$(pkg-config --cflags --static --libs cport) || fail "pkg-config --cflags --static --libs cport"
read -ra sta <<<"$out"
echo "test_install: pkg-config: cport $version; --libs: ${dyn[*]}; --static --libs: ${sta[*]}"
[[ " ${dyn[*]} " != *" -luring "* ]] || fail "--libs names liburing: dynamic linking needs only cport"
[[ " ${sta[*]} " == *" -luring "* ]] || fail "--static --libs does not name liburing"

"$CC" "${FLAGS[@]}" "$HERE/consumer/app.c" "${dyn[@]}" -Wl,-rpath,"$LIBDIR" -o "$TMP/app_dyn"
needs() { # binary: the libraries it names (NEEDED)
  readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
}
[[ $(needs "$TMP/app_dyn") == *libcport.so.1* ]] || fail "app_dyn does not need libcport.so.1"
[[ $(ldd "$TMP/app_dyn") == *"libcport.so.1 => $LIBDIR/libcport.so.1 "* ]] ||
  fail "app_dyn does not find libcport.so.1 in $LIBDIR through its rpath"
"$TMP/app_dyn" || fail "app_dyn failed"

# -l:libcport.a picks the archive where both are installed (the README says so too).
sta=("${sta[@]/#-lcport/-l:libcport.a}")
"$CC" "${FLAGS[@]}" "$HERE/consumer/app.c" "${sta[@]}" -o "$TMP/app_static"
[[ $(needs "$TMP/app_static") != *libcport* ]] || fail "app_static needs libcport.so"
"$TMP/app_static" || fail "app_static failed"

# ---- CMake: find_package(cport), still without liburing's .pc in sight --------------------------
"$CMAKE" -S "$HERE/consumer" -B "$TMP/consumer" -DCMAKE_PREFIX_PATH="$P" -DCMAKE_C_COMPILER="$CC" \
  -DCMAKE_C_FLAGS="${FLAGS[*]}" -DCMAKE_EXE_LINKER_FLAGS="${FLAGS[*]}" >"$TMP/cmake.log" || {
  cat "$TMP/cmake.log" >&2
  fail "configuring tests/link/consumer failed"
}
"$CMAKE" --build "$TMP/consumer" >"$TMP/build.log" || {
  cat "$TMP/build.log" >&2
  fail "building tests/link/consumer failed"
}
[[ $(needs "$TMP/consumer/app_shared") == *libcport.so.1* ]] ||
  fail "app_shared (CMake) does not need libcport.so.1"
[[ $(needs "$TMP/consumer/app_static") != *libcport* ]] || fail "app_static (CMake) needs libcport.so"
"$TMP/consumer/app_shared" || fail "app_shared (CMake) failed"
"$TMP/consumer/app_static" || fail "app_static (CMake) failed"
echo "test_install: pkg-config (dynamic, static) and CMake (cport::cport, cport::cport_static) builds ran"
