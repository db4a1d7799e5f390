#!/bin/bash
# The tests' own libvirtd: a private instance that never touches the host's.
#
#   tests/libvirtd.sh start DIR     start it (DIR is created; a stopped
#                                   instance restarts with its state)
#   tests/libvirtd.sh stop DIR      stop the daemon; its domains keep running,
#                                   as across a service restart
#   tests/libvirtd.sh teardown DIR  destroy its domains, stop it, remove DIR
#   tests/libvirtd.sh run CMD...    run CMD with an instance: the one named by
#                                   $HVFS_TEST_LIBVIRTD if it runs, else a new
#                                   one torn down when CMD ends
#
# libvirtd runs in a mount namespace of its own in which DIR/{etc,run,lib,
# cache,log} are bind-mounted over /etc/libvirt, /run/libvirt,
# /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt, with a
# libvirtd.conf and a qemu.conf written here (QEMU as root without sVirt,
# cgroups or per-VM namespaces; QEMU's output to files, so no virtlogd).
# Outside the namespace, the tests reach it as
#   qemu+unix:///system?socket=DIR/run/libvirt-sock
#   qemu+tcp://127.0.0.1:PORT/system        (PORT in DIR/port)
#   qemu+tls://localhost:TPORT/system?pkipath=DIR/pki/client
#                                           (TPORT in DIR/tls_port)
# The TCP listener is on the loopback only, on a free port chosen at the first
# start, without authentication: acceptable only because the instance belongs
# to one test run and holds only the tests' throwaway domains.
# With SASL: when DIR/sasl2/libvirt.conf exists at start (Cyrus SASL's
# configuration: mech_list, sasldb_path), both the read-write UNIX socket and
# the TCP listener ask for SASL, the daemon reads that directory instead of
# /etc/sasl2 (SASL_CONF_PATH), and this script's own virsh calls take their
# credentials from DIR/auth.conf (libvirt's auth.conf format).
# The TLS listener is on the loopback too, with certificates made by certtool
# at the first start in DIR/pki: a CA (ca-key.pem, cacert.pem, valid one year), the server's for
# localhost and 127.0.0.1, and a client's (CN=hvfs-test-client, the one DN in
# tls_allowed_dn_list) in DIR/pki/client laid out for libvirt's pkipath=.
# FUSE mounts that exist when it starts are detached inside its namespace, so
# the QEMUs it starts never keep an hvfs mount alive after its unmount.
# Needs root. Prints nothing on success.
set -euo pipefail

die() { echo "libvirtd.sh: $*" >&2; exit 1; }

# The libvirtd of DIR, if one runs (a zombie does not count).
daemon_pid() {
	local pid state
	pid=$(cat "$1/libvirtd.pid" 2>/dev/null) || return 1
	state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
	[ "$state" != Z ] && grep -qx libvirtd "/proc/$pid/comm"
}

# The URIs of DIR's daemon, with its credentials when it asks for SASL.
auth_param() { [ -f "$1/sasl2/libvirt.conf" ] && echo "$2authfile=$1/auth.conf" || true; }
uri() { echo "qemu+unix:///system?socket=$1/run/libvirt-sock$(auth_param "$1" '&')"; }
tcp_uri() { echo "qemu+tcp://127.0.0.1:$(cat "$1/port")/system$(auth_param "$1" '?')"; }
tls_uri() {
	echo "qemu+tls://localhost:$(cat "$1/tls_port")/system?pkipath=$1/pki/client"
}

# certtool's certificate for a template (stdin), signed by DIR's CA; the key
# is made too. cert KEY CERT
cert() {
	local dir=$1 key=$2 crt=$3 tmpl
	tmpl=$(mktemp "$dir/pki/tmpl.XXXXXX")
	cat >"$tmpl"
	certtool --generate-privkey --key-type=rsa --bits=2048 \
		--outfile "$key" 2>/dev/null
	certtool --generate-certificate --load-privkey "$key" \
		--load-ca-certificate "$dir/pki/cacert.pem" \
		--load-ca-privkey "$dir/pki/ca-key.pem" --template "$tmpl" \
		--outfile "$crt" 2>/dev/null
	rm -f "$tmpl"
}

# The test PKI (see above), once per DIR.
make_pki() {
	local dir=$1 p=$1/pki
	[ -f "$p/client/clientcert.pem" ] && return 0
	mkdir -p "$p/client"
	certtool --generate-privkey --key-type=rsa --bits=2048 \
		--outfile "$p/ca-key.pem" 2>/dev/null
	printf 'cn = "hvfs test CA"\nca\ncert_signing_key\nexpiration_days = 365\n' \
		>"$p/ca.tmpl"
	certtool --generate-self-signed --load-privkey "$p/ca-key.pem" \
		--template "$p/ca.tmpl" --outfile "$p/cacert.pem" 2>/dev/null
	printf 'cn = "localhost"\ndns_name = "localhost"\nip_address = "127.0.0.1"\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 365\n' |
		cert "$dir" "$p/serverkey.pem" "$p/servercert.pem"
	printf 'cn = "hvfs-test-client"\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 365\n' |
		cert "$dir" "$p/client/clientkey.pem" "$p/client/clientcert.pem"
	cp "$p/cacert.pem" "$p/client/cacert.pem"
}

free_port() {
	/usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
	local dir=$1 d tries=1
	[ "$(id -u)" = 0 ] || die "must run as root"
	if daemon_pid "$dir"; then return 0; fi
	mkdir -p "$dir"
	for d in etc run lib/qemu cache log/qemu; do mkdir -p "$dir/$d"; done
	# A port picked now may be taken before libvirtd binds it: then pick
	# again. A restart keeps the port the tests already know.
	[ -f "$dir/port" ] || tries=3
	make_pki "$dir"
	while :; do
		[ -f "$dir/port" ] || free_port >"$dir/port"
		[ -f "$dir/tls_port" ] || free_port >"$dir/tls_port"
		launch "$dir" && return 0
		tries=$((tries - 1))
		[ $tries -gt 0 ] || die "libvirtd exited (see $dir/log/libvirtd.log)"
		rm -f "$dir/port" "$dir/tls_port"
	done
}

# Starts the daemon of DIR on the port in DIR/port and waits until it answers
# on both sockets; 1 if it exited.
launch() {
	local dir=$1 port tls_port auth=none
	port=$(cat "$dir/port")
	tls_port=$(cat "$dir/tls_port")
	[ -f "$dir/sasl2/libvirt.conf" ] && auth=sasl
	cat >"$dir/etc/libvirtd.conf" <<-EOF
	unix_sock_group = "root"
	unix_sock_ro_perms = "0700"
	unix_sock_rw_perms = "0700"
	auth_unix_ro = "none"
	auth_unix_rw = "$auth"
	listen_tls = 1
	listen_tcp = 1
	listen_addr = "127.0.0.1"
	tcp_port = "$port"
	auth_tcp = "$auth"
	tls_port = "$tls_port"
	auth_tls = "none"
	ca_file = "$dir/pki/cacert.pem"
	cert_file = "$dir/pki/servercert.pem"
	key_file = "$dir/pki/serverkey.pem"
	tls_allowed_dn_list = [ "CN=hvfs-test-client" ]
	log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
	EOF
	cat >"$dir/etc/qemu.conf" <<-EOF
	user = "root"
	group = "root"
	dynamic_ownership = 0
	security_driver = "none"
	cgroup_controllers = [ ]
	namespaces = [ ]
	stdio_handler = "file"
	EOF
	rm -f "$dir/run/libvirt-sock" "$dir/run/libvirt-sock-ro"
	# Bind targets that a host without a running libvirtd may lack.
	mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt \
		/var/log/libvirt
	setsid unshare --mount --propagation slave -- /bin/sh -eu -c '
		dir=$1
		# Mount points of FUSE file systems, deepest first (field 5;
		# the file system type follows the "-").
		awk "{ for (i = 7; i < NF; i++) if (\$i == \"-\") {
			if (\$(i + 1) ~ /^fuse/) print \$5; break } }" \
			/proc/self/mountinfo | sort -r |
			while read -r m; do umount -l "$(printf "%b" "$m")"; done
		mount --bind "$dir/etc" /etc/libvirt
		mount --bind "$dir/run" /run/libvirt
		mount --bind "$dir/lib" /var/lib/libvirt
		mount --bind "$dir/cache" /var/cache/libvirt
		mount --bind "$dir/log" /var/log/libvirt
		[ -f "$dir/sasl2/libvirt.conf" ] &&
			export SASL_CONF_PATH="$dir/sasl2"
		exec libvirtd --listen -p "$dir/libvirtd.pid" \
			-f /etc/libvirt/libvirtd.conf
	' sh "$dir" </dev/null >>"$dir/log/stderr" 2>&1 &
	local pid=$! state
	for _ in $(seq 300); do
		state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || state=Z
		[ "$state" != Z ] || return 1
		# With SASL, TCP may offer no mechanism the test's
		# configuration allows: the UNIX socket tells it is up.
		if [ -S "$dir/run/libvirt-sock" ] &&
		   virsh -c "$(uri "$dir")" version >/dev/null 2>&1 &&
		   { [ "$auth" = sasl ] ||
		     virsh -c "$(tcp_uri "$dir")" version >/dev/null 2>&1; } &&
		   virsh -c "$(tls_uri "$dir")" version >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	die "libvirtd did not come up (see $dir/log/libvirtd.log)"
}

stop() {
	local dir=$1 pid
	daemon_pid "$dir" || return 0
	pid=$(cat "$dir/libvirtd.pid")
	kill -TERM "$pid"
	for _ in $(seq 100); do
		daemon_pid "$dir" || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

teardown() {
	local dir=$1 name f pid
	[ -d "$dir" ] || return 0
	if daemon_pid "$dir"; then
		for name in $(virsh -q -c "$(uri "$dir")" list --name 2>/dev/null); do
			virsh -q -c "$(uri "$dir")" destroy "$name" >/dev/null 2>&1 || true
		done
	fi
	stop "$dir"
	# QEMUs it left behind (it was killed, or did not answer).
	for f in "$dir"/run/qemu/*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		grep -q qemu "/proc/$pid/comm" 2>/dev/null && kill -KILL "$pid" || true
	done
	rm -rf "$dir"
}

case ${1:-} in
start|stop|teardown)
	[ $# -eq 2 ] || die "usage: $0 $1 DIR"
	"$1" "$2" ;;
run)
	shift
	[ $# -ge 1 ] || die "usage: $0 run CMD..."
	if [ -n "${HVFS_TEST_LIBVIRTD:-}" ] && daemon_pid "$HVFS_TEST_LIBVIRTD"; then
		exec "$@"
	fi
	dir=$(mktemp -d /tmp/hvfs-libvirtd.XXXXXX)
	trap 'teardown "$dir"' EXIT
	start "$dir"
	HVFS_TEST_LIBVIRTD=$dir "$@" ;;
*)
	die "usage: $0 start|stop|teardown DIR | run CMD..." ;;
esac
