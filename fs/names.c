/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Names from peers as path components (docs/fs-layout.md). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

char *name_escape(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t len = strlen(name);
	char *out = malloc(3 * len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		size_t seq = 0;

		/* Length of a valid UTF-8 sequence starting here, or 0. */
		if (c >= 0xc2 && c <= 0xf4) {
			size_t need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
			unsigned lo = 0x80, hi = 0xbf;

			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
			else if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
			seq = need;
			for (size_t k = 1; k < need; k++) {
				unsigned b = i + k < len ? p[i + k] : 0;

				if (b < (k == 1 ? lo : 0x80) ||
				    b > (k == 1 ? hi : 0xbf)) {
					seq = 0;
					break;
				}
			}
		}
		if (seq) {
			memcpy(o, p + i, seq);
			o += seq;
			i += seq;
			continue;
		}
		if (c < 0x20 || c == 0x7f || c >= 0x80 || c == '/' ||
		    c == '%' || (i == 0 && c == '.'))
			o += sprintf(o, "%%%02X", c);
		else
			*o++ = (char)c;
		i++;
	}
	*o = '\0';
	if (out[0] == '\0') {
		/* An empty name cannot be a directory entry. */
		free(out);
		out = strdup("%00");
	}
	return out;
}

bool name_is_plain(const char *name)
{
	char *escaped = name_escape(name);
	bool plain = escaped && strcmp(escaped, name) == 0;

	free(escaped);
	return plain;
}

char *name_unescape(const char *name)
{
	size_t len = strlen(name);
	char *out = malloc(len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		unsigned c;

		if (name[i] == '%' && i + 2 < len &&
		    sscanf(name + i + 1, "%2x", &c) == 1 &&
		    strspn(name + i + 1, "0123456789ABCDEFabcdef") >= 2) {
			*o++ = (char)c;
			i += 2;
		} else {
			*o++ = name[i];
		}
	}
	*o = '\0';
	return out;
}
