#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# tests/guest/build.sh [OUTDIR]: builds the tests' tiny Linux guest from
# Debian packages, without installing anything on the host:
#   OUTDIR/vmlinux  the uncompressed ELF kernel of Debian 12's current
#                   linux-image-amd64 (booted by QEMU through its PVH entry:
#                   no in-guest decompression, ready in seconds under TCG)
#   OUTDIR/initrd   a gzip'd cpio: busybox-static as /init (tests/guest/init),
#                   Debian's qemu-ga with the shared libraries ldd lists, and
#                   the kernel modules the guest needs with their dependencies.
# Modules: virtio (pci, console, net, blk, balloon), ACPI button, evdev,
# pvpanic-pci. OUTDIR defaults to ./guest. Run as root (apt-get download,
# apt-get update when a package is unknown).
#
# Cache: $HVFS_GUEST_CACHE, default /var/cache/hvfs-test-guest (or
# $TMPDIR/hvfs-test-guest when that is not writable). A build is kept in
# CACHE/KEY/, KEY being the kernel, qemu-guest-agent and busybox-static
# versions and a hash of this directory's files; a second run with the same
# versions only links or copies. The downloaded .debs are kept in
# CACHE/debs/; builds of other keys are removed.
# HVFS_GUEST_KERNEL=linux-image-X-amd64 picks another kernel package.
# The tests (tests/fs/guest.py) boot $HVFS_GUEST_DIR/{vmlinux,initrd} when
# set and built, else run this script into $TMPDIR/hvfs-test-guest-out.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-guest}
cache=${HVFS_GUEST_CACHE:-/var/cache/hvfs-test-guest}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${TMPDIR:-/tmp}/hvfs-test-guest
	mkdir -p "$cache"
fi
modules="virtio_pci virtio_console virtio_net virtio_blk virtio_balloon button evdev pvpanic_pci"

die() { echo "build.sh: $*" >&2; exit 1; }

# "PKG VERSION" lines, the candidate versions of the packages named; after an
# apt-get update when apt does not know one yet.
versions() {
	v=$(apt-cache policy "$@" 2>/dev/null | awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) }
		/^ *Candidate: / && $2 != "(none)" { print p, $2 }')
	if [ "$(echo "$v" | grep -c .)" -ne $# ]; then
		apt-get update -qq >&2 || true
		v=$(apt-cache policy "$@" 2>/dev/null | awk '/^[^ ]/ { p = $1; sub(/:$/, "", p) }
			/^ *Candidate: / && $2 != "(none)" { print p, $2 }')
	fi
	for p; do
		echo "$v" | grep -q "^$p " || die "no package $p in apt's lists"
	done
	echo "$v"
}
version() { echo "$vers" | sed -n "s/^$1 //p"; }

kpkg=${HVFS_GUEST_KERNEL:-}
if [ -z "$kpkg" ]; then
	versions linux-image-amd64 >/dev/null
	kpkg=$(apt-cache depends linux-image-amd64 |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
	[ -n "$kpkg" ] || die "linux-image-amd64 names no kernel package"
fi
vers=$(versions "$kpkg" qemu-guest-agent busybox-static)
kver=$(version "$kpkg")
gaver=$(version qemu-guest-agent)
bbver=$(version busybox-static)
self=$(cat "$here"/build.sh "$here"/init "$here"/power | md5sum | cut -c1-8)
key=$(echo "$kpkg-$kver-$gaver-$bbver-$self" | tr -c 'A-Za-z0-9.+_\n-' _)
done_dir=$cache/$key

install_out() {
	mkdir -p "$out"
	for f in vmlinux initrd; do
		rm -f "$out/$f"
		ln "$done_dir/$f" "$out/$f" 2>/dev/null || cp "$done_dir/$f" "$out/$f"
	done
	echo "guest $key in $out"
}

if [ -f "$done_dir/initrd" ] && [ -f "$done_dir/vmlinux" ]; then
	install_out
	exit 0
fi

# Download into the cache; apt's sandbox user may not write there, which only
# costs a warning.
debs=$cache/debs
mkdir -p "$debs"
fetch() {
	deb=$(ls "$debs/$1"_*.deb 2>/dev/null | grep -F "_$(echo "$2" | sed 's/:/%3a/')_" | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$debs" && apt-get download -q "$1=$2" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) ||
			{ apt-get update -qq >&2; (cd "$debs" && apt-get download -q "$1=$2" >&2); }
		deb=$(ls -t "$debs/$1"_*.deb | head -n1)
	fi
	echo "$deb"
}

work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"

# The kernel: only the image and the modules we need leave the package.
kdeb=$(fetch "$kpkg" "$kver")
dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$work" --wildcards \
	'./boot/vmlinu*' './lib/modules/*/modules.builtin' './lib/modules/*/kernel/*'
kdir=$(ls -d "$work"/lib/modules/*)
krel=${kdir##*/}
if [ -f "$work/boot/vmlinux-$krel" ]; then
	mv "$work/boot/vmlinux-$krel" "$work/vmlinux"
else
	# extract-vmlinux: the bzImage's payload is the compressed ELF; find its
	# compression's magic and decompress from there.
	z=$work/boot/vmlinuz-$krel
	[ -f "$z" ] || die "$kpkg has neither vmlinux nor vmlinuz"
	for m in 'xz:\xfd7zXZ\x00' 'gzip:\x1f\x8b\x08' 'zstd:\x28\xb5\x2f\xfd'; do
		tool=${m%%:*}
		off=$(LC_ALL=C grep -obUaP "${m#*:}" "$z" | head -n1 | cut -d: -f1)
		[ -n "$off" ] || continue
		case $tool in
		xz) tail -c +$((off + 1)) "$z" | xz -dc --single-stream >"$work/vmlinux" 2>/dev/null || true ;;
		gzip) tail -c +$((off + 1)) "$z" | gzip -dc >"$work/vmlinux" 2>/dev/null || true ;;
		zstd) tail -c +$((off + 1)) "$z" | zstd -dcq >"$work/vmlinux" 2>/dev/null || true ;;
		esac
		[ "$(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] && break
		rm -f "$work/vmlinux"
	done
	[ -f "$work/vmlinux" ] || die "no ELF kernel found in $z"
fi

# Modules in dependency order. A package's modules.dep is made by depmod at
# install time; its source is each module's .modinfo "depends=" field, read
# here directly (no kmod needed).
mkdir -p "$root/lib/modules"
: >"$work/order"
modpath() {
	p=$(find "$kdir/kernel" -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" | head -n1)
	[ -n "$p" ] || die "module $1 not in $kpkg (built in?)"
	echo "$p"
}
add_module() {
	local p d
	grep -qx "$1" "$work/order" && return 0
	p=$(modpath "$1")
	for d in $(tr '\0' '\n' <"$p" | sed -n 's/^depends=//p' | tr , ' '); do
		add_module "$(echo "$d" | tr - _)"
	done
	cp "$p" "$root/lib/modules/$1.ko"
	echo "$1" >>"$work/order"
}
for m in $modules; do
	# A module the kernel has built in needs nothing.
	grep -qE "/($m|$(echo "$m" | tr _ -))\.ko\$" "$kdir/modules.builtin" ||
		add_module "$m"
done
cp "$work/order" "$root/lib/modules/order"

# busybox-static and qemu-ga, with the libraries and loader ldd lists.
bdeb=$(fetch busybox-static "$bbver")
gdeb=$(fetch qemu-guest-agent "$gaver")
dpkg-deb --fsys-tarfile "$bdeb" | tar -x -C "$work" ./bin/busybox
dpkg-deb --fsys-tarfile "$gdeb" | tar -x -C "$work" ./usr/sbin/qemu-ga
mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin" \
	"$root/proc" "$root/sys" "$root/dev" "$root/run" "$root/tmp" \
	"$root/etc" "$root/root" "$root/var"
ln -s ../run "$root/var/run"
cp "$work/bin/busybox" "$root/bin/busybox"
cp "$work/usr/sbin/qemu-ga" "$root/usr/sbin/qemu-ga"
ldd "$work/usr/sbin/qemu-ga" | awk '/not found/ { print "missing " $1; next }
	$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
while read -r lib; do
	case $lib in "missing "*) die "qemu-ga needs ${lib#missing }, which this host lacks (install it: it comes with qemu-system-x86)" ;; esac
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
cp "$here/init" "$root/init"
cp "$here/power" "$root/sbin/power"
for p in poweroff reboot halt shutdown; do ln -s power "$root/sbin/$p"; done
chmod 755 "$root/init" "$root/sbin/power"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
echo "root:x:0:" >"$root/etc/group"

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -6 >"$work/initrd"

mkdir "$work/done"
mv "$work/vmlinux" "$work/initrd" "$work/done/"
# A build that ran at the same time may have got there first: same result.
mv -T "$work/done" "$done_dir" 2>/dev/null || [ -f "$done_dir/initrd" ]
# Builds of other versions are no longer wanted (their outputs in an OUTDIR
# are hard links and stay valid).
for d in "$cache"/*; do
	case ${d##*/} in debs | build.* | "$key") ;; *) rm -rf "$d" ;; esac
done
install_out
