#!/bin/bash
# Prepares a Debian 12 machine for building and testing hvfs: installs the
# Debian packages that are missing and creates the users and groups
# libvirt's QEMU driver expects. With --demo, only what tests/demo.sh needs
# (a build, QEMU and FUSE; no libvirt). Idempotent; needs root. Prints
# nothing when there is nothing to do.
#
# It never configures, starts or stops a daemon: the tests run a private
# libvirtd of their own (tests/libvirtd.sh) and leave the host's alone.
set -euo pipefail

[ "$(id -u)" = 0 ] || { echo "setup-host: must run as root" >&2; exit 1; }

pkgs=(meson ninja-build pkg-config gcc libfuse3-dev fuse3 libjson-c-dev
      libtirpc-dev libgnutls28-dev rpcsvc-proto libsasl2-dev libsasl2-modules
      qemu-system-x86)
demo=0
[ "${1:-}" = --demo ] && demo=1
[ $demo = 1 ] || pkgs+=(libvirt-daemon libvirt-daemon-driver-qemu
	libvirt-clients python3-pytest valgrind man-db systemd binutils
	ovmf qemu-utils openssh-server openssh-client netcat-openbsd
	prometheus prometheus-node-exporter curl rsync jq procps cpio xz-utils
	sasl2-bin gnutls-bin)
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
[ $demo = 1 ] && exit 0

# libvirtd's QEMU driver wants these ids even when it runs QEMU as root
# (the package creates them only with libvirt-daemon-system).
getent group kvm >/dev/null || groupadd --system kvm
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 ||
	useradd --system --gid libvirt-qemu --no-create-home \
		--home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu
exit 0
