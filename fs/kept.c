/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The kept files of -o kernel_cache: see kept.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "files.h"
#include "kept.h"
#include "source.h"

/*
 * The versions seen since the mount, each once, never freed or changed: a
 * kept version's inode names one by its index. A host runs few; past
 * KEPT_VERSIONS_MAX, versions are served direct_io.
 */
#define KEPT_VERSIONS_MAX 256
static pthread_mutex_t versions_lock = PTHREAD_MUTEX_INITIALIZER;
static char *versions[KEPT_VERSIONS_MAX];
static unsigned n_versions;

/* v's index, added if new; -1 when the table is full (or on ENOMEM). */
static int version_index(const char *v)
{
	int k = -1;

	pthread_mutex_lock(&versions_lock);
	for (unsigned i = 0; i < n_versions && k < 0; i++)
		if (strcmp(versions[i], v) == 0)
			k = (int)i;
	if (k < 0 && n_versions < KEPT_VERSIONS_MAX &&
	    (versions[n_versions] = strdup(v)))
		k = (int)n_versions++;
	pthread_mutex_unlock(&versions_lock);
	return k;
}

/* The index of d's value of kind, or -1 while it is not kept. */
static int kept_index(struct dom *d, unsigned kind)
{
	enum hv_state s;
	char *v;
	int k = -1;

	if (!hvfs_opts.kernel_cache || !source_evented(d->src))
		return -1;
	if (kind == FK_STATE && dom_state_cached(d, &s) &&
	    hv_state_name(s))
		k = (int)s;
	if (kind == FK_VERSION && (v = dom_version_known(d))) {
		k = version_index(v);
		free(v);
	}
	return k;
}

fuse_ino_t kept_ino(struct dom *d, unsigned kind)
{
	int k = kept_index(d, kind);

	return ino_make(d->slot, kind, k < 0 ? 0 : 1 + (unsigned)k);
}

bool kept_is(fuse_ino_t ino)
{
	unsigned kind = ino_kind(ino);

	return ino_slot(ino) != 0 && ino_sub(ino) != 0 &&
	       (kind == FK_STATE || kind == FK_VERSION);
}

int kept_read(fuse_ino_t ino, char **ret, size_t *ret_len)
{
	unsigned k = ino_sub(ino) - 1;
	const char *v = NULL;
	char *text;
	int n;

	if (ino_kind(ino) == FK_STATE) {
		v = hv_state_name((enum hv_state)k);
	} else {
		pthread_mutex_lock(&versions_lock);
		if (k < n_versions)
			v = versions[k];
		pthread_mutex_unlock(&versions_lock);
	}
	if (!v)
		return -ENOENT;
	n = asprintf(&text, "%s\n", v);
	if (n < 0)
		return -ENOMEM;
	*ret = text;
	*ret_len = (size_t)n;
	return 0;
}

bool kept_current(struct dom *d, fuse_ino_t ino)
{
	return kept_index(d, ino_kind(ino)) + 1 == (int)ino_sub(ino);
}

/*
 * Dropping the kernel's entries of kept files. notify_inval_entry takes the
 * directory's lock in the kernel, and a thread that holds it may wait for
 * a lock our caller's request holds (root's unlink of `control` while its
 * write runs a verb): so a thread of its own drops them, and callers wait
 * for it at most KEPT_DROP_WAIT_MS, and not at all while a wait ran out
 * and that thread is still at it: one stuck directory costs the callers
 * (a driver's event thread among them) one such wait, not one per event.
 * Reads are right either way: an open checks that its inode's value is
 * current (ops.c), the entry only spares the slower path.
 */
#define KEPT_DROP_WAIT_MS 100

static const unsigned kept_kinds[] = { FK_STATE, FK_VERSION };

static struct fuse_session *session;
static pthread_t dropper;
static pthread_mutex_t drop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drop_cond;      /* CLOCK_MONOTONIC */
static uint64_t *drop_slots;          /* to drop, each once */
static size_t n_drop, cap_drop;
static uint64_t drop_queued, drop_done; /* tickets */
static bool drop_stopping;
static bool drop_stuck;               /* a wait ran out since the last batch */

static void *dropper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&drop_lock);
	for (;;) {
		uint64_t *slots, upto;
		size_t n;

		while (!n_drop && !drop_stopping)
			pthread_cond_wait(&drop_cond, &drop_lock);
		if (!n_drop)
			break;
		slots = drop_slots;
		n = n_drop;
		upto = drop_queued;
		drop_slots = NULL;
		n_drop = cap_drop = 0;
		pthread_mutex_unlock(&drop_lock);
		for (size_t i = 0; i < n; i++) {
			for (size_t k = 0; k < sizeof(kept_kinds) /
					       sizeof(kept_kinds[0]); k++) {
				const char *name = file_types[kept_kinds[k]].name;

				fuse_lowlevel_notify_inval_entry(session,
					ino_make(slots[i], FK_DIR, 0), name,
					strlen(name));
			}
		}
		free(slots);
		pthread_mutex_lock(&drop_lock);
		drop_done = upto;
		drop_stuck = false;
		pthread_cond_broadcast(&drop_cond);
	}
	pthread_mutex_unlock(&drop_lock);
	return NULL;
}

int kept_start(struct fuse_session *se)
{
	pthread_condattr_t attr;
	int r;

	if (!hvfs_opts.kernel_cache)
		return 0;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&drop_cond, &attr);
	pthread_condattr_destroy(&attr);
	session = se;
	r = pthread_create(&dropper, NULL, dropper_main, NULL);
	if (r != 0)
		session = NULL;
	return -r;
}

void kept_stop(void)
{
	if (!session)
		return;
	pthread_mutex_lock(&drop_lock);
	drop_stopping = true;
	pthread_cond_broadcast(&drop_cond);
	pthread_mutex_unlock(&drop_lock);
	pthread_join(dropper, NULL);
	session = NULL;
	free(drop_slots);
	drop_slots = NULL;
	n_drop = cap_drop = 0;
}

void kept_drop(uint64_t slot)
{
	struct timespec dl;
	uint64_t ticket;
	bool queued = false;

	if (!session)
		return;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += KEPT_DROP_WAIT_MS / 1000;
	dl.tv_nsec += KEPT_DROP_WAIT_MS % 1000 * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&drop_lock);
	for (size_t i = 0; i < n_drop && !queued; i++)
		queued = drop_slots[i] == slot;
	if (!queued && n_drop == cap_drop) {
		size_t cap = cap_drop ? 2 * cap_drop : 16;
		uint64_t *p = realloc(drop_slots, cap * sizeof(*p));

		if (p) {
			drop_slots = p;
			cap_drop = cap;
		}
	}
	if (!queued && n_drop < cap_drop) {
		drop_slots[n_drop++] = slot;
		queued = true;
		drop_queued++;
		pthread_cond_broadcast(&drop_cond);
	}
	ticket = drop_queued;
	while (queued && !drop_stuck && drop_done < ticket && !drop_stopping)
		if (pthread_cond_timedwait(&drop_cond, &drop_lock, &dl) ==
		    ETIMEDOUT && drop_done < ticket)
			drop_stuck = true;
	pthread_mutex_unlock(&drop_lock);
}
