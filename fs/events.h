/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * events.c: the events files. Each open events file is a stream of JSON
 * lines; the table (tree.c) hands events over through its listener
 * (events_publish, events_end_domain). Calls: dom, source.
 */

#include "dom.h"

struct stream;
/* d NULL: every domain's events of host (-1: of every host). */
struct stream *stream_open(struct dom *d, int host);
void stream_release(struct stream *s);
/* With nothing queued: end-of-file if eof_when_empty, else EAGAIN with
 * O_NONBLOCK in flags, else the read waits for the next line. */
void stream_read(fuse_req_t req, struct stream *s, size_t size, int flags,
		 bool eof_when_empty);
unsigned stream_poll(struct stream *s, struct fuse_pollhandle *ph);
/* When the last event was published (microseconds since the epoch), or 0;
 * the bytes of all events lines made so far. */
int64_t events_last_us(void);
uint64_t events_published_bytes(void);
/* Hands an event of src (about d, if known) to every stream that wants it. */
void events_publish(struct source *src, struct dom *d, const char *domain_name,
		    const struct hv_event *ev);
/* Ends the events files of the domain in slot (it left the tree): their
 * readers get what is queued, then end of file. */
void events_end_domain(uint64_t slot);
