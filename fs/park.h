/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * park.c: reads that wait without holding a FUSE worker (events, console).
 * A read with nothing to give is parked: its request is kept in the open
 * file's struct park and answered later by its owner, when data or an end
 * comes; an interrupt answers it EINTR. The park also keeps the file's one
 * poll handle. A park has no lock of its own: the owner's lock guards it
 * (every function named _locked wants it held). Calls: libfuse only.
 */

#include "hvfs.h"

struct parked {
	struct parked *next;
	fuse_req_t req;
	size_t size;
	off_t off;
};

struct park {
	struct parked *head;         /* the newest first */
	struct fuse_pollhandle *ph;  /* the last poll()'s, to notify */
};

/*
 * Parks req (a read of size bytes at off), with intr called on its
 * interrupt (intr_data: the owner's open file; intr must find it under lock
 * and call park_interrupt_locked()). Returns true with lock held: the caller
 * serves what came while it was free, then unlocks. Returns false, lock not
 * held, when req was answered here (ENOMEM, or EINTR: already interrupted).
 */
bool park_read(struct park *pk, pthread_mutex_t *lock, fuse_req_t req,
	       size_t size, off_t off, fuse_interrupt_func_t intr,
	       void *intr_data);

/* The newest parked read, taken out of pk; NULL if none.
 * The caller answers p->req and frees p. */
struct parked *park_take_locked(struct park *pk);

/* Takes req out of pk, if parked there; the caller, once unlocked, passes
 * what this returns to park_interrupted(). */
struct parked *park_interrupt_locked(struct park *pk, fuse_req_t req);
/* Answers an interrupted read EINTR and frees it (NULL: nothing). */
void park_interrupted(struct parked *p);

/* Answers every parked read EINTR (the file is closed). */
void park_cancel_locked(struct park *pk);

/* Keeps *ph as the handle to notify (replacing an older one) and sets *ph
 * to NULL; the caller destroys what is left in *ph once unlocked. */
void park_poll_locked(struct park *pk, struct fuse_pollhandle **ph);
/* Tells the kept poll handle, if any, that the file is ready. */
void park_notify_locked(struct park *pk);
/* Frees the kept poll handle (at release, the lock not needed). */
void park_free(struct park *pk);
