/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the guest agent's resynchronisation reader, qga_sync_feed()
 * (lib/qga.h), for guest-sync-delimited with id 42.
 *
 * Input: one byte C, then the bytes an agent would send. They are fed to
 * one reader whole and to another in chunks of C + 1 bytes: both must find
 * the sync reply at the same byte (or neither), fail alike, and never
 * consume past it. When found, it must be right: the last 0xFF before it is
 * followed, after whole lines only, by a line {"return": 42}.
 */
#include <errno.h>
#include <string.h>

#include "qga.h"
#include "fuzz.h"

#define ID 42

/* Feeds buf in chunks; the reader's result and the bytes consumed. */
static int feed(const char *buf, size_t len, size_t chunk, size_t *used)
{
	struct qga_sync s;
	size_t off = 0;
	int r = 0;

	qga_sync_init(&s, ID);
	while (off < len && r == 0) {
		size_t n = len - off < chunk ? len - off : chunk, c = 0;

		r = qga_sync_feed(&s, buf + off, n, &c);
		ASSERT(c <= n);
		ASSERT(r == 1 || r < 0 || c == n); /* 0: all consumed */
		off += c;
	}
	qga_sync_release(&s);
	*used = off;
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data + 1;
	size_t len, whole_used, part_used;
	int whole, part;

	if (size < 1)
		return 0;
	len = size - 1;
	whole = feed(buf, len, len ? len : 1, &whole_used);
	part = feed(buf, len, (size_t)data[0] + 1, &part_used);
	ASSERT(whole == part);
	ASSERT(whole == 0 || whole == 1 || whole == -EFBIG ||
	       whole == -ENOMEM);
	if (whole == 1) {
		const char *ff = NULL, *line;

		ASSERT(whole_used == part_used);
		/* The reply line ends at the last byte consumed. */
		ASSERT(whole_used > 0 && buf[whole_used - 1] == '\n');
		for (size_t i = 0; i < whole_used; i++)
			if ((unsigned char)buf[i] == 0xff)
				ff = buf + i;
		ASSERT(ff);
		line = memrchr(buf, '\n', whole_used - 1);
		line = line && line > ff ? line + 1 : ff + 1;
		ASSERT(memmem(line, (size_t)(buf + whole_used - line), "42",
			      2));
	}
	return 0;
}
