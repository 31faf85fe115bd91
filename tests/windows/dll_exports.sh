#!/usr/bin/env bash
# dll_exports.sh OBJDUMP cport.dll INCLUDE_DIR - cport.dll exports exactly the functions that
# include/cport declares with CP_API: nothing internal (cp__*, mem_*), nothing missing.
set -euo pipefail
objdump=$1 dll=$2 inc=$3
exported=$("$objdump" -p "$dll" | awk '/\[Ordinal\/Name Pointer\] Table/ {t=1; next} t && /^[ \t]*\[/ {print $NF} t && /^$/ {t=0}' | sort -u)
# Every public header (port.h, net.h, log.h, socket.h, ...): the DLL is the whole library.
headers=("$inc"/*.h)
declared=$(grep -h -A3 '^CP_API' "${headers[@]}" | tr '\n' ' ' | grep -oE '\b(cp_[a-z0-9_]+)\(' | tr -d '(' | sort -u)
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
extra=$(comm -23 <(echo "$exported") <(echo "$declared"))
echo "dll_exports: $(echo "$exported" | wc -l) exported, $(echo "$declared" | wc -l) declared"
rc=0
[[ -z $extra ]] || { echo "exported but not declared:"; echo "$extra"; rc=1; }
[[ -z $missing ]] || { echo "declared but not exported:"; echo "$missing"; rc=1; }
exit $rc
