/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The facts of one domain. For a source that delivers events, state, version
 * and uuid are fetched once and then kept true by events, so a read costs
 * what FUSE costs; without events every read asks the peer.
 *
 * A fetch races with events: it records d->gen before asking the peer and
 * stores its answer only if no event bumped gen meanwhile, so an old answer
 * can never overwrite what a newer event said.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hvfs.h"

void dom_forget(struct dom *d)
{
	pthread_mutex_lock(&d->lock);
	d->gen++;
	d->qemu_gen++;
	d->state_known = false;
	free(d->version);
	free(d->uuid);
	d->version = d->uuid = NULL;
	pthread_mutex_unlock(&d->lock);
}

void dom_state_unsure(struct dom *d)
{
	pthread_mutex_lock(&d->lock);
	d->gen++;
	d->state_known = false;
	pthread_mutex_unlock(&d->lock);
}

/* Caller holds d->lock. Wakes every poller of the state file. */
static void wake_locked(struct dom *d)
{
	for (size_t i = 0; i < d->n_watchers; i++) {
		fuse_lowlevel_notify_poll(d->watchers[i]);
		fuse_pollhandle_destroy(d->watchers[i]);
	}
	d->n_watchers = 0;
}

void dom_set_state(struct dom *d, enum hv_state s)
{
	pthread_mutex_lock(&d->lock);
	d->gen++;
	if (!d->state_known || d->state != s)
		d->state_gen++;
	d->state = s;
	d->state_known = source_evented(d->src);
	/* A QEMU that stopped takes its version with it. */
	if (s == HV_STATE_SHUTOFF || s == HV_STATE_NOSTATE) {
		d->qemu_gen++;
		free(d->version);
		d->version = NULL;
	}
	wake_locked(d);
	pthread_mutex_unlock(&d->lock);
}

int dom_state(struct dom *d, enum hv_state *ret, char **ret_error)
{
	enum hv_state s;
	uint64_t gen;
	int r;

	pthread_mutex_lock(&d->lock);
	if (d->state_known) {
		*ret = d->state;
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	gen = d->gen;
	pthread_mutex_unlock(&d->lock);

	r = hv_state(d->src->conn, d->hv_name, &s, ret_error);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->lock);
	if (d->gen == gen) {
		if (d->state != s)
			d->state_gen++;
		d->state = s;
		d->state_known = source_evented(d->src);
	}
	pthread_mutex_unlock(&d->lock);
	*ret = s;
	return 0;
}

bool dom_state_cached(struct dom *d, enum hv_state *ret)
{
	bool known;

	pthread_mutex_lock(&d->lock);
	known = d->state_known;
	*ret = d->state;
	pthread_mutex_unlock(&d->lock);
	return known;
}

/* Returns a copy of *slot if set; else fetches, caches (if still current)
 * and returns a copy. */
static int cached_string(struct dom *d, char **slot,
			 int (*fetch)(struct hv_conn *, const char *, char **,
				      char **),
			 char **ret, char **ret_error)
{
	char *v = NULL, *copy;
	uint64_t gen;
	int r;

	pthread_mutex_lock(&d->lock);
	if (*slot) {
		copy = strdup(*slot);
		pthread_mutex_unlock(&d->lock);
		if (!copy)
			return -ENOMEM;
		*ret = copy;
		return 0;
	}
	gen = d->gen;
	pthread_mutex_unlock(&d->lock);

	r = fetch(d->src->conn, d->hv_name, &v, ret_error);
	if (r < 0)
		return r;
	copy = strdup(v);
	if (!copy) {
		free(v);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	if (source_evented(d->src) && d->gen == gen && !*slot) {
		*slot = v;
		v = NULL;
	}
	pthread_mutex_unlock(&d->lock);
	free(v);
	*ret = copy;
	return 0;
}

int dom_version(struct dom *d, char **ret, char **ret_error)
{
	return cached_string(d, &d->version, hv_version, ret, ret_error);
}

static int fetch_uuid(struct hv_conn *c, const char *name, char **ret,
		      char **ret_error)
{
	struct hv_domain_info info;
	int r = hv_lookup(c, name, &info, ret_error);

	if (r < 0)
		return r;
	if (!info.uuid[0])
		return -ENODATA;
	*ret = strdup(info.uuid);
	return *ret ? 0 : -ENOMEM;
}

int dom_uuid(struct dom *d, char **ret, char **ret_error)
{
	return cached_string(d, &d->uuid, fetch_uuid, ret, ret_error);
}

void dom_prefetch(struct dom *d)
{
	enum hv_state s;
	char *v = NULL;

	if (dom_state(d, &s, NULL) < 0)
		return;
	if (dom_uuid(d, &v, NULL) == 0)
		free(v);
	v = NULL;
	if (s != HV_STATE_SHUTOFF && dom_version(d, &v, NULL) == 0)
		free(v);
}

bool dom_poll_state(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph)
{
	bool changed;

	pthread_mutex_lock(&d->lock);
	changed = d->state_gen != seen;
	if (!changed && ph) {
		struct fuse_pollhandle **n = reallocarray(
			d->watchers, d->n_watchers + 1, sizeof(*n));

		if (n) {
			d->watchers = n;
			d->watchers[d->n_watchers++] = ph;
			ph = NULL;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
	return changed;
}

void dom_release_watchers(struct dom *d)
{
	pthread_mutex_lock(&d->lock);
	wake_locked(d);
	free(d->watchers);
	d->watchers = NULL;
	pthread_mutex_unlock(&d->lock);
}

uint64_t dom_state_gen(struct dom *d)
{
	uint64_t g;

	pthread_mutex_lock(&d->lock);
	g = d->state_gen;
	pthread_mutex_unlock(&d->lock);
	return g;
}
