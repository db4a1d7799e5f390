/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt URIs (private to lib/): parsing only, no I/O. Errors are negative errno values with a message in
 * *ret_error (may be NULL).
 */

#include <stdbool.h>

#define VRPC_TCP_PORT_DEFAULT "16509"
#define VRPC_TLS_PORT_DEFAULT "16514"

enum vrpc_transport {
	VRPC_TRANSPORT_UNIX,
	VRPC_TRANSPORT_TCP,
	VRPC_TRANSPORT_SSH,
	VRPC_TRANSPORT_TLS,
};

/* How the ssh transport reaches the daemon on the remote host. */
enum vrpc_ssh_proxy {
	VRPC_SSH_PROXY_AUTO,   /* virt-ssh-helper when present, else netcat */
	VRPC_SSH_PROXY_NATIVE, /* virt-ssh-helper */
	VRPC_SSH_PROXY_NETCAT, /* NETCAT -U SOCKET */
};

/* A parsed libvirt URI. */
struct vrpc_uri {
	enum vrpc_transport transport;
	char *name; /* sent in CONNECT_OPEN: "qemu:///system" */
	char *path; /* UNIX: the socket (?socket=, else libvirtd's);
		     * SSH: ?socket= (the remote socket) */
	char *direct; /* UNIX qemu without ?socket=: virtqemud's socket, to
		       * use instead of path whenever it exists */
	char *host; /* TCP, SSH, TLS */
	char *port; /* TCP, SSH, TLS (NULL: ssh's own default) */
	char *authfile; /* ?authfile=: libvirt's auth.conf for SASL (any) */
	/* SSH only */
	char *user;      /* NULL: ssh's own default */
	char *keyfile;   /* ?keyfile= */
	char *netcat;    /* ?netcat=, default "nc" */
	bool no_verify;  /* ?no_verify=1: SSH: StrictHostKeyChecking=no;
			  * TLS: the server's certificate is not checked */
	bool session;    /* the path is /session */
	enum vrpc_ssh_proxy proxy;
	/* TLS only */
	char *pkipath;   /* ?pkipath=DIR: cacert.pem, clientcert.pem and
			  * clientkey.pem there; NULL: libvirt's defaults */
};

/*
 * Whether uri names a libvirt driver we know ("qemu", "test"), whatever its
 * transport: such a URI belongs to us even when vrpc_uri_parse() then
 * refuses its transport with a clear message. No I/O.
 */
bool vrpc_uri_is_libvirt(const char *uri);

/*
 * Parses "qemu:///system", "qemu:///session", "qemu+unix:///system?socket=PATH",
 * "test+unix:///default", "qemu+tcp://HOST[:PORT]/system",
 * "qemu+ssh://[USER@]HOST[:PORT]/system?keyfile=&no_verify=&no_tty=&socket=
 * &netcat=&proxy=", "qemu+tls://HOST[:PORT]/system?pkipath=&no_verify=",
 * "qemu://HOST[:PORT]/system" (TLS, as libvirt reads it), each with an
 * optional authfile=. The default sockets, as libvirt's client has them:
 * under /var/run/libvirt, or for a user other than root with /session (or
 * test+TRANSPORT) under $XDG_RUNTIME_DIR/libvirt, else
 * $XDG_CACHE_HOME/libvirt, else ~/.cache/libvirt; root's /session is the
 * system daemon's. Returns 0 and *ret, -EINVAL, -EOPNOTSUPP for a
 * transport we do not speak, -ENOMEM.
 */
int vrpc_uri_parse(const char *uri, struct vrpc_uri **ret, char **ret_error);

/* Accepts NULL; returns NULL. */
struct vrpc_uri *vrpc_uri_free(struct vrpc_uri *u);
