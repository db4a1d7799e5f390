/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ring.c: the byte ring behind a console file (console.c), as pure
 * arithmetic: no locks, no I/O, no allocation (tests/fuzz/fuzz-ring.c runs
 * it with small rings). A ring of `size` bytes keeps the last `size` bytes
 * of a stream; positions count the stream's bytes since the start. A
 * reader reads by file offset; its `shift` maps offsets to positions, and
 * moves so that a read past the end or before the oldest kept byte follows
 * on from where it actually read.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ring {
	char *buf;      /* size bytes, the caller's */
	size_t size;    /* > 0 */
	uint64_t total; /* bytes appended since the start */
};

/* The oldest position the ring still holds. */
uint64_t ring_start(const struct ring *r);
/* Where a read at file offset off begins for the reader with *shift
 * (position = off + *shift; off >= 0): clamped into [ring_start(),
 * total], *shift moved by as much. An offset whose position overflows is
 * past the end. */
uint64_t ring_position(const struct ring *r, int64_t *shift, off_t off);
/* Appends len bytes; only the last size bytes stay. */
void ring_append(struct ring *r, const char *data, size_t len);
/* The number of bytes a read of at most max from pos (ring_position()'s)
 * gives. */
size_t ring_count(const struct ring *r, uint64_t pos, size_t max);
/* Copies n (ring_count()'s) bytes from pos into out. */
void ring_copy(const struct ring *r, uint64_t pos, char *out, size_t n);
