/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * console.c: a domain's `console` file, over hv.h's hv_console_* calls.
 * hvfs attaches to a domain's console at the first open of its file and
 * keeps it (docs/design.md "Serial console"): the guest's output goes into a
 * ring of the last CONSOLE_RING bytes, which every open file reads by its
 * offset, as a log that grows; a read at the end waits for more output (or
 * ends, for a file read as a file). Writes go to the guest's serial input.
 * One worker thread closes ended consoles and attaches again when the domain
 * runs. The table (tree.c) tells it about states and domains that leave,
 * through main.c's listener. Calls: dom, lib/.
 */

#include "dom.h"

#define CONSOLE_RING (64u << 10)
/* How often a console that could not attach is tried again, at most. */
#define CONSOLE_RETRY_MS 2000
/* Busy answers in a row after which hvfs lets another client have it (the
 * first come while libvirtd still frees hvfs's own last session). */
#define CONSOLE_BUSY_MAX 3

struct console_reader;

/*
 * Opens d's console file: attaches now if hvfs does not hold the console.
 * -EBUSY when another client holds it (the peer's message in *ret_error),
 * -EOPNOTSUPP when the driver has no consoles; a domain that is not running
 * is no failure (the file waits for it). With ret NULL (a write-only open)
 * no reader is made. Without attach (a tree walker's O_NOFOLLOW open: cp -r,
 * grep -r must not take consoles) nothing is attached: the reader reads
 * what hvfs holds already.
 */
int console_open(struct dom *d, bool attach, struct console_reader **ret,
		 char **ret_error);
void console_release(struct console_reader *r);
/* A read at file offset off: output from there (the oldest kept when off
 * is older); at the end, end-of-file if as_file, EAGAIN with O_NONBLOCK in
 * flags, else the read waits for output. */
void console_read(fuse_req_t req, struct console_reader *r, size_t size,
		  off_t off, int flags, bool as_file);
unsigned console_poll(struct console_reader *r, struct fuse_pollhandle *ph);
/* The bytes d's console has output since hvfs attached (a follower's size). */
uint64_t console_size(struct dom *d);
/* The file table's write: sends buf to the guest (attaching if needed). */
int console_write(struct dom *d, const char *buf, size_t len,
		  char **ret_reply, size_t *ret_reply_len, char **ret_error);
/* Listener hooks: an event about d (a start makes it attach at once); the
 * domain in slot left the tree (its readers get end-of-file). */
void console_event(struct dom *d, const struct hv_event *ev);
void console_end_domain(uint64_t slot);
/* Ends the worker and closes every console (before the sources close,
 * after the last reader was released). */
void console_stop(void);
