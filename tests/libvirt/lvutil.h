/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers of the libvirt tests that run virsh (lvutil.c). */

/*
 * Runs a shell command (printf-formatted); returns its exit status and, if
 * out is not NULL, its stdout with trailing white space removed (malloc'd).
 * Fails the program (REQUIRE) when the shell cannot be started.
 */
int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
