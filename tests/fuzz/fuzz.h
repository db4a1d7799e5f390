/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What every fuzz target shares: its entry point, and ASSERT, which aborts
 * so that libFuzzer (or replay.c under meson test) reports the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ASSERT(cond)                                                       \
	do {                                                               \
		if (!(cond)) {                                             \
			fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, \
				#cond);                                    \
			abort();                                           \
		}                                                          \
	} while (0)
