/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt URIs (private to lib/): parsing only, no I/O but one stat() for
 * the default socket. Errors are negative errno values with a message in
 * *ret_error (may be NULL).
 */

#include <stdbool.h>

#define VRPC_TCP_PORT_DEFAULT "16509"

enum vrpc_transport {
	VRPC_TRANSPORT_UNIX,
	VRPC_TRANSPORT_TCP,
};

/* A parsed libvirt URI. */
struct vrpc_uri {
	enum vrpc_transport transport;
	char *name; /* sent in CONNECT_OPEN: "qemu:///system" */
	char *path; /* UNIX: the socket */
	char *host; /* TCP */
	char *port; /* TCP */
};

/*
 * Whether uri names a libvirt driver we know ("qemu", "test"), whatever its
 * transport: such a URI belongs to us even when vrpc_uri_parse() then
 * refuses its transport with a clear message. No I/O.
 */
bool vrpc_uri_is_libvirt(const char *uri);

/*
 * Parses "qemu:///system", "qemu+unix:///system?socket=PATH",
 * "test+unix:///default", "qemu+tcp://HOST[:PORT]/system". The default
 * socket of qemu:///system is virtqemud's when it exists, else libvirtd's
 * (this stats the file system). Returns 0 and *ret, -EINVAL, -EOPNOTSUPP for
 * a transport we do not speak, -ENOMEM.
 */
int vrpc_uri_parse(const char *uri, struct vrpc_uri **ret, char **ret_error);

/* Accepts NULL; returns NULL. */
struct vrpc_uri *vrpc_uri_free(struct vrpc_uri *u);
