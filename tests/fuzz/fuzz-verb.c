/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the control-file verb parser, hv_verb_parse() (include/hvfs/hv.h).
 * Whatever it accepts must be exactly a verb's name, with at most one "\n"
 * or "\r\n" after it; whatever it refuses is -EINVAL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	enum hv_verb v = HV_VERB_COUNT;
	size_t len = size;
	const char *name;
	int r;

	r = hv_verb_parse(buf, size, &v);
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (r < 0) {
		ASSERT(r == -EINVAL);
		/* No verb's name, exactly, was refused. */
		for (unsigned i = 0; i < HV_VERB_COUNT; i++)
			ASSERT(strlen(hv_verb_name(i)) != len ||
			       memcmp(hv_verb_name(i), buf, len) != 0);
		return 0;
	}
	ASSERT(r == 0 && (unsigned)v < HV_VERB_COUNT);
	name = hv_verb_name(v);
	ASSERT(name && strlen(name) == len && memcmp(name, buf, len) == 0);
	return 0;
}
