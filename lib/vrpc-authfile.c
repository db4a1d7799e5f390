/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's auth.conf: the key-file parser and the lookup libvirt's client
 * does (auth-libvirt-HOST, then auth-libvirt-default, then the credentials
 * group it names). See vrpc-authfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"
#include "vrpc-authfile.h"

#define AUTHFILE_MAX (1u << 20)
#define NOT_KEY_FILE \
	"not a key file (a line is neither [group], key=value nor # comment)"

char *vrpc_authfile_path(const char *path)
{
	const char *env = getenv("LIBVIRT_AUTH_FILE");
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *p = NULL;

	if (path && *path)
		return strdup(path);
	if (env && *env)
		return strdup(env);
	if (xdg && *xdg) {
		if (asprintf(&p, "%s/libvirt/auth.conf", xdg) < 0)
			return NULL;
	} else if (home && *home) {
		if (asprintf(&p, "%s/.config/libvirt/auth.conf", home) < 0)
			return NULL;
	}
	if (p && access(p, F_OK) == 0)
		return p;
	free(p);
	if (access("/etc/libvirt/auth.conf", F_OK) == 0)
		return strdup("/etc/libvirt/auth.conf");
	return NULL;
}

int vrpc_authfile_read(const char *path, char **ret, char **ret_error)
{
	size_t len = 0;
	char *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = -errno;

		return sock_error(ret_error, e, "cannot open %s: %s", path,
				  strerror(-e));
	}
	buf = malloc(AUTHFILE_MAX + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, AUTHFILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = -errno;

			close(fd);
			free(buf);
			return sock_error(ret_error, e, "cannot read %s: %s",
					  path, strerror(-e));
		}
		if (n == 0)
			break;
		len += n;
		if (len > AUTHFILE_MAX) {
			close(fd);
			free(buf);
			return sock_error(ret_error, -EFBIG,
					  "%s: larger than 1 MiB", path);
		}
	}
	close(fd);
	buf[len] = '\0';
	*ret = buf;
	return 0;
}

/* Strips spaces at both ends of [*s, *s + *n). */
static void trim(const char **s, size_t *n)
{
	while (*n && strchr(" \t\r", **s)) {
		(*s)++;
		(*n)--;
	}
	while (*n && strchr(" \t\r", (*s)[*n - 1]))
		(*n)--;
}

/*
 * The value of key in [group] of text: 1 and *ret (malloc'd), 0 when the
 * group lacks the key, -ENOENT when there is no such group, -EINVAL for a
 * line that is neither a group, a key=value nor a comment.
 */
static int get(const char *text, const char *group, const char *key,
	       char **ret)
{
	bool in = false, seen = false;
	const char *line = text;

	while (*line) {
		size_t n = strcspn(line, "\n");
		const char *next = line + n + (line[n] == '\n');
		const char *eq;

		trim(&line, &n);
		if (n == 0 || line[0] == '#' || line[0] == ';') {
			/* blank or comment */
		} else if (line[0] == '[') {
			if (line[n - 1] != ']')
				return -EINVAL;
			in = n - 2 == strlen(group) &&
			     !strncmp(line + 1, group, n - 2);
			seen |= in;
		} else if (!(eq = memchr(line, '=', n))) {
			return -EINVAL;
		} else if (in) {
			const char *k = line, *v = eq + 1;
			size_t kn = eq - line, vn = line + n - v;

			trim(&k, &kn);
			trim(&v, &vn);
			if (kn == strlen(key) && !strncmp(k, key, kn)) {
				*ret = strndup(v, vn);
				return *ret ? 1 : -ENOMEM;
			}
		}
		line = next;
	}
	return seen ? 0 : -ENOENT;
}

int vrpc_authfile_lookup(const char *text, const char *host, const char *key,
			 char **ret, char **ret_error)
{
	char *group = NULL, *cred = NULL, *value = NULL;
	int r;

	*ret = NULL;
	if (asprintf(&group, "auth-libvirt-%s", host) < 0)
		return -ENOMEM;
	r = get(text, group, "credentials", &cred);
	if (r == -ENOENT) {
		free(group);
		group = strdup("auth-libvirt-default");
		if (!group)
			return -ENOMEM;
		r = get(text, group, "credentials", &cred);
	}
	if (r == -ENOENT || r == 0) {
		/* No group for this host: no credentials, as in libvirt;
		 * a group without credentials= is a broken file. */
		if (r == 0)
			r = sock_error(ret_error, -EINVAL, "missing "
				       "'credentials' in group [%s]", group);
		else
			r = 0;
		free(group);
		return r;
	}
	if (r == -EINVAL) {
		free(group);
		return sock_error(ret_error, r, NOT_KEY_FILE);
	}
	free(group);
	if (r < 0)
		return r;
	if (asprintf(&group, "credentials-%s", cred) < 0) {
		free(cred);
		return -ENOMEM;
	}
	r = get(text, group, key, &value);
	if (r == -ENOENT)
		r = sock_error(ret_error, -EINVAL, "missing group [%s] named "
			       "by [auth-libvirt-...] credentials=%s", group,
			       cred);
	else if (r == -EINVAL)
		r = sock_error(ret_error, r, NOT_KEY_FILE);
	free(group);
	free(cred);
	if (r < 0)
		return r;
	*ret = value;
	return 0;
}
