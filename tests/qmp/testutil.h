/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <pthread.h>
#include <stdint.h>

/*
 * Helpers of the QMP tests: checks, a temp dir per test program, and QEMU
 * processes that are killed on every exit path (exit, a failed check, a
 * signal from the test runner, and PR_SET_PDEATHSIG if we are killed).
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include "../check.h"

static inline bool test_streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

#define STREQ(a, b) test_streq((a), (b))

/* Creates the temp dir and installs the cleanup; returns the dir. */
const char *test_init(const char *name);

int64_t test_now_ms(void);
void test_sleep_ms(int ms);

/* Exits 77 when qemu-system-x86_64 is not installed. */
void test_require_qemu(void);

/* The version `qemu-system-x86_64 --version` reports ("QEMU emulator version
 * MAJOR.MINOR.MICRO ..."): what the QEMUs the tests start must say over QMP,
 * whatever QEMU this host has. False if it cannot be read. */
bool qemu_binary_version(int *major, int *minor, int *micro);

/*
 * Starts `qemu-system-x86_64 -machine none` with one QMP monitor per path
 * (up to 4; NULL-terminated) and waits until the first one accepts.
 * Returns the pid.
 */
pid_t qemu_start(const char *const *qmp_paths);

/* Starts `qemu-system-x86_64 ARGS... -qmp unix:QMP_PATH,...` (args
 * NULL-terminated) and waits until the monitor accepts. Returns the pid. */
pid_t qemu_start_args(const char *qmp_path, const char *const *args);

/* Kills (SIGKILL) and reaps; accepts 0. */
void qemu_kill(pid_t pid);

/* Waits up to ms for the process to exit by itself; true if it did. */
bool qemu_wait_exit(pid_t pid, int ms);

/* Waits until path accepts a connection (or ms pass). */
bool wait_listening(const char *path, int ms);

/* Records the events a QMP handler receives, for checks. */
struct seen {
	pthread_mutex_t lock;
	char names[1024]; /* event names, each followed by a space */
	int lost;         /* connection-lost calls (event == NULL) */
};

/* A qmp_event_fn that records into the struct seen given as userdata. */
void seen_on_event(void *userdata, const char *event, const char *data,
		   int64_t seconds, int64_t micros);
int seen_lost(struct seen *s);
