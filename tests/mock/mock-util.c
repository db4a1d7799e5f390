/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mock-util.h"

static void die(const char *what)
{
	fprintf(stderr, "mock: %s: %s\n", what, strerror(errno));
	abort();
}

void *mock_xalloc(size_t n)
{
	void *p = calloc(1, n ? n : 1);

	if (!p)
		die("calloc");
	return p;
}

char *mock_xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		die("strdup");
	return p;
}

int mock_listen_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[sizeof(sa.sun_path)];
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		die("socket path too long");
	strcpy(sa.sun_path, tmp);
	unlink(tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 16) < 0 || rename(tmp, path) < 0)
		die(path);
	return fd;
}

int mock_listen_tcp(unsigned *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) < 0)
		die("tcp listen");
	*port = ntohs(sa.sin_port);
	return fd;
}

int mock_accept(int lfd, int ms)
{
	if (!mock_readable(lfd, ms))
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

bool mock_send_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t r = send(fd, p, n, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		n -= (size_t)r;
	}
	return true;
}

bool mock_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
}

int64_t mock_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void mock_sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

char *mock_unescape(const char *s, size_t *ret_len)
{
	char *out = mock_xalloc(strlen(s) + 1), *o = out;

	while (*s) {
		if (*s != '\\' || !s[1]) {
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s) {
		case 'r': *o++ = '\r'; s++; break;
		case 'n': *o++ = '\n'; s++; break;
		case 't': *o++ = '\t'; s++; break;
		case 'x': {
			char hex[3] = { s[1], s[1] ? s[2] : 0, 0 };

			*o++ = (char)strtoul(hex, NULL, 16);
			s += 1 + strlen(hex);
			break;
		}
		default: *o++ = *s++; break;
		}
	}
	*o = 0;
	*ret_len = (size_t)(o - out);
	return out;
}

char *mock_subst_id(const char *s, size_t len, const char *id,
		    size_t *ret_len)
{
	size_t idlen = strlen(id), n = 0;
	char *out = mock_xalloc(len * (idlen + 1) + 1);

	for (size_t i = 0; i < len;) {
		if (i + 3 <= len && !memcmp(s + i, "$ID", 3)) {
			memcpy(out + n, id, idlen);
			n += idlen;
			i += 3;
		} else {
			out[n++] = s[i++];
		}
	}
	*ret_len = n;
	return out;
}

char *mock_read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		return NULL;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			cap = (cap + 4096) * 2;
			buf = realloc(buf, cap);
			if (!buf)
				die("realloc");
		}
		size_t r = fread(buf + n, 1, cap - n - 1, f);

		n += r;
		if (r == 0)
			break;
	}
	fclose(f);
	buf[n] = 0;
	*ret_len = n;
	return buf;
}
