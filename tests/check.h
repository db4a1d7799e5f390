/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The checks of the C test programs, reported as TAP (meson reads it with
 * `protocol: 'tap'`): every CHECK is one test point, "ok N - FUNCTION:
 * CONDITION" or "not ok N - ...", so a failure names its case and its line.
 * A failed CHECK is counted and the program goes on; main() ends with
 * `return check_finish(NAME);`, which prints the plan. CHECK may be used
 * from any thread. A failed REQUIRE ends the program ("Bail out!").
 *
 * The state is static: one program is one file of checks (helpers such as
 * tests/qmp/testutil.c use REQUIRE only).
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
static int check_count;
static int check_failures;

static inline void check_report(int ok, const char *func, const char *file,
				int line, const char *cond)
{
	pthread_mutex_lock(&check_lock);
	check_count++;
	if (!ok) {
		check_failures++;
		fprintf(stderr, "%s:%d: check failed: %s\n", file, line, cond);
	}
	printf("%sok %d - %s: %s\n", ok ? "" : "not ", check_count, func,
	       cond);
	if (!ok)
		printf("# at %s:%d\n", file, line);
	fflush(stdout);
	pthread_mutex_unlock(&check_lock);
}

#define CHECK(cond)                                                          \
	check_report(!!(cond), __func__, __FILE__, __LINE__, #cond)

/* A check after which going on makes no sense. */
#define REQUIRE(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: required: %s\n", __FILE__,   \
				__LINE__, #cond);                            \
			printf("Bail out! %s:%d: required: %s\n", __FILE__,  \
			       __LINE__, #cond);                             \
			fflush(stdout);                                      \
			exit(1);                                             \
		}                                                            \
	} while (0)

/* Prints the plan; the exit status: 0, or 1 after a failed check. */
static inline int check_finish(const char *name)
{
	pthread_mutex_lock(&check_lock);
	printf("1..%d\n", check_count);
	if (check_failures)
		fprintf(stderr, "%s: %d of %d check(s) failed\n", name,
			check_failures, check_count);
	else
		printf("# %s: all %d checks passed\n", name, check_count);
	fflush(stdout);
	pthread_mutex_unlock(&check_lock);
	return check_failures ? 1 : 0;
}
