/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parked reads: see park.h. */
#include <errno.h>
#include <stdlib.h>

#include "park.h"

bool park_read(struct park *pk, pthread_mutex_t *lock, fuse_req_t req,
	       size_t size, off_t off, fuse_interrupt_func_t intr,
	       void *intr_data)
{
	struct parked *p = calloc(1, sizeof(*p));

	if (!p) {
		fuse_reply_err(req, ENOMEM);
		return false;
	}
	p->req = req;
	p->size = size;
	p->off = off;
	/* Registered before parking: if the reader is already interrupted,
	 * the callback runs now, finds nothing parked, and we answer below. */
	fuse_req_interrupt_func(req, intr, intr_data);
	pthread_mutex_lock(lock);
	if (fuse_req_interrupted(req)) {
		pthread_mutex_unlock(lock);
		free(p);
		fuse_reply_err(req, EINTR);
		return false;
	}
	p->next = pk->head;
	pk->head = p;
	return true;
}

struct parked *park_take_locked(struct park *pk)
{
	struct parked *p = pk->head;

	if (p)
		pk->head = p->next;
	return p;
}

struct parked *park_interrupt_locked(struct park *pk, fuse_req_t req)
{
	for (struct parked **pp = &pk->head; *pp; pp = &(*pp)->next) {
		if ((*pp)->req == req) {
			struct parked *found = *pp;

			*pp = found->next;
			return found;
		}
	}
	return NULL;
}

void park_interrupted(struct parked *p)
{
	if (!p)
		return;
	fuse_reply_err(p->req, EINTR);
	free(p);
}

void park_cancel_locked(struct park *pk)
{
	struct parked *p;

	while ((p = park_take_locked(pk)))
		park_interrupted(p);
}

void park_poll_locked(struct park *pk, struct fuse_pollhandle **ph)
{
	if (!*ph)
		return;
	if (pk->ph)
		fuse_pollhandle_destroy(pk->ph);
	pk->ph = *ph;
	*ph = NULL;
}

void park_notify_locked(struct park *pk)
{
	if (pk->ph) {
		fuse_lowlevel_notify_poll(pk->ph);
		fuse_pollhandle_destroy(pk->ph);
		pk->ph = NULL;
	}
}

void park_free(struct park *pk)
{
	if (pk->ph)
		fuse_pollhandle_destroy(pk->ph);
	pk->ph = NULL;
}
