/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: the console's byte ring, fs/ring.c. The input is a ring size
 * (1..64 bytes) and a list of three-byte operations: appends of generated
 * bytes (whose values tell their stream position, so that a wrong copy
 * shows), and reads by two readers, following on or at any offset (up to
 * OFF_MAX). Every read must begin inside what the ring holds, at its
 * offset + shift when that is inside, follow on from the reader's last read
 * when it reads the next offset, and give the stream's bytes.
 */
#include <stdint.h>
#include <string.h>

#include "ring.h"
#include "fuzz.h"

#define SIZE_MAX_ 64
#define APPEND_MAX (4 * SIZE_MAX_)

static char byte_at(uint64_t pos)
{
	return (char)((pos * 2654435761u) >> 13);
}

struct reader {
	int64_t shift;
	int64_t next_off; /* the offset after its last read */
	uint64_t next_pos; /* the position after its last read */
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char buf[SIZE_MAX_], gen[APPEND_MAX], out[SIZE_MAX_ + 1];
	struct reader rd[2] = { { 0 } };
	struct ring r;

	if (size < 1)
		return 0;
	memset(&r, 0, sizeof(r));
	r.buf = buf;
	r.size = 1 + data[0] % SIZE_MAX_;
	for (size_t i = 1; i + 3 <= size; i += 3) {
		uint8_t kind = data[i], a = data[i + 1], b = data[i + 2];
		struct reader *x = &rd[(kind >> 2) & 1];
		int64_t off, want;
		uint64_t pos;
		size_t n, max;

		if (kind % 3 == 0) {
			size_t len = (a | (size_t)b << 8) % (APPEND_MAX + 1);

			for (size_t k = 0; k < len; k++)
				gen[k] = byte_at(r.total + k);
			ring_append(&r, gen, len);
			ASSERT(ring_start(&r) + r.size >= r.total);
			continue;
		}
		if (kind % 3 == 1)
			off = x->next_off;
		else if (a == 255)
			off = INT64_MAX - b;
		else
			off = a | (int64_t)b << 8;
		pos = ring_position(&r, &x->shift, off);
		ASSERT(pos >= ring_start(&r) && pos <= r.total);
		if (!__builtin_add_overflow(off, x->shift, &want))
			ASSERT((uint64_t)want == pos); /* the shift follows */
		if (kind % 3 == 1 && x->next_pos >= ring_start(&r))
			ASSERT(pos == x->next_pos); /* follows on */
		else if (kind % 3 == 1)
			ASSERT(pos == ring_start(&r)); /* the oldest kept */
		max = 1 + a % (SIZE_MAX_ + 1);
		if ((uint64_t)(INT64_MAX - off) < max)
			max = (size_t)(INT64_MAX - off); /* as the kernel's */
		n = ring_count(&r, pos, max);
		ASSERT(n <= max && n == (r.total - pos < max ? r.total - pos : max));
		ring_copy(&r, pos, out, n);
		for (size_t k = 0; k < n; k++)
			ASSERT(out[k] == byte_at(pos + k));
		x->next_off = off + (int64_t)n;
		x->next_pos = pos + n;
	}
	return 0;
}
