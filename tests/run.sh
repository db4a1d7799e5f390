#!/bin/bash
# Sets the machine up (Debian packages, libvirtd), builds hvfs and runs every
# test: unit, scripted peers, real QEMU and libvirtd, the mounted tree. Needs
# root. Ends with one line "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
top=$PWD
build=${HVFS_BUILD:-build}

bash tests/setup-host.sh || exit 1
if [ ! -f "$build/build.ninja" ]; then
	meson setup "$build" >/dev/null || exit 1
fi
ninja -C "$build" || exit 1

passed=0
failed=0
# Adds the results of one `meson test` run (its testlog.json) to the tally.
# In CI nothing may skip, so a skip counts as a failure there.
tally() {
	local log=$1 p f
	read -r p f < <(python3 - "$log" "${CI:-}" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        ok += 1
    elif r == "SKIP" and not sys.argv[2]:
        ok += 1
    else:
        bad += 1
print(ok, bad)
PY
)
	passed=$((passed + p))
	failed=$((failed + f))
}

meson test -C "$build" --print-errorlogs --num-processes 2
tally "$build/meson-logs/testlog.json"

# The codec and driver unit tests once more under valgrind.
meson test -C "$build" --setup valgrind --suite unit --print-errorlogs \
	--logbase valgrind
tally "$build/meson-logs/valgrind-valgrind.json"

# The whole suite again in a build with AddressSanitizer and UBSan; any
# report makes the test fail (hvfs must also exit 0 at every unmount).
asan=${build}-asan
if [ ! -f "$asan/build.ninja" ]; then
	meson setup "$asan" -Db_sanitize=address,undefined -Db_lundef=false \
		>/dev/null || exit 1
fi
if ninja -C "$asan" >/dev/null; then
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$asan" --print-errorlogs --num-processes 2
	tally "$asan/meson-logs/testlog.json"
else
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
