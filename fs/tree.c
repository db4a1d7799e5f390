/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The domain table: which domains the tree shows, under which names, and in
 * which slots. Two sorted arrays index the same live domains, by (host, tree
 * name) for lookup and readdir, and by slot for every operation on an inode.
 *
 * Each source keeps the last listing of its domains that worked; the table
 * is rebuilt from all of them whenever one changes, so a source that is
 * slow or down never holds up another one. Each source has a worker thread
 * of its own that opens it, re-lists it, fetches what is not cached, and
 * retries with backoff while its peer is lost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ino.h"
#include "kept.h"
#include "names.h"
#include "tree.h"

#define PREFETCH_THREADS 8
#define RETRY_MS_MIN 500
#define RETRY_MS_MAX 8000
/* A read does not re-list a source whose listing failed this recently: it
 * answers from the last listing, and the worker keeps retrying. */
#define FAILED_QUIET_MS 1000

static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fuse_session *session; /* for invalidations, once mounted */
static bool stopping;                 /* atomic */
static const struct tree_listener *listener;

static struct dom **by_name; /* sorted by host, then name */
static struct dom **by_slot; /* sorted by slot */
static size_t n_doms;
static uint64_t next_slot = 1;

void tree_set_listener(const struct tree_listener *l)
{
	listener = l;
}

/* ---- domains ---- */

static void listing_free(struct listed *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].hv_name);
		free(l[i].name);
	}
	free(l);
}

/* ---- events that raced a listing ---- */

/* Caller holds tree_lock (or is the only thread left). */
static void raced_clear_locked(struct source *s)
{
	for (size_t i = 0; i < s->n_raced; i++)
		free(s->raced[i]);
	free(s->raced);
	s->raced = NULL;
	s->n_raced = 0;
	s->raced_all = false;
}

/*
 * Notes, while a listing of s is asked, that ev may have changed what it
 * says: the listing must not seed the facts of ev's domain (of every domain
 * if ev is about the whole source). Caller holds tree_lock, before ev
 * changes anything.
 */
static void note_raced_locked(struct source *s, const struct hv_event *ev)
{
	char **n;

	if (!s->listing_open || s->raced_all || ev->kind == HV_EVENT_HYPERVISOR)
		return;
	if (!ev->domain || s->n_raced == SOURCE_RACED_MAX) {
		s->raced_all = true;
		return;
	}
	n = reallocarray(s->raced, s->n_raced + 1, sizeof(*n));
	if (n)
		s->raced = n;
	if (!n || !(n[s->n_raced] = strdup(ev->domain))) {
		s->raced_all = true;
		return;
	}
	s->n_raced++;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether an event about hv_name raced the listing; s->raced is sorted.
 * Caller holds tree_lock. */
static bool raced_locked(const struct source *s, const char *hv_name)
{
	return s->raced_all ||
	       (s->n_raced && bsearch(&hv_name, s->raced, s->n_raced,
				      sizeof(*s->raced), cmp_str));
}

void tree_free(void)
{
	/* Close first: no driver thread may deliver an event after this. */
	sources_close();
	for (size_t i = 0; i < n_doms; i++)
		dom_unref(by_name[i]);
	free(by_name);
	free(by_slot);
	by_name = by_slot = NULL;
	n_doms = 0;
	for (size_t i = 0; i < sources_count(); i++) {
		struct source *s = source_at(i);

		listing_free(s->listing, s->n_listing);
		s->listing = NULL;
		s->n_listing = 0;
		raced_clear_locked(s);
		for (unsigned k = 0; k < SOURCE_LEFT_MAX; k++) {
			free(s->left[k]);
			s->left[k] = NULL;
		}
	}
}

static int cmp_host_name(int ha, const char *na, int hb, const char *nb)
{
	if (ha != hb)
		return ha < hb ? -1 : 1;
	return strcmp(na, nb);
}

static int cmp_name(const void *a, const void *b)
{
	const struct dom *x = *(struct dom *const *)a;
	const struct dom *y = *(struct dom *const *)b;

	return cmp_host_name(host_index(x->src->host), x->name,
			     host_index(y->src->host), y->name);
}

static int cmp_slot(const void *a, const void *b)
{
	uint64_t x = (*(struct dom *const *)a)->slot;
	uint64_t y = (*(struct dom *const *)b)->slot;

	return x < y ? -1 : x > y;
}

/* Caller holds tree_lock. */
static struct dom *find_name_locked(int host, const char *name)
{
	size_t lo = 0, hi = n_doms;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		struct dom *d = by_name[mid];
		int c = cmp_host_name(host, name, host_index(d->src->host), d->name);

		if (c == 0)
			return d;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

struct dom *tree_find_name(int host, const char *name)
{
	struct dom *d;

	pthread_mutex_lock(&tree_lock);
	d = find_name_locked(host, name);
	if (d)
		dom_ref(d);
	pthread_mutex_unlock(&tree_lock);
	return d;
}

struct dom *tree_find_slot(uint64_t slot)
{
	struct dom key = { .slot = slot }, *kp = &key, **p, *d = NULL;

	pthread_mutex_lock(&tree_lock);
	p = n_doms ? bsearch(&kp, by_slot, n_doms, sizeof(*by_slot), cmp_slot)
		   : NULL;
	if (p) {
		d = *p;
		dom_ref(d);
	}
	pthread_mutex_unlock(&tree_lock);
	return d;
}

/* d if it is src's hv_name, else NULL. */
static struct dom *if_hv(struct dom *d, struct source *src, const char *hv_name)
{
	return d && d->src == src && strcmp(d->hv_name, hv_name) == 0 ? d : NULL;
}

/*
 * By the tree names the table gives it (escaped, or NAME@LABEL on a clash),
 * each a binary search: every event asks, and a host may have thousands of
 * domains. Without memory for the names, one pass over the table.
 */
struct dom *tree_find_hv(struct source *src, const char *hv_name)
{
	char *esc = name_escape(hv_name), *qualified = NULL;
	int host = host_index(src->host);
	struct dom *d = NULL;

	if (esc && asprintf(&qualified, "%s@%s", esc, src->label) < 0)
		qualified = NULL;
	pthread_mutex_lock(&tree_lock);
	if (esc && qualified) {
		d = if_hv(find_name_locked(host, esc), src, hv_name);
		if (!d)
			d = if_hv(find_name_locked(host, qualified), src,
				  hv_name);
	} else {
		for (size_t i = 0; i < n_doms && !d; i++)
			d = if_hv(by_slot[i], src, hv_name);
	}
	if (d)
		dom_ref(d);
	pthread_mutex_unlock(&tree_lock);
	free(esc);
	free(qualified);
	return d;
}

fuse_ino_t tree_parent_of(struct dom *d)
{
	return top_ino(host_level(d->src->host), FK_DIR);
}

int tree_entries(int host, struct entry **e, size_t *n)
{
	int r = 0;

	pthread_mutex_lock(&tree_lock);
	for (size_t i = 0; i < n_doms && !r; i++)
		if (host_index(by_name[i]->src->host) == host)
			r = entries_add(e, n, by_name[i]->name,
				      ino_make(by_name[i]->slot, FK_DIR, 0),
				      true);
	pthread_mutex_unlock(&tree_lock);
	return r;
}

/* ---- rebuilding the table from the listings ---- */

struct seen {
	struct source *src;
	const struct listed *l;
	const char *hv_name;
	char *name; /* the tree name: escaped, maybe NAME@label */
};

static int cmp_seen(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return cmp_host_name(host_index(x->src->host), x->name,
			     host_index(y->src->host), y->name);
}

/* Caller holds tree_lock. */
static void remember_left(struct dom *d)
{
	struct source *s = d->src;
	unsigned k = s->left_next++ % SOURCE_LEFT_MAX;

	free(s->left[k]);
	s->left[k] = strdup(d->hv_name);
}

/*
 * Whether ev is the peer's late word about a domain whose leaving the tree
 * said already (the tree listed it gone before the peer's last events
 * came); forgets the domain when it comes back. Caller holds tree_lock.
 */
static bool said_already_locked(struct source *s, const struct hv_event *ev)
{
	bool late = ev->kind == HV_EVENT_UNDEFINED || ev->kind == HV_EVENT_LOST ||
		    (ev->kind == HV_EVENT_STATE && ev->state == HV_STATE_SHUTOFF);

	for (unsigned k = 0; k < SOURCE_LEFT_MAX; k++) {
		if (!s->left[k] || strcmp(s->left[k], ev->domain) != 0)
			continue;
		if (late)
			return true;
		free(s->left[k]);
		s->left[k] = NULL;
	}
	return false;
}

/* A domain that left the tree: its name, to invalidate in the kernel's
 * cache, and a reference, to say its leaving in its events files. */
struct gone {
	fuse_ino_t parent;
	char *name;
	struct dom *dom;
	bool renamed;   /* the domain stays, under another name */
};

/*
 * Rebuilds the table from every source's listing; caller holds tree_lock.
 * A domain keeps its slot as long as its source, driver name and tree name
 * stay the same. A name two sources of one host share is shown as
 * NAME@LABEL for both. The domains of `seeding` (if not NULL) take what its
 * new listing said where nothing is known yet, unless an event about them
 * raced the listing (dom_seed()).
 */
static int rebuild_locked(struct source *seeding, struct gone **ret_gone,
			  size_t *ret_n_gone)
{
	struct seen *seen;
	struct dom **names, **slots;
	struct gone *gone = NULL;
	size_t n_seen = 0, cap = 0, n = 0, n_gone = 0;
	int r = -ENOMEM;

	for (size_t k = 0; k < sources_count(); k++)
		cap += source_at(k)->n_listing;
	seen = calloc(cap ? cap : 1, sizeof(*seen));
	names = calloc(cap ? cap : 1, sizeof(*names));
	slots = calloc(cap ? cap : 1, sizeof(*slots));
	if (n_doms)
		gone = calloc(n_doms, sizeof(*gone));
	if (!seen || !names || !slots || (n_doms && !gone))
		goto out;
	for (size_t k = 0; k < sources_count(); k++)
		for (size_t i = 0; i < source_at(k)->n_listing; i++)
			seen[n_seen++] = (struct seen){
				.src = source_at(k),
				.l = &source_at(k)->listing[i],
				.hv_name = source_at(k)->listing[i].hv_name,
				.name = source_at(k)->listing[i].name,
			};
	if (n_seen)
		qsort(seen, n_seen, sizeof(*seen), cmp_seen);
	if (seeding && seeding->n_raced > 1)
		qsort(seeding->raced, seeding->n_raced, sizeof(*seeding->raced),
		      cmp_str);
	for (size_t i = 0; i < n_seen; i++) {
		bool clash = (i > 0 && cmp_seen(&seen[i - 1], &seen[i]) == 0) ||
			     (i + 1 < n_seen &&
			      cmp_seen(&seen[i], &seen[i + 1]) == 0);
		char *qualified = NULL;
		const char *name = seen[i].name;
		struct dom *d;

		if (clash) {
			if (asprintf(&qualified, "%s@%s", name,
				     seen[i].src->label) < 0)
				continue;
			name = qualified;
		}
		d = find_name_locked(host_index(seen[i].src->host), name);
		if (d && !d->gone && d->src == seen[i].src &&
		    strcmp(d->hv_name, seen[i].hv_name) == 0) {
			dom_ref(d);
			d->gone = true; /* marks it taken over */
		} else {
			d = dom_new(seen[i].src, seen[i].hv_name, name);
			if (d)
				d->slot = next_slot++;
		}
		free(qualified);
		if (d && seen[i].src == seeding &&
		    !raced_locked(seeding, seen[i].hv_name))
			dom_seed(d, seen[i].l->uuid, seen[i].l->state);
		if (d)
			names[n++] = d;
	}
	/* The old table: what was taken over stays, the rest is gone. */
	for (size_t i = 0; i < n_doms; i++) {
		struct dom *d = by_name[i];

		if (d->gone) {
			d->gone = false;
		} else {
			d->gone = true;
			gone[n_gone].parent = tree_parent_of(d);
			/* Still listed, under a new name (a clash came or
			 * went): its directory goes, the domain did not. */
			gone[n_gone].renamed = false;
			for (size_t k = 0; k < n; k++)
				if (names[k]->src == d->src &&
				    strcmp(names[k]->hv_name, d->hv_name) == 0)
					gone[n_gone].renamed = true;
			if (!gone[n_gone].renamed)
				remember_left(d);
			if ((gone[n_gone].name = strdup(d->name))) {
				gone[n_gone].dom = d;
				dom_ref(d);
				n_gone++;
			}
			dom_release_watchers(d);
		}
		dom_unref(d);
	}
	memcpy(slots, names, n * sizeof(*names));
	qsort(names, n, sizeof(*names), cmp_name);
	qsort(slots, n, sizeof(*slots), cmp_slot);
	free(by_name);
	free(by_slot);
	by_name = names;
	by_slot = slots;
	n_doms = n;
	names = slots = NULL;
	r = 0;
out:
	free(seen);
	free(names);
	free(slots);
	*ret_gone = gone;
	*ret_n_gone = n_gone;
	return r;
}

/* ---- what events files are told ---- */

/* Events are decided and told one at a time: see tell(). */
static pthread_mutex_t tell_lock = PTHREAD_MUTEX_INITIALIZER;

static void publish(struct source *src, struct dom *d, const char *name,
		    const struct hv_event *ev)
{
	if (listener && listener->event)
		listener->event(src, d, name, ev);
}

static void domain_end(uint64_t slot)
{
	if (listener && listener->domain_end)
		listener->domain_end(slot);
}

static void kick(struct source *s);

void tree_inval_attrs(struct dom *d)
{
	static const unsigned kinds[] = { FK_DIR, FK_STATE, FK_VERSION,
					  FK_UUID };
	static const unsigned kept[] = { FK_STATE, FK_VERSION };

	if (!session)
		return;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		fuse_lowlevel_notify_inval_inode(session,
						 ino_make(d->slot, kinds[i], 0),
						 -1, 0);
	if (!hvfs_opts.kernel_cache)
		return;
	/* Kept files: the inode a name stands for may have a new time (a
	 * value come back), and the name may stand for another inode now. */
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		fuse_ino_t ino = kept_ino(d, kept[i]);

		if (kept_is(ino))
			fuse_lowlevel_notify_inval_inode(session, ino, -1, 0);
	}
	kept_drop(d->slot);
}

void tree_state_unsure(struct dom *d)
{
	/* A listing under way may have seen the state before this: it
	 * must not seed it (as if an event raced it). */
	const struct hv_event ev = { .kind = HV_EVENT_STATE,
				     .domain = d->hv_name };

	pthread_mutex_lock(&tree_lock);
	note_raced_locked(d->src, &ev);
	pthread_mutex_unlock(&tree_lock);
	dom_state_unsure(d);
	tree_inval_attrs(d);
}

/*
 * Publishes ev about d and remembers what it said. Caller holds tell_lock:
 * a driver's threads and the workers report at once, so what is told is
 * decided one event at a time, and what dom_told_last() says is what
 * readers got, in the order they got it.
 */
static void tell(struct dom *d, const char *name, const struct hv_event *ev)
{
	if (dom_told(d, ev))
		publish(d->src, d, name, ev);
}

/* hvfs's own line for a leaving the peer did not state (event "left"). */
static void tell_left(struct dom *d, enum hv_event_kind kind)
{
	struct timespec t;
	struct hv_event ev = {
		.kind = kind,
		.domain = d->hv_name,
		.state = HV_STATE_SHUTOFF,
		.name = "left",
	};

	clock_gettime(CLOCK_REALTIME, &t);
	ev.seconds = t.tv_sec;
	ev.micros = t.tv_nsec / 1000;
	tell(d, d->name, &ev);
}

/*
 * d left the tree (caller holds tell_lock): its events files get its final
 * state (shutoff) and its leaving, unless the peer's own events just said
 * so, then end.
 */
static void say_left(struct dom *d)
{
	bool shutoff, undefined;

	dom_told_last(d, &shutoff, &undefined);
	if (!shutoff) {
		tell_left(d, HV_EVENT_STATE);
		undefined = false;
	}
	if (!undefined)
		tell_left(d, HV_EVENT_UNDEFINED);
	domain_end(d->slot);
}

/*
 * Lists one source and, if that worked, rebuilds the table. With `quiet`,
 * a source whose listing failed a moment ago is left alone (its worker
 * retries). Returns 0 or the listing's error.
 */
static int refresh_source(struct source *s, bool quiet)
{
	struct hv_conn *c = source_conn(s);
	struct hv_domain_info *info = NULL;
	struct listed *l;
	struct gone *gone = NULL;
	size_t n = 0, n_l = 0, n_gone = 0;
	char *err = NULL;
	int r;

	if (!c)
		return -ENOTCONN;
	pthread_mutex_lock(&s->list_lock);
	if (quiet && s->failed_ms &&
	    hvfs_now_ms() - s->failed_ms < FAILED_QUIET_MS) {
		pthread_mutex_unlock(&s->list_lock);
		return -EAGAIN;
	}
	__atomic_add_fetch(&s->listings_begun, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(&tree_lock);
	raced_clear_locked(s);
	s->listing_open = true;
	pthread_mutex_unlock(&tree_lock);
	r = hv_list_domains(c, &info, &n, &err);
	if (r < 0) {
		pthread_mutex_lock(&tree_lock);
		s->listing_open = false;
		raced_clear_locked(s);
		pthread_mutex_unlock(&tree_lock);
		s->failed_ms = hvfs_now_ms();
		__atomic_add_fetch(&s->listings, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&s->list_lock);
		source_set_error(s, "list", r, err);
		free(err);
		return r;
	}
	s->failed_ms = 0;
	source_set_error(s, NULL, 0, NULL);
	if (source_subscribed(s))
		source_set_evented(s, true);
	l = calloc(n ? n : 1, sizeof(*l));
	for (size_t i = 0; l && i < n; i++) {
		l[n_l].hv_name = strdup(info[i].name);
		l[n_l].name = name_escape(info[i].name);
		memcpy(l[n_l].uuid, info[i].uuid, sizeof(l[n_l].uuid));
		l[n_l].state = info[i].state;
		if (l[n_l].hv_name && l[n_l].name) {
			n_l++;
		} else {
			free(l[n_l].hv_name);
			free(l[n_l].name);
		}
	}
	free(info);
	if (!l) {
		pthread_mutex_lock(&tree_lock);
		s->listing_open = false;
		raced_clear_locked(s);
		pthread_mutex_unlock(&tree_lock);
		__atomic_add_fetch(&s->listings, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&s->list_lock);
		return -ENOMEM;
	}
	pthread_mutex_lock(&tree_lock);
	listing_free(s->listing, s->n_listing);
	s->listing = l;
	s->n_listing = n_l;
	r = rebuild_locked(s, &gone, &n_gone);
	s->listing_open = false;
	raced_clear_locked(s);
	pthread_mutex_unlock(&tree_lock);
	/* Forgotten by the kernel before the leaving is told, with no lock of
	 * this file held: the kernel may call us back while it works. */
	for (size_t i = 0; i < n_gone; i++) {
		if (session)
			fuse_lowlevel_notify_inval_entry(session,
							 gone[i].parent,
							 gone[i].name,
							 strlen(gone[i].name));
		/* A shell whose working directory it was finds no kept
		 * file there either. */
		tree_inval_attrs(gone[i].dom);
	}
	pthread_mutex_lock(&tell_lock);
	for (size_t i = 0; i < n_gone; i++) {
		if (gone[i].renamed)
			domain_end(gone[i].dom->slot);
		else
			say_left(gone[i].dom);
		free(gone[i].name);
		dom_unref(gone[i].dom);
	}
	pthread_mutex_unlock(&tell_lock);
	free(gone);
	/* Counted once the leaving is said: tree_relist() waits for it. */
	__atomic_add_fetch(&s->listings, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&s->list_lock);
	return r;
}

bool tree_relist(struct dom *d, int64_t deadline_ms)
{
	struct source *s = d->src;
	/* Listings run one at a time: the next one to begin ends as listing
	 * number begun + 1. */
	uint64_t next = __atomic_load_n(&s->listings_begun, __ATOMIC_ACQUIRE) + 1;
	struct dom *still;

	kick(s);
	while (__atomic_load_n(&s->listings, __ATOMIC_ACQUIRE) < next &&
	       hvfs_now_ms() < deadline_ms)
		usleep(10 * 1000);
	still = tree_find_slot(d->slot);
	dom_unref(still);
	return still != NULL;
}

void tree_refresh(int host, bool only_unevented)
{
	for (size_t k = 0; k < sources_count(); k++) {
		struct source *s = source_at(k);

		if (host >= 0 && host_index(s->host) != host)
			continue;
		if (only_unevented && source_evented(s))
			continue;
		/* A subscribed source that lost its peer is its worker's to
		 * retry; meanwhile its last listing stands. */
		if (only_unevented && source_subscribed(s))
			continue;
		refresh_source(s, true);
	}
}

/* ---- the workers: one per source, off the event path ---- */

static void kick(struct source *s)
{
	pthread_mutex_lock(&s->kick_lock);
	s->kicked = true;
	pthread_cond_signal(&s->kick_cond);
	pthread_mutex_unlock(&s->kick_lock);
}

void tree_kick(void)
{
	for (size_t k = 0; k < sources_count(); k++)
		kick(source_at(k));
}

/*
 * Prefetching runs on threads of its own, not on the worker: a domain whose
 * peer hangs holds one of them for a deadline, while the worker goes on
 * listing and the other domains are fetched. A domain is in one batch at a
 * time (dom->prefetching); tree_stop() waits for every batch to end.
 */
struct prefetch {
	struct dom **doms;
	size_t n, next;
	bool versions;       /* dom_prefetch()'s `version` */
	unsigned threads;    /* still running; the last one frees the batch */
	pthread_mutex_t lock;
};

static pthread_mutex_t prefetch_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t prefetch_cond = PTHREAD_COND_INITIALIZER;
static unsigned prefetch_batches; /* guarded by prefetch_lock */

static void prefetch_batch_end(struct prefetch *p)
{
	free(p->doms);
	pthread_mutex_destroy(&p->lock);
	free(p);
	pthread_mutex_lock(&prefetch_lock);
	prefetch_batches--;
	pthread_cond_broadcast(&prefetch_cond);
	pthread_mutex_unlock(&prefetch_lock);
}

static void *prefetch_thread(void *arg)
{
	struct prefetch *p = arg;
	bool last;

	for (;;) {
		struct dom *d = NULL;

		pthread_mutex_lock(&p->lock);
		if (p->next < p->n)
			d = p->doms[p->next++];
		last = !d && --p->threads == 0;
		pthread_mutex_unlock(&p->lock);
		if (!d)
			break;
		dom_prefetch(d, p->versions);
		pthread_mutex_lock(&tree_lock);
		d->prefetching = false;
		pthread_mutex_unlock(&tree_lock);
		dom_unref(d);
	}
	if (last)
		prefetch_batch_end(p);
	return NULL;
}

/*
 * Fetches what no domain of s (if evented) has cached yet, several at a
 * time: the peers answer concurrent calls (libvirt multiplexes one
 * connection, each QMP monitor has its own). With `wait`, returns when the
 * batch is done; else at once, and with -o kernel_cache the batch fetches
 * the versions too (dom_prefetch()).
 */
static void prefetch(struct source *s, bool wait)
{
	struct prefetch *p;
	pthread_attr_t attr;
	unsigned started = 0;

	if (!source_evented(s) || !(p = calloc(1, sizeof(*p))))
		return;
	/* Versions only in the background: a hung QEMU must not hold the
	 * mount for a deadline. */
	p->versions = hvfs_opts.kernel_cache && !wait;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_lock(&tree_lock);
	p->doms = calloc(n_doms ? n_doms : 1, sizeof(*p->doms));
	for (size_t i = 0; p->doms && i < n_doms; i++) {
		struct dom *d = by_slot[i];
		bool need;

		if (d->src != s || d->prefetching)
			continue;
		need = dom_needs_prefetch(d, p->versions);
		if (need) {
			dom_ref(d);
			d->prefetching = true;
			p->doms[p->n++] = d;
		}
	}
	pthread_mutex_unlock(&tree_lock);
	pthread_mutex_lock(&prefetch_lock);
	prefetch_batches++;
	pthread_mutex_unlock(&prefetch_lock);
	p->threads = p->n < PREFETCH_THREADS ? (unsigned)p->n
					     : PREFETCH_THREADS;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* They wait for p->lock, so the count is right before any ends. */
	pthread_mutex_lock(&p->lock);
	for (unsigned want = p->threads; started < want; started++) {
		pthread_t t;

		if (pthread_create(&t, &attr, prefetch_thread, p) != 0)
			break;
	}
	/* None started (or nothing to do): this thread does the batch. */
	p->threads = started ? started : 1;
	pthread_mutex_unlock(&p->lock);
	pthread_attr_destroy(&attr);
	if (started == 0)
		prefetch_thread(p); /* also ends the batch */
	if (wait) {
		pthread_mutex_lock(&prefetch_lock);
		while (prefetch_batches > 0)
			pthread_cond_wait(&prefetch_cond, &prefetch_lock);
		pthread_mutex_unlock(&prefetch_lock);
	}
}

static void on_event(void *userdata, const struct hv_event *ev);

static void subscribe(struct source *s)
{
	int r = hv_subscribe(source_conn(s), on_event, s);

	if (r < 0) {
		hvfs_log(LOG_NOTICE, "%s: no events (%s): every read asks the "
			 "peer", s->uri, strerror(-r));
		return;
	}
	source_set_evented(s, true);
	source_set_subscribed(s);
}

/* Waits for a kick, or retry_ms if positive; false when stopping. */
static bool wait_kick(struct source *s, int retry_ms)
{
	pthread_mutex_lock(&s->kick_lock);
	if (retry_ms > 0 && !s->kicked && !stopping) {
		struct timespec t;

		clock_gettime(CLOCK_REALTIME, &t);
		t.tv_sec += retry_ms / 1000;
		t.tv_nsec += (retry_ms % 1000) * 1000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->kick_cond, &s->kick_lock, &t);
	}
	while (retry_ms <= 0 && !s->kicked && !stopping)
		pthread_cond_wait(&s->kick_cond, &s->kick_lock);
	s->kicked = false;
	pthread_mutex_unlock(&s->kick_lock);
	return !__atomic_load_n(&stopping, __ATOMIC_ACQUIRE);
}

static void *worker(void *arg)
{
	struct source *s = arg;
	int retry_ms = 0;

	while (wait_kick(s, retry_ms)) {
		bool lost;

		if (!source_conn(s) && source_open(s) == 0) {
			hvfs_log(LOG_NOTICE, "%s: connected", s->uri);
			subscribe(s);
		}
		if (source_conn(s)) {
			refresh_source(s, false);
			prefetch(s, false);
		}
		/* A source that is not open, or lost its peer, is retried
		 * with backoff until a listing works (and its driver has
		 * subscribed again). */
		lost = !source_conn(s) ||
		       (source_subscribed(s) && !source_evented(s));
		if (!lost)
			retry_ms = 0;
		else if (retry_ms == 0)
			retry_ms = RETRY_MS_MIN;
		else if (retry_ms < RETRY_MS_MAX)
			retry_ms *= 2;
	}
	return NULL;
}

/* Caller holds tell_lock (see tell()). */
/* Forgets what hvfs knew of src's domains; then the kernel's copies. */
static void forget_source(struct source *src)
{
	struct dom **doms;
	size_t n = 0;

	pthread_mutex_lock(&tree_lock);
	doms = calloc(n_doms ? n_doms : 1, sizeof(*doms));
	for (size_t i = 0; i < n_doms; i++) {
		if (by_slot[i]->src != src)
			continue;
		dom_forget(by_slot[i]);
		if (doms)
			doms[n++] = dom_ref(by_slot[i]);
	}
	pthread_mutex_unlock(&tree_lock);
	/* With no tree_lock held: the kernel may ask us while it works. */
	for (size_t i = 0; i < n; i++) {
		tree_inval_attrs(doms[i]);
		dom_unref(doms[i]);
	}
	free(doms);
}

static void on_event_locked(void *userdata, const struct hv_event *ev)
{
	struct source *src = userdata;
	struct dom *d = ev->domain ? tree_find_hv(src, ev->domain) : NULL;
	char *escaped = NULL;
	bool relist = false, off = false, late;

	pthread_mutex_lock(&tree_lock);
	/* Before ev changes anything (see refresh_source()). */
	note_raced_locked(src, ev);
	late = !d && ev->domain && said_already_locked(src, ev);
	pthread_mutex_unlock(&tree_lock);
	if (late)
		return;

	switch (ev->kind) {
	case HV_EVENT_DEFINED:
	case HV_EVENT_UNDEFINED:
		if (d) {
			/* An undefined domain that is off leaves: its final
			 * state comes first. */
			off = ev->kind == HV_EVENT_UNDEFINED &&
			      dom_shutoff_untold(d);
			if (off)
				tell_left(d, HV_EVENT_STATE);
			dom_forget(d);
			if (ev->kind == HV_EVENT_DEFINED)
				dom_set_defined(d, ev->seconds * 1000000 +
						   ev->micros);
		}
		relist = true;
		break;
	case HV_EVENT_STATE:
		if (d)
			dom_set_state(d, ev->state, ev->seconds * 1000000 +
					 ev->micros);
		/* A domain we do not know yet; a new QEMU (fetch its version);
		 * a stopped domain, which leaves if it was transient. */
		relist = !d || ev->state == HV_STATE_RUNNING ||
			 ev->state == HV_STATE_SHUTOFF;
		break;
	case HV_EVENT_LOST:
		if (ev->domain) {
			/* One domain's monitor: only its facts are unsure. */
			if (d)
				dom_forget(d);
			break;
		}
		/* Nothing cached can be trusted until the peer is back. */
		source_set_evented(src, false);
		source_set_error(src, "connection", -ENOTCONN,
				 "the connection to the peer was lost");
		forget_source(src);
		relist = true;
		break;
	case HV_EVENT_HYPERVISOR:
		if (d && ev->name && strcmp(ev->name, "agent-lifecycle") == 0)
			dom_agent_changed(d);
		break;
	}
	/* Told before the worker re-lists: a domain's own lines come before
	 * what hvfs says when it leaves. Sizes and times shown by stat() are
	 * asked again before readers learn of the change. */
	if (d) {
		tree_inval_attrs(d);
		tell(d, d->name, ev);
	} else {
		if (ev->domain)
			escaped = name_escape(ev->domain);
		publish(src, NULL, escaped, ev);
	}
	if (relist)
		kick(src);
	free(escaped);
	dom_unref(d);
}

static void on_event(void *userdata, const struct hv_event *ev)
{
	pthread_mutex_lock(&tell_lock);
	on_event_locked(userdata, ev);
	pthread_mutex_unlock(&tell_lock);
}

int tree_start(struct fuse_session *se)
{
	int r;

	for (size_t k = 0; k < sources_count(); k++) {
		if (source_conn(source_at(k))) {
			subscribe(source_at(k));
			refresh_source(source_at(k), false);
			prefetch(source_at(k), true);
			if (hvfs_opts.kernel_cache)
				prefetch(source_at(k), false);
		}
	}
	session = se;
	r = kept_start(se);
	if (r < 0)
		return r;
	for (size_t k = 0; k < sources_count(); k++) {
		struct source *s = source_at(k);

		if (pthread_create(&s->worker, NULL, worker, s) != 0)
			return -errno;
		s->worker_running = true;
		if (!source_conn(s))
			kick(s);
	}
	return 0;
}

void tree_stop(void)
{
	__atomic_store_n(&stopping, true, __ATOMIC_RELEASE);
	for (size_t k = 0; k < sources_count(); k++)
		kick(source_at(k));
	for (size_t k = 0; k < sources_count(); k++) {
		struct source *s = source_at(k);

		if (!s->worker_running)
			continue;
		pthread_join(s->worker, NULL);
		s->worker_running = false;
	}
	/* Prefetching ends within a deadline: every call has one. */
	pthread_mutex_lock(&prefetch_lock);
	while (prefetch_batches > 0)
		pthread_cond_wait(&prefetch_cond, &prefetch_lock);
	pthread_mutex_unlock(&prefetch_lock);
	kept_stop();
	session = NULL;
}

void tree_forget_entry(fuse_ino_t parent, const char *name)
{
	if (session)
		fuse_lowlevel_notify_inval_entry(session, parent, name,
						 strlen(name));
}
