/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt URIs: which daemon, over which transport. See vrpc-uri.h. A new
 * transport (ssh, tls) is a new `enum vrpc_transport` value accepted here
 * and an ops table in vrpc-transport.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "sock.h"
#include "vrpc-uri.h"

#define QEMU_SYSTEM_SOCKETS \
	{ "/var/run/libvirt/virtqemud-sock", "/var/run/libvirt/libvirt-sock" }
#define LIBVIRTD_SOCKET "/var/run/libvirt/libvirt-sock"

static const char *const known_drivers[] = { "qemu", "test" };

static size_t scheme_driver_len(const char *uri)
{
	for (size_t i = 0; i < sizeof(known_drivers) / sizeof(*known_drivers);
	     i++) {
		size_t n = strlen(known_drivers[i]);

		if (!strncmp(uri, known_drivers[i], n) &&
		    (uri[n] == '+' || !strncmp(uri + n, "://", 3)))
			return n;
	}
	return 0;
}

bool vrpc_uri_is_libvirt(const char *uri)
{
	return uri && scheme_driver_len(uri) > 0;
}

struct vrpc_uri *vrpc_uri_free(struct vrpc_uri *u)
{
	if (!u)
		return NULL;
	free(u->name);
	free(u->path);
	free(u->host);
	free(u->port);
	free(u);
	return NULL;
}

/* "HOST", "HOST:PORT", "[V6]", "[V6]:PORT" */
static int parse_authority(const char *a, size_t n, struct vrpc_uri *u)
{
	const char *host = a, *port = NULL;
	size_t hn = n;

	if (n && a[0] == '[') {
		const char *e = memchr(a, ']', n);

		if (!e)
			return -EINVAL;
		host = a + 1;
		hn = e - host;
		if (e + 1 < a + n) {
			if (e[1] != ':')
				return -EINVAL;
			port = e + 2;
		}
	} else {
		const char *colon = memchr(a, ':', n);

		if (colon) {
			hn = colon - a;
			port = colon + 1;
		}
	}
	if (!hn)
		return -EINVAL;
	if (port) {
		size_t pn = a + n - port;

		if (!pn || pn > 5 || strspn(port, "0123456789") < pn)
			return -EINVAL;
		u->port = strndup(port, pn);
	} else {
		u->port = strdup(VRPC_TCP_PORT_DEFAULT);
	}
	u->host = strndup(host, hn);
	return u->host && u->port ? 0 : -ENOMEM;
}

int vrpc_uri_parse(const char *uri, struct vrpc_uri **ret, char **ret_error)
{
	struct vrpc_uri *u = NULL;
	const char *p, *auth, *path, *query;
	size_t dn, tn, an, pn;
	int r;

	dn = uri ? scheme_driver_len(uri) : 0;
	if (!dn)
		return sock_error(ret_error, -EINVAL, "%s: not a libvirt URI",
				 uri ? uri : "(null)");
	p = uri + dn;
	tn = 0;
	if (*p == '+') {
		p++;
		tn = strcspn(p, ":");
	}
	if (strncmp(p + tn, "://", 3))
		return sock_error(ret_error, -EINVAL, "%s: malformed URI", uri);
	auth = p + tn + 3;
	an = strcspn(auth, "/?");
	path = auth + an;
	pn = strcspn(path, "?");
	query = path[pn] == '?' ? path + pn + 1 : NULL;

	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	if (tn == 4 && !strncmp(p, "unix", 4)) {
		u->transport = VRPC_TRANSPORT_UNIX;
	} else if (tn == 3 && !strncmp(p, "tcp", 3)) {
		u->transport = VRPC_TRANSPORT_TCP;
	} else if (tn == 0) {
		/* libvirt reads "qemu://host/..." as TLS. */
		u->transport = an ? (enum vrpc_transport)-1 :
				    VRPC_TRANSPORT_UNIX;
	} else {
		u->transport = (enum vrpc_transport)-1;
	}
	if ((int)u->transport < 0) {
		vrpc_uri_free(u);
		return sock_error(ret_error, -EOPNOTSUPP,
				 "%s: transport '%.*s' is not supported (only "
				 "unix and tcp; no TLS or SSH yet)",
				 uri, tn ? (int)tn : 3, tn ? p : "tls");
	}
	r = -EINVAL;
	if (u->transport == VRPC_TRANSPORT_UNIX && an)
		goto bad;
	if (u->transport == VRPC_TRANSPORT_TCP) {
		r = parse_authority(auth, an, u);
		if (r < 0)
			goto bad;
	}
	/* Which driver inside the daemon: qemu serves only its system
	 * instance (the session daemon is per user and out of scope). */
	if (dn == 4 && !strncmp(uri, "qemu", 4) &&
	    (pn != 7 || strncmp(path, "/system", 7)))
		goto bad;
	if (pn == 0 || pn > 4096 || path[0] != '/')
		goto bad;
	if (asprintf(&u->name, "%.*s://%.*s", (int)dn, uri, (int)pn, path) < 0) {
		u->name = NULL;
		r = -ENOMEM;
		goto bad;
	}
	if (query) {
		if (u->transport != VRPC_TRANSPORT_UNIX ||
		    strncmp(query, "socket=", 7) || !query[7] ||
		    strchr(query, '&'))
			goto bad;
		u->path = strdup(query + 7);
	} else if (u->transport == VRPC_TRANSPORT_UNIX) {
		static const char *const qemu_socks[] = QEMU_SYSTEM_SOCKETS;
		const char *s = LIBVIRTD_SOCKET;
		struct stat st;

		if (dn == 4 && !strncmp(uri, "qemu", 4))
			s = stat(qemu_socks[0], &st) == 0 ? qemu_socks[0] :
							    qemu_socks[1];
		u->path = strdup(s);
	}
	if (u->transport == VRPC_TRANSPORT_UNIX && !u->path) {
		r = -ENOMEM;
		goto bad;
	}
	if (u->path && strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		goto bad;
	*ret = u;
	return 0;
bad:
	vrpc_uri_free(u);
	if (r == -ENOMEM)
		return r;
	return sock_error(ret_error, r, "%s: unsupported or malformed libvirt URI",
			 uri);
}

