#!/bin/bash
# Installs the Debian packages that are missing, builds hvfs and runs every
# test: unit, scripted peers, real QEMU and libvirtd, the mounted tree. Needs
# root. Ends with one line "N passed, N failed".
#
# The libvirt tests use a private libvirtd (tests/libvirtd.sh) started here
# and torn down at the end, also when something fails: the host's libvirtd,
# if one runs, is never stopped or reconfigured, and the run checks that its
# configuration and processes are the same at the end as at the start.
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

# The host's libvirt as this run found it: its configuration files, any
# definition of a test domain (hvt-*, hvb-*) and the libvirtd processes of
# this mount namespace (the private one has its own). The operator's own
# domains may come and go meanwhile.
host_libvirt() {
	local pid ns
	ns=$(readlink /proc/self/ns/mnt)
	find /etc/libvirt -type f \( -name '*.conf' -o -name 'hvt-*' \
		-o -name 'hvb-*' \) -exec sha256sum {} + 2>/dev/null | sort
	for pid in $(pgrep -x libvirtd); do
		[ "$(readlink "/proc/$pid/ns/mnt")" = "$ns" ] || continue
		[ "$(awk '{print $3}' "/proc/$pid/stat")" = Z ] && continue
		echo "libvirtd $pid"
	done
}
host_before=$(host_libvirt)

lvdir=$(mktemp -d /tmp/hvfs-libvirtd.XXXXXX)
trap 'bash tests/libvirtd.sh teardown "$lvdir"' EXIT
bash tests/libvirtd.sh start "$lvdir" || exit 1
export HVFS_TEST_LIBVIRTD=$lvdir

# The tiny real Linux guest of the guest tests (tests/guest/build.sh:
# Debian's kernel, busybox and qemu-ga; cached between runs).
sh tests/guest/build.sh "$top/$build/guest" || exit 1
export HVFS_GUEST_DIR=$top/$build/guest

# Once out of the source tree, with warnings as errors (build only).
oot=$(mktemp -d /tmp/hvfs-oot.XXXXXX)
if meson setup "$oot" "$top" -Dwerror=true >/dev/null &&
   meson compile -C "$oot" >/dev/null; then
	passed=$((passed + 1))
else
	echo "out-of-tree build with -Dwerror=true failed" >&2
	failed=$((failed + 1))
fi
rm -rf "$oot"
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
	LSAN_OPTIONS=suppressions=$top/tests/lsan.supp \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$asan" --print-errorlogs --num-processes 2
	tally "$asan/meson-logs/testlog.json"
else
	failed=$((failed + 1))
fi

host_after=$(host_libvirt)
if [ "$host_after" = "$host_before" ]; then
	passed=$((passed + 1))
else
	echo "the host's libvirt changed during the run (by it or by" \
		"someone else):" >&2
	diff <(echo "$host_before") <(echo "$host_after") >&2
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
