#!/bin/bash
# The main job, end to end: installs the packages it lacks, builds hvfs,
# starts two small QEMU VMs, mounts the tree and prints every domain with its
# QEMU version, read from the mounted files. Cleans up after itself. Needs
# root; needs no libvirtd (and leaves any that runs alone).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${HVFS_BUILD:-build}

bash tests/setup-host.sh --demo
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" >/dev/null

work=$(mktemp -d /tmp/hvfs-demo.XXXXXX)
mnt=$work/mnt
mkdir -p "$work/qmp" "$mnt"
pids=()
cleanup() {
	fusermount3 -u "$mnt" 2>/dev/null || true
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for vm in vm-1 vm-2; do
	qemu-system-x86_64 -machine none -nodefaults -display none -name "$vm" \
		-qmp "unix:$work/qmp/$vm.qmp,server=on,wait=off" &
	pids+=($!)
done
for vm in vm-1 vm-2; do
	for _ in $(seq 100); do [ -S "$work/qmp/$vm.qmp" ] && break; sleep 0.05; done
done

"$build/fs/hvfs" --qmp-dir "$work/qmp" "$mnt"

printf '%-12s%s\n' Domain "QEMU Version"
for d in "$mnt"/*/; do
	d=${d%/}
	printf '%-12s%s\n' "${d##*/}" "$(cat "$d/version")"
done
