/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

#include <stdbool.h>

/* names.c: names from peers as path components. Calls nothing of fs/. */

/*
 * Escapes a name from a peer into one path component (see fs-layout.md):
 * malloc'd, or NULL on ENOMEM.
 */
char *name_escape(const char *name);

/* The name name_escape() made name from (malloc'd), or NULL on ENOMEM.
 * "%00" gives "". */
char *name_unescape(const char *name);

/* Whether name is a path component as it is (name_escape() keeps it). */
bool name_is_plain(const char *name);
