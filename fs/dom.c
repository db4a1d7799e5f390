/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One domain: its references and its facts (see dom.h).
 *
 * A fetch races with events: it records d->gen before asking the peer and
 * stores its answer only if no event bumped gen meanwhile, so an old answer
 * can never overwrite what a newer event said.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "dom.h"

struct dom *dom_new(struct source *src, const char *hv_name,
			   const char *name)
{
	struct dom *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->hv_name = strdup(hv_name);
	d->name = strdup(name);
	if (!d->hv_name || !d->name) {
		free(d->hv_name);
		free(d->name);
		free(d);
		return NULL;
	}
	d->src = src;
	d->refs = 1;
	d->defined_us = hvfs_wall_us();
	pthread_mutex_init(&d->lock, NULL);
	return d;
}

static void dom_free(struct dom *d)
{
	dom_release_watchers(d);
	pthread_mutex_destroy(&d->lock);
	free(d->name);
	free(d->hv_name);
	free(d->error);
	free(d->version);
	free(d->uuid);
	if (d->ext_free)
		d->ext_free(d->ext);
	free(d);
}

struct dom *dom_ref(struct dom *d)
{
	__atomic_add_fetch(&d->refs, 1, __ATOMIC_RELAXED);
	return d;
}

struct dom *dom_unref(struct dom *d)
{
	if (d && __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) == 0)
		dom_free(d);
	return NULL;
}

struct hv_conn *dom_conn(struct dom *d)
{
	return source_conn(d->src);
}

bool dom_is_libvirt(struct dom *d)
{
	return strcmp(hv_driver_name(dom_conn(d)), "libvirt") == 0;
}

void dom_set_error(struct dom *d, const char *op, int err, const char *msg)
{
	char stamp[32], *text;
	struct tm tm;
	time_t now = time(NULL);
	const char *ename = strerrorname_np(-err);

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (asprintf(&text, "%s %s: %s (%s)\n", stamp, op,
		     msg ? msg : strerror(-err), ename ? ename : "?") < 0)
		return;
	hvfs_log(LOG_ERR, "%s%s%s: %s: %s (%s)",
		 hosts_multi() ? host_name(d->src->host) : "",
		 hosts_multi() ? "/" : "", d->name, op,
		 msg ? msg : strerror(-err), ename ? ename : "?");
	pthread_mutex_lock(&d->lock);
	free(d->error);
	d->error = text;
	pthread_mutex_unlock(&d->lock);
}

char *dom_error(struct dom *d)
{
	char *text;

	pthread_mutex_lock(&d->lock);
	text = strdup(d->error ? d->error : "");
	pthread_mutex_unlock(&d->lock);
	return text;
}

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

/*
 * Caller holds d->lock. Records the state s, learnt from an event (`event`;
 * us: its time, or 0) or else from a fetch or a listing, which changes it
 * only if it differs from the last one learnt. A change bumps state_gen,
 * sets the state's time (the event's, else now) and wakes the pollers.
 */
static void learn_state_locked(struct dom *d, enum hv_state s, int64_t us,
			       bool event)
{
	bool changed = event ? !d->state_known || d->state != s
			     : d->state_ever && d->state != s;

	if (changed) {
		d->state_gen++;
		d->state_us = us > 0 ? us : hvfs_wall_us();
	}
	d->state = s;
	d->state_ever = true;
	d->state_known = source_evented(d->src);
	if (changed || event)
		wake_locked(d);
}

void dom_set_state(struct dom *d, enum hv_state s, int64_t us)
{
	pthread_mutex_lock(&d->lock);
	d->gen++;
	learn_state_locked(d, s, us, true);
	/* A QEMU that stopped takes its version with it. */
	if (s == HV_STATE_SHUTOFF || s == HV_STATE_NOSTATE) {
		d->qemu_gen++;
		free(d->version);
		d->version = NULL;
	}
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

	r = hv_state(dom_conn(d), d->hv_name, &s, ret_error);
	if (r < 0)
		return r;
	pthread_mutex_lock(&d->lock);
	if (d->gen == gen)
		learn_state_locked(d, s, 0, false);
	pthread_mutex_unlock(&d->lock);
	*ret = s;
	return 0;
}

void dom_seed(struct dom *d, const char *uuid, enum hv_state s)
{
	pthread_mutex_lock(&d->lock);
	if (!d->uuid && uuid[0])
		d->uuid = strdup(uuid); /* a failed copy: fetched when read */
	if (!d->state_known && s != HV_STATE_NOSTATE &&
	    source_evented(d->src))
		learn_state_locked(d, s, 0, false);
	pthread_mutex_unlock(&d->lock);
}

/* *field of d, read under its lock. */
static int64_t locked_i64(struct dom *d, const int64_t *field)
{
	int64_t v;

	pthread_mutex_lock(&d->lock);
	v = *field;
	pthread_mutex_unlock(&d->lock);
	return v;
}

int64_t dom_state_time_us(struct dom *d)
{
	return locked_i64(d, &d->state_us);
}

void dom_set_defined(struct dom *d, int64_t us)
{
	pthread_mutex_lock(&d->lock);
	if (us > 0)
		d->defined_us = us;
	pthread_mutex_unlock(&d->lock);
}

int64_t dom_defined_us(struct dom *d)
{
	return locked_i64(d, &d->defined_us);
}

static bool slot_set(struct dom *d, char *const *slot)
{
	bool set;

	pthread_mutex_lock(&d->lock);
	set = *slot != NULL;
	pthread_mutex_unlock(&d->lock);
	return set;
}

bool dom_version_cached(struct dom *d)
{
	return slot_set(d, &d->version);
}

bool dom_uuid_cached(struct dom *d)
{
	return slot_set(d, &d->uuid);
}

char *dom_version_known(struct dom *d)
{
	char *v;

	pthread_mutex_lock(&d->lock);
	v = d->version ? strdup(d->version) : NULL;
	pthread_mutex_unlock(&d->lock);
	return v;
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

	r = fetch(dom_conn(d), d->hv_name, &v, ret_error);
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

/* Caller holds d->lock. A QEMU runs whose version is not cached. */
static bool version_missing_locked(struct dom *d)
{
	return d->state_known && !d->version &&
	       (d->state == HV_STATE_RUNNING || d->state == HV_STATE_PAUSED);
}

bool dom_needs_prefetch(struct dom *d, bool version)
{
	bool need;

	pthread_mutex_lock(&d->lock);
	need = !d->state_known || (version && version_missing_locked(d));
	pthread_mutex_unlock(&d->lock);
	return need;
}

void dom_prefetch(struct dom *d, bool version)
{
	enum hv_state s;
	char *v = NULL;
	bool want;

	dom_state(d, &s, NULL);
	pthread_mutex_lock(&d->lock);
	want = version && version_missing_locked(d);
	pthread_mutex_unlock(&d->lock);
	if (want && dom_version(d, &v, NULL) == 0)
		free(v);
}

static bool poll_gen(struct dom *d, bool agent, uint64_t seen,
		     struct fuse_pollhandle *ph)
{
	bool changed;

	pthread_mutex_lock(&d->lock);
	changed = (agent ? d->agent_gen : d->state_gen) != seen;
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

bool dom_poll_state(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph)
{
	return poll_gen(d, false, seen, ph);
}

bool dom_poll_agent(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph)
{
	return poll_gen(d, true, seen, ph);
}

void dom_agent_changed(struct dom *d)
{
	pthread_mutex_lock(&d->lock);
	d->agent_gen++;
	wake_locked(d);
	pthread_mutex_unlock(&d->lock);
}

uint64_t dom_agent_gen(struct dom *d)
{
	uint64_t g;

	pthread_mutex_lock(&d->lock);
	g = d->agent_gen;
	pthread_mutex_unlock(&d->lock);
	return g;
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

bool dom_told(struct dom *d, const struct hv_event *ev)
{
	pthread_mutex_lock(&d->lock);
	if (ev->kind == HV_EVENT_LOST && d->told_undefined) {
		pthread_mutex_unlock(&d->lock);
		return false;
	}
	if (ev->kind == HV_EVENT_STATE)
		d->told_shutoff = ev->state == HV_STATE_SHUTOFF;
	d->told_undefined = ev->kind == HV_EVENT_UNDEFINED;
	pthread_mutex_unlock(&d->lock);
	return true;
}

void dom_told_last(struct dom *d, bool *ret_shutoff, bool *ret_undefined)
{
	pthread_mutex_lock(&d->lock);
	*ret_shutoff = d->told_shutoff;
	*ret_undefined = d->told_undefined;
	pthread_mutex_unlock(&d->lock);
}

bool dom_shutoff_untold(struct dom *d)
{
	bool off;

	pthread_mutex_lock(&d->lock);
	off = !d->told_shutoff && d->state_known &&
	      d->state == HV_STATE_SHUTOFF;
	pthread_mutex_unlock(&d->lock);
	return off;
}
