/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt URIs: which daemon, over which transport. See vrpc-uri.h. A new
 * transport (ssh, tls) is a new `enum vrpc_transport` value accepted here
 * and an ops table in vrpc-transport.c.
 */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "sock.h"
#include "vrpc-uri.h"


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
	free(u->direct);
	free(u->host);
	free(u->port);
	free(u->user);
	free(u->keyfile);
	free(u->netcat);
	free(u->authfile);
	free(u->pkipath);
	free(u);
	return NULL;
}

/* "HOST", "HOST:PORT", "[V6]", "[V6]:PORT", and for ssh "USER@" before. */
static int parse_authority(const char *a, size_t n, struct vrpc_uri *u)
{
	const char *host = a, *port = NULL, *at;
	size_t hn = n;

	if (u->transport == VRPC_TRANSPORT_SSH &&
	    (at = memchr(a, '@', n))) {
		if (at == a || a[0] == '-')
			return -EINVAL;
		u->user = strndup(a, at - a);
		if (!u->user)
			return -ENOMEM;
		n -= at + 1 - a;
		a = at + 1;
		host = a;
		hn = n;
	}

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
	/* A host is never an option of ssh. */
	if (!hn || host[0] == '-')
		return -EINVAL;
	if (port) {
		size_t pn = a + n - port;

		if (!pn || pn > 5 || strspn(port, "0123456789") < pn)
			return -EINVAL;
		u->port = strndup(port, pn);
	} else if (u->transport == VRPC_TRANSPORT_TCP ||
		   u->transport == VRPC_TRANSPORT_TLS) {
		u->port = strdup(u->transport == VRPC_TRANSPORT_TCP ?
					 VRPC_TCP_PORT_DEFAULT :
					 VRPC_TLS_PORT_DEFAULT);
		if (!u->port)
			return -ENOMEM;
	}
	u->host = strndup(host, hn);
	return u->host ? 0 : -ENOMEM;
}

static bool flag_value(const char *v, size_t n, bool *ret)
{
	if (n == 1 && (v[0] == '0' || v[0] == '1')) {
		*ret = v[0] == '1';
		return true;
	}
	return false;
}

/*
 * The query: key=value pairs joined by '&'. Every transport takes authfile=
 * (SASL credentials); unix takes socket=; ssh takes socket=, keyfile=,
 * no_verify=, no_tty= (ssh never gets a terminal here: accepted and
 * ignored), netcat=, proxy=; tls takes pkipath=, no_verify=. Anything else
 * is refused.
 */
static int parse_query(const char *q, struct vrpc_uri *u, char **ret_error,
		       const char *uri)
{
	bool ssh = u->transport == VRPC_TRANSPORT_SSH, ignored;
	bool tls = u->transport == VRPC_TRANSPORT_TLS;

	while (*q) {
		size_t n = strcspn(q, "&"), kn = strcspn(q, "=");
		const char *v = q + kn + 1;
		size_t vn = n > kn ? n - kn - 1 : 0;
		char **dst = NULL;

		if (kn >= n || !vn)
			goto bad;
		if (kn == 6 && !strncmp(q, "socket", 6) &&
		    u->transport != VRPC_TRANSPORT_TCP && !tls)
			dst = &u->path;
		else if (kn == 8 && !strncmp(q, "authfile", 8))
			dst = &u->authfile;
		else if (ssh && kn == 7 && !strncmp(q, "keyfile", 7))
			dst = &u->keyfile;
		else if (ssh && kn == 6 && !strncmp(q, "netcat", 6))
			dst = &u->netcat;
		else if (tls && kn == 7 && !strncmp(q, "pkipath", 7))
			dst = &u->pkipath;
		else if ((ssh || tls) && kn == 9 &&
			 !strncmp(q, "no_verify", 9)) {
			if (!flag_value(v, vn, &u->no_verify))
				goto bad;
		} else if (ssh && kn == 6 && !strncmp(q, "no_tty", 6)) {
			if (!flag_value(v, vn, &ignored))
				goto bad;
		} else if (ssh && kn == 5 && !strncmp(q, "proxy", 5)) {
			if (vn == 4 && !strncmp(v, "auto", 4))
				u->proxy = VRPC_SSH_PROXY_AUTO;
			else if (vn == 6 && !strncmp(v, "native", 6))
				u->proxy = VRPC_SSH_PROXY_NATIVE;
			else if (vn == 6 && !strncmp(v, "netcat", 6))
				u->proxy = VRPC_SSH_PROXY_NETCAT;
			else
				goto bad;
		} else
			goto bad;
		if (dst) {
			free(*dst);
			*dst = strndup(v, vn);
			if (!*dst)
				return -ENOMEM;
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return 0;
bad:
	return sock_error(ret_error, -EINVAL,
			  "%s: unsupported URI parameter '%.*s'", uri,
			  (int)strcspn(q, "&"), q);
}

/*
 * The local daemon's directory, as libvirt's client picks it: a user other
 * than root reaches their own daemon for /session and for test+TRANSPORT
 * URIs, under $XDG_RUNTIME_DIR/libvirt, else $XDG_CACHE_HOME/libvirt, else
 * ~/.cache/libvirt (glib's runtime directory); root always reaches the
 * system daemon, which serves /session too.
 */
static char *daemon_dir(bool user)
{
	const char *rt = getenv("XDG_RUNTIME_DIR"), *home = getenv("HOME");
	const char *cache = getenv("XDG_CACHE_HOME");
	struct passwd pwbuf, *pw = NULL;
	char *dir = NULL, buf[4096];
	int r;

	if (!user)
		return strdup("/var/run/libvirt");
	if (rt && *rt) {
		r = asprintf(&dir, "%s/libvirt", rt);
	} else if (cache && *cache) {
		r = asprintf(&dir, "%s/libvirt", cache);
	} else {
		/* getpwuid_r: hosts may be opened from several threads. */
		if ((!home || !*home) &&
		    getpwuid_r(geteuid(), &pwbuf, buf, sizeof(buf), &pw) == 0 &&
		    pw)
			home = pw->pw_dir;
		r = asprintf(&dir, "%s/.cache/libvirt", home ? home : "");
	}
	return r < 0 ? NULL : dir;
}

/*
 * The default sockets of a unix URI: libvirtd's in u->path and, for qemu,
 * virtqemud's in u->direct (vrpc-transport.c prefers it at each connect
 * when it exists, as libvirt's client does at each open).
 */
static int default_sockets(struct vrpc_uri *u, bool qemu, bool test)
{
	char *dir = daemon_dir((u->session || test) && geteuid() != 0);
	int r = 0;

	if (!dir)
		return -ENOMEM;
	if (asprintf(&u->path, "%s/libvirt-sock", dir) < 0) {
		u->path = NULL;
		r = -ENOMEM;
	} else if (qemu && asprintf(&u->direct, "%s/virtqemud-sock", dir) < 0) {
		u->direct = NULL;
		r = -ENOMEM;
	}
	free(dir);
	return r;
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
	} else if (tn == 3 && !strncmp(p, "ssh", 3)) {
		u->transport = VRPC_TRANSPORT_SSH;
	} else if (tn == 3 && !strncmp(p, "tls", 3)) {
		u->transport = VRPC_TRANSPORT_TLS;
	} else if (tn == 0) {
		/* libvirt reads "qemu://host/..." as TLS. */
		u->transport = an ? VRPC_TRANSPORT_TLS : VRPC_TRANSPORT_UNIX;
	} else {
		u->transport = (enum vrpc_transport)-1;
	}
	if ((int)u->transport < 0) {
		vrpc_uri_free(u);
		return sock_error(ret_error, -EOPNOTSUPP,
				 "%s: transport '%.*s' is not supported (only "
				 "unix, tcp, ssh and tls)", uri, (int)tn, p);
	}
	r = -EINVAL;
	if (u->transport == VRPC_TRANSPORT_UNIX && an)
		goto bad;
	if (u->transport != VRPC_TRANSPORT_UNIX) {
		r = parse_authority(auth, an, u);
		if (r < 0)
			goto bad;
	}
	/* Which driver inside the daemon: qemu's system or session one. */
	u->session = pn == 8 && !strncmp(path, "/session", 8);
	if (dn == 4 && !strncmp(uri, "qemu", 4) && !u->session &&
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
		r = parse_query(query, u, ret_error, uri);
		if (r < 0) {
			vrpc_uri_free(u);
			return r;
		}
	}
	if (u->transport == VRPC_TRANSPORT_UNIX && !u->path) {
		r = default_sockets(u, dn == 4 && !strncmp(uri, "qemu", 4),
				    dn == 4 && !strncmp(uri, "test", 4) &&
					    tn > 0);
		if (r < 0)
			goto bad;
	}
	if (u->transport == VRPC_TRANSPORT_UNIX &&
	    strlen(u->direct ? u->direct : u->path) >=
		    sizeof(((struct sockaddr_un *)0)->sun_path)) {
		/* Say which: a default may come from $XDG_RUNTIME_DIR. */
		r = sock_error(ret_error, -EINVAL, "%s: the socket path %s "
			       "is longer than a UNIX socket's %zu bytes", uri,
			       u->direct ? u->direct : u->path,
			       sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		vrpc_uri_free(u);
		return r;
	}
	*ret = u;
	return 0;
bad:
	vrpc_uri_free(u);
	if (r == -ENOMEM)
		return r;
	/* Whatever r a step before left: a refusal is never 0. */
	return sock_error(ret_error, -EINVAL,
			  "%s: unsupported or malformed libvirt URI", uri);
}

