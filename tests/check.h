/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The checks of the C test programs. A failed CHECK is reported and counted,
 * and the program goes on; main() ends with `return check_finish(NAME);`.
 * Each program is one file of checks, so the count is static.
 */

#include <stdio.h>
#include <stdlib.h>

static int check_failures;

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                            \
			check_failures++;                                    \
		}                                                            \
	} while (0)

/* A check after which going on makes no sense. */
#define REQUIRE(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: required: %s\n", __FILE__,   \
				__LINE__, #cond);                            \
			exit(1);                                             \
		}                                                            \
	} while (0)

/* The exit status: 0, or 1 after a failed check. */
static inline int check_finish(const char *name)
{
	if (check_failures) {
		fprintf(stderr, "%s: %d check(s) failed\n", name,
			check_failures);
		return 1;
	}
	printf("%s: all checks passed\n", name);
	return 0;
}
