#!/bin/bash
# Prepares a Debian 12 machine for building and testing hvfs: installs the
# Debian packages that are missing and starts virtlogd and libvirtd when none
# runs. Idempotent; needs root. Prints nothing on success unless -v.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup-host: must run as root" >&2; exit 1; }

pkgs=(meson ninja-build pkg-config gcc libfuse3-dev fuse3 libjson-c-dev
      libtirpc-dev rpcsvc-proto qemu-system-x86 libvirt-daemon
      libvirt-daemon-driver-qemu libvirt-clients python3-pytest valgrind
      man-db systemd binutils)
[ -n "${HVFS_SETUP_EXTRA:-}" ] && pkgs+=($HVFS_SETUP_EXTRA)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup-host: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# libvirtd's QEMU driver wants these ids even when it runs QEMU as root.
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 ||
	useradd --system --gid libvirt-qemu --no-create-home \
		--home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu

# Run QEMU as root without sVirt or cgroups: this machine has neither a
# security driver nor a delegated cgroup tree.
conf=/etc/libvirt/qemu.conf
touch "$conf"
changed=0
setconf() {
	touch "$conf"
	grep -qxF "$1 = $2" "$conf" && return 0
	changed=1
	if grep -qE "^[[:space:]]*$1[[:space:]]*=" "$conf"; then
		sed -i -E "s|^[[:space:]]*$1[[:space:]]*=.*|$1 = $2|" "$conf"
	else
		echo "$1 = $2" >>"$conf"
	fi
}
setconf user '"root"'
setconf group '"root"'
setconf security_driver '"none"'
setconf cgroup_controllers '[ ]'
# No private mount namespace per QEMU: on a machine whose mounts are private
# (no systemd making / shared), each namespace would keep a copy of every
# FUSE mount that existed when the VM started, and an unmounted hvfs could
# not end until those VMs do.
setconf namespaces '[ ]'
# Remote connections for the multi-host tests: plain TCP on the loopback
# only, without authentication (libvirtd --listen, below).
conf=/etc/libvirt/libvirtd.conf
setconf listen_tcp 1
setconf listen_tls 0
setconf auth_tcp '"none"'
setconf listen_addr '"127.0.0.1"'
mkdir -p /var/log/libvirt /var/lib/libvirt/qemu /run/libvirt

sock=/var/run/libvirt/libvirt-sock
# A libvirtd started without --listen (by hand, or an older run) is
# restarted too.
listening() {
	for pid in $(pgrep -x libvirtd); do
		tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- --listen && return 0
	done
	return 1
}
if pgrep -x libvirtd >/dev/null && ! listening; then
	changed=1
fi
if [ "$changed" = 1 ] && pgrep -x libvirtd >/dev/null; then
	# Running domains survive a libvirtd restart.
	pkill -x libvirtd
	for _ in $(seq 50); do pgrep -x libvirtd >/dev/null || break; sleep 0.1; done
fi
if ! pgrep -x virtlogd >/dev/null; then
	virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
	rm -f "$sock"
	libvirtd -d --listen
fi
for _ in $(seq 100); do
	[ -S "$sock" ] && virsh -c qemu:///system version >/dev/null 2>&1 &&
		virsh -c qemu+tcp://127.0.0.1/system version >/dev/null 2>&1 &&
		exit 0
	sleep 0.1
done
echo "setup-host: libvirtd did not come up (no $sock)" >&2
exit 1
