/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the mock peers share: sockets, time, script text. Aborts on what only
 * a broken test can cause (no memory, no socket). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A listening UNIX socket at path: bound as path.tmp and renamed, so that it
 * appears already listening. */
int mock_listen_unix(const char *path);
/* A listening TCP socket on 127.0.0.1, a port the kernel picks (*port). */
int mock_listen_tcp(unsigned *port);
/* Waits up to ms for a connection; -1 if none came. */
int mock_accept(int lfd, int ms);
/* Sends all of buf; false once the client is gone. */
bool mock_send_all(int fd, const void *buf, size_t n);
/* Waits up to ms for fd to be readable; false on timeout. */
bool mock_readable(int fd, int ms);

int64_t mock_now_ms(void);
void mock_sleep_ms(int ms);

/* Decodes \r \n \t \\ \xHH in s into a malloc'd buffer; *ret_len its
 * length (a NUL follows). */
char *mock_unescape(const char *s, size_t *ret_len);
/* s with every "$ID" replaced by id (malloc'd). */
char *mock_subst_id(const char *s, size_t len, const char *id,
		    size_t *ret_len);
/* The whole file (malloc'd, NUL-terminated), NULL on error. */
char *mock_read_file(const char *path, size_t *ret_len);
void *mock_xalloc(size_t n);
char *mock_xstrdup(const char *s);
