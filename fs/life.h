/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * life.c: the files of a domain's life (issue 16): a new definition
 * written to `xml`, the `undefine` verb of `control`, `autostart` and
 * `vcpus`. Functions in the shape of files.h's table. Calls: dom, tree,
 * lib/.
 */

#include "dom.h"

/* xml: a whole new definition, run at close (see files.h's `whole`). */
int life_write_xml(struct dom *d, const char *buf, size_t len,
		   char **ret_reply, size_t *ret_reply_len, char **ret_error);

/* Whether buf (one line, its newline optional) is the verb `undefine`. */
bool life_is_undefine(const char *buf, size_t len);
/* Undefines d, and waits (up to -o timeout) for its listing: a stopped
 * domain has left the tree on return. */
int life_undefine(struct dom *d, char **ret_error);

/* autostart: "yes\n" or "no\n"; written yes/no/1/0/on/off. */
int life_read_autostart(struct dom *d, char **ret, size_t *ret_len,
			char **ret_error);
int life_write_autostart(struct dom *d, const char *buf, size_t len,
			 char **ret_reply, size_t *ret_reply_len,
			 char **ret_error);

/* vcpus: "CURRENT MAXIMUM\n"; a number written sets the live count. */
int life_read_vcpus(struct dom *d, char **ret, size_t *ret_len,
		    char **ret_error);
int life_write_vcpus(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error);
