/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The console's byte ring (see ring.h). */
#include <string.h>

#include "ring.h"

uint64_t ring_start(const struct ring *r)
{
	return r->total > r->size ? r->total - r->size : 0;
}

uint64_t ring_position(const struct ring *r, int64_t *shift, off_t off)
{
	int64_t total = (int64_t)r->total, start = (int64_t)ring_start(r);
	int64_t pos;

	/* Past the end (an offset near OFF_MAX overflows): the end. */
	if (__builtin_add_overflow((int64_t)off, *shift, &pos) || pos > total) {
		*shift = total - (int64_t)off;
		return (uint64_t)total;
	}
	if (pos < start) {
		*shift = start - (int64_t)off;
		return (uint64_t)start;
	}
	return (uint64_t)pos;
}

void ring_append(struct ring *r, const char *data, size_t len)
{
	if (len > r->size) {
		r->total += len - r->size;
		data += len - r->size;
		len = r->size;
	}
	for (size_t done = 0; done < len;) {
		size_t at = r->total % r->size;
		size_t n = len - done < r->size - at ? len - done : r->size - at;

		memcpy(r->buf + at, data + done, n);
		done += n;
		r->total += n;
	}
}

size_t ring_count(const struct ring *r, uint64_t pos, size_t max)
{
	return r->total - pos < max ? r->total - pos : max;
}

void ring_copy(const struct ring *r, uint64_t pos, char *out, size_t n)
{
	size_t at = pos % r->size, first = n;

	if (first > r->size - at)
		first = r->size - at;
	memcpy(out, r->buf + at, first);
	memcpy(out + first, r->buf, n - first);
}
