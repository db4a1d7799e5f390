/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The domain table: which hosts and domains the tree shows, under which
 * names, and in which slots. Two sorted arrays index the same live domains,
 * by (host, tree name) for lookup and readdir, and by slot for every
 * operation on an inode.
 *
 * Each source keeps the last listing of its domains that worked; the table
 * is rebuilt from all of them whenever one changes, so a source that is
 * slow or down never holds up another one. Each source has a worker thread
 * of its own that opens it, re-lists it, fetches what is not cached, and
 * retries with backoff while its peer is lost.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hvfs.h"

#define PREFETCH_THREADS 8
#define RETRY_MS_MIN 500
#define RETRY_MS_MAX 8000
/* A read does not re-list a source whose listing failed this recently: it
 * answers from the last listing, and the worker keeps retrying. */
#define FAILED_QUIET_MS 1000

static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;

static struct host **hosts;
static size_t n_hosts;
static struct source **sources;
static size_t n_sources;

static struct fuse_session *session; /* for invalidations, once mounted */
static bool stopping;                 /* atomic */

static struct dom **by_name; /* sorted by host, then name */
static struct dom **by_slot; /* sorted by slot */
static size_t n_doms;
static uint64_t next_slot = 1;

int64_t tree_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool tree_multi_host(void)
{
	return n_hosts > 1;
}

struct hv_conn *source_conn(struct source *s)
{
	return __atomic_load_n(&s->conn, __ATOMIC_ACQUIRE);
}

bool source_evented(struct source *s)
{
	return __atomic_load_n(&s->evented, __ATOMIC_ACQUIRE);
}

static void set_evented(struct source *s, bool on)
{
	__atomic_store_n(&s->evented, on, __ATOMIC_RELEASE);
}

static bool subscribed(struct source *s)
{
	return __atomic_load_n(&s->subscribed, __ATOMIC_ACQUIRE);
}

/* The level of the tree a host's domains are in: -1 (the root) or h. */
static int level_of(const struct host *h)
{
	return tree_multi_host() ? h->index : -1;
}

/* ---- hosts ---- */

/*
 * Sets (op non-NULL) or clears why s is unreachable, as its host's .error
 * shows it, and logs the change: a source that stays down is not logged
 * again at every retry.
 */
static void source_set_error(struct source *s, const char *op, int err,
			     const char *msg)
{
	struct host *h = s->host;
	const char *uri = s->uri;
	char *text = NULL;
	bool same;

	if (op) {
		char stamp[32];
		const char *ename = strerrorname_np(-err);
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (asprintf(&text, "%s %s %s: %s (%s)\n", stamp, op, uri,
			     msg ? msg : strerror(-err),
			     ename ? ename : "?") < 0)
			text = NULL;
	}
	pthread_mutex_lock(&h->lock);
	/* The same failure again: compare past the time stamp. */
	same = text && s->error && strcmp(strchr(text, ' '),
					  strchr(s->error, ' ')) == 0;
	if (!text && s->error)
		hvfs_log(LOG_NOTICE, "%s: %s is back", h->name, uri);
	else if (text && !same)
		hvfs_log(LOG_ERR, "%s: %.*s", h->name,
			 (int)strlen(strchr(text, ' ') + 2), /* no "\n" */
			 strchr(text, ' ') + 1);
	free(s->error);
	s->error = text;
	pthread_mutex_unlock(&h->lock);
}

static struct host *host_new(const char *name)
{
	struct host *h = calloc(1, sizeof(*h)), **n;

	if (!h || !(h->name = tree_escape_name(name)))
		goto fail;
	n = reallocarray(hosts, n_hosts + 1, sizeof(*hosts));
	if (!n)
		goto fail;
	hosts = n;
	h->index = (int)n_hosts;
	pthread_mutex_init(&h->lock, NULL);
	hosts[n_hosts++] = h;
	return h;
fail:
	if (h)
		free(h->name);
	free(h);
	return NULL;
}

/*
 * The host part of a URI "scheme://[user@]HOST[:PORT]/path", or "" when
 * it names the local host. A bracketed IPv6 address loses its brackets.
 */
static char *uri_host(const char *uri)
{
	const char *p = strstr(uri, "://"), *end;

	if (!p)
		return strdup("");
	p += 3;
	end = p + strcspn(p, "/?");
	for (const char *at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	if (*p == '[') {
		const char *close = memchr(p, ']', end - p);

		if (close)
			return strndup(p + 1, close - p - 1);
	}
	return strndup(p, strcspn(p, ":/?") < (size_t)(end - p) ?
				  strcspn(p, ":/?") : (size_t)(end - p));
}

static char *local_host_name(void)
{
	char name[HOST_NAME_MAX + 1] = "";

	if (gethostname(name, sizeof(name) - 1) < 0 || !name[0])
		strcpy(name, "localhost");
	return strdup(name);
}

int tree_add_source(const char *uri, const char *label)
{
	struct source *s = calloc(1, sizeof(*s)), **n;

	if (!s)
		return -ENOMEM;
	s->uri = strdup(uri);
	s->label = label ? strdup(label) : NULL;
	n = reallocarray(sources, n_sources + 1, sizeof(*sources));
	if (!s->uri || (label && !s->label) || !n) {
		free(s->uri);
		free(s->label);
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->list_lock, NULL);
	pthread_mutex_init(&s->kick_lock, NULL);
	pthread_cond_init(&s->kick_cond, NULL);
	sources = n;
	sources[n_sources++] = s;
	return 0;
}

/*
 * Every libvirt connection is a host of its own, named by its -c NAME, else
 * by its URI's host, else after this machine. QMP sources are on this
 * machine: they join the first libvirt connection to it, or a host named
 * after this machine.
 */
static int assign_hosts(void)
{
	struct host *local = NULL;

	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];
		const char *drv = hv_uri_driver(s->uri);
		char *name;

		if (!drv) {
			hvfs_log(LOG_ERR, "%s: no driver takes this URI", s->uri);
			return -EINVAL;
		}
		if (strcmp(drv, "qmp") == 0)
			continue;
		name = s->label ? strdup(s->label) : uri_host(s->uri);
		if (name && !*name && !s->label) {
			free(name);
			name = local_host_name();
		}
		if (!name)
			return -ENOMEM;
		for (size_t i = 0; i < n_hosts; i++)
			if (strcmp(hosts[i]->name, name) == 0) {
				hvfs_log(LOG_ERR, "two connections to host %s: "
					 "name them with -c NAME=URI", name);
				free(name);
				return -EINVAL;
			}
		s->host = host_new(name);
		free(name);
		if (!s->host || !(name = uri_host(s->uri)))
			return -ENOMEM;
		if (!local && !*name)
			local = s->host;
		free(name);
	}
	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];

		if (s->host)
			continue;
		if (!local) {
			char *name = local_host_name();

			for (size_t i = 0; name && i < n_hosts; i++)
				if (strcmp(hosts[i]->name, name) == 0) {
					hvfs_log(LOG_ERR, "a connection is "
						 "named %s, like this host: "
						 "name it otherwise", name);
					free(name);
					return -EINVAL;
				}
			local = name ? host_new(name) : NULL;
			free(name);
			if (!local)
				return -ENOMEM;
		}
		s->host = local;
	}
	for (size_t k = 0; k < n_sources; k++)
		if (!sources[k]->label &&
		    !(sources[k]->label = strdup(hv_uri_driver(sources[k]->uri))))
			return -ENOMEM;
	return 0;
}

/* Opens s; on failure records why in its host's .error. */
static int source_open(struct source *s)
{
	struct hv_options o = { .timeout_ms = hvfs_opts.timeout_ms };
	struct hv_conn *c = NULL;
	char *err = NULL;
	int r = hv_open(s->uri, &o, &c, &err);

	if (r < 0) {
		source_set_error(s, "connect", r, err);
		free(err);
		return r;
	}
	__atomic_store_n(&s->conn, c, __ATOMIC_RELEASE);
	return 0;
}

static void *open_thread(void *arg)
{
	source_open(arg);
	return NULL;
}

int tree_open(void)
{
	pthread_t *threads;
	bool *started;
	int r = assign_hosts();

	if (r < 0)
		return r;
	/* All at once: a slow host delays the mount by one deadline at most. */
	threads = calloc(n_sources, sizeof(*threads));
	started = calloc(n_sources, sizeof(*started));
	for (size_t k = 0; threads && started && k < n_sources; k++)
		started[k] = pthread_create(&threads[k], NULL, open_thread,
					    sources[k]) == 0;
	for (size_t k = 0; k < n_sources; k++) {
		if (started && started[k])
			pthread_join(threads[k], NULL);
		else
			source_open(sources[k]);
		if (!source_conn(sources[k]) && !tree_multi_host())
			r = -EIO;
	}
	free(threads);
	free(started);
	return r;
}

/* ---- domains ---- */

static void dom_free(struct dom *d)
{
	dom_release_watchers(d);
	pthread_mutex_destroy(&d->lock);
	free(d->name);
	free(d->hv_name);
	free(d->error);
	free(d->version);
	free(d->uuid);
	rich_release(d);
	free(d);
}

struct dom *dom_unref(struct dom *d)
{
	bool last;

	if (!d)
		return NULL;
	pthread_mutex_lock(&tree_lock);
	last = --d->refs == 0;
	pthread_mutex_unlock(&tree_lock);
	if (last)
		dom_free(d);
	return NULL;
}

static void listing_free(struct listed *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].hv_name);
		free(l[i].name);
	}
	free(l);
}

void tree_free(void)
{
	/* Close first: no driver thread may deliver an event after this. */
	for (size_t i = 0; i < n_sources; i++)
		sources[i]->conn = hv_close(sources[i]->conn);
	for (size_t i = 0; i < n_doms; i++)
		dom_unref(by_name[i]);
	free(by_name);
	free(by_slot);
	by_name = by_slot = NULL;
	n_doms = 0;
	for (size_t i = 0; i < n_sources; i++) {
		struct source *s = sources[i];

		listing_free(s->listing, s->n_listing);
		for (unsigned k = 0; k < SOURCE_LEFT_MAX; k++)
			free(s->left[k]);
		pthread_mutex_destroy(&s->list_lock);
		pthread_mutex_destroy(&s->kick_lock);
		pthread_cond_destroy(&s->kick_cond);
		free(s->uri);
		free(s->label);
		free(s->error);
		free(s);
	}
	free(sources);
	sources = NULL;
	n_sources = 0;
	for (size_t i = 0; i < n_hosts; i++) {
		pthread_mutex_destroy(&hosts[i]->lock);
		free(hosts[i]->name);
		free(hosts[i]);
	}
	free(hosts);
	hosts = NULL;
	n_hosts = 0;
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

	return cmp_host_name(x->src->host->index, x->name,
			     y->src->host->index, y->name);
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
		int c = cmp_host_name(host, name, d->src->host->index, d->name);

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
		d->refs++;
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
		d->refs++;
	}
	pthread_mutex_unlock(&tree_lock);
	return d;
}

struct dom *tree_find_hv(struct source *src, const char *hv_name)
{
	struct dom *d = NULL;

	pthread_mutex_lock(&tree_lock);
	for (size_t i = 0; i < n_doms && !d; i++)
		if (by_slot[i]->src == src &&
		    strcmp(by_slot[i]->hv_name, hv_name) == 0)
			d = by_slot[i];
	if (d)
		d->refs++;
	pthread_mutex_unlock(&tree_lock);
	return d;
}

fuse_ino_t tree_parent_of(struct dom *d)
{
	return top_ino(level_of(d->src->host), FK_DIR);
}

void entries_free(struct entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

char *tree_escape_name(const char *name)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t len = strlen(name);
	char *out = malloc(3 * len + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		unsigned c = p[i];
		size_t seq = 0;

		/* Length of a valid UTF-8 sequence starting here, or 0. */
		if (c >= 0xc2 && c <= 0xf4) {
			size_t need = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
			unsigned lo = 0x80, hi = 0xbf;

			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
			else if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
			seq = need;
			for (size_t k = 1; k < need; k++) {
				unsigned b = i + k < len ? p[i + k] : 0;

				if (b < (k == 1 ? lo : 0x80) ||
				    b > (k == 1 ? hi : 0xbf)) {
					seq = 0;
					break;
				}
			}
		}
		if (seq) {
			memcpy(o, p + i, seq);
			o += seq;
			i += seq;
			continue;
		}
		if (c < 0x20 || c == 0x7f || c >= 0x80 || c == '/' ||
		    c == '%' || (i == 0 && c == '.'))
			o += sprintf(o, "%%%02X", c);
		else
			*o++ = (char)c;
		i++;
	}
	*o = '\0';
	if (out[0] == '\0') {
		/* An empty name cannot be a directory entry. */
		free(out);
		out = strdup("%00");
	}
	return out;
}

/* ---- rebuilding the table from the listings ---- */

struct seen {
	struct source *src;
	const char *hv_name;
	char *name; /* the tree name: escaped, maybe NAME@label */
};

static int cmp_seen(const void *a, const void *b)
{
	const struct seen *x = a, *y = b;

	return cmp_host_name(x->src->host->index, x->name,
			     y->src->host->index, y->name);
}

static struct dom *dom_new(struct source *src, const char *hv_name,
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
	d->refs = 1; /* the table's */
	pthread_mutex_init(&d->lock, NULL);
	return d;
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
 * NAME@LABEL for both.
 */
static int rebuild_locked(struct gone **ret_gone, size_t *ret_n_gone)
{
	struct seen *seen;
	struct dom **names, **slots;
	struct gone *gone = NULL;
	size_t n_seen = 0, cap = 0, n = 0, n_gone = 0;
	int r = -ENOMEM;

	for (size_t k = 0; k < n_sources; k++)
		cap += sources[k]->n_listing;
	seen = calloc(cap ? cap : 1, sizeof(*seen));
	names = calloc(cap ? cap : 1, sizeof(*names));
	slots = calloc(cap ? cap : 1, sizeof(*slots));
	if (n_doms)
		gone = calloc(n_doms, sizeof(*gone));
	if (!seen || !names || !slots || (n_doms && !gone))
		goto out;
	for (size_t k = 0; k < n_sources; k++)
		for (size_t i = 0; i < sources[k]->n_listing; i++)
			seen[n_seen++] = (struct seen){
				.src = sources[k],
				.hv_name = sources[k]->listing[i].hv_name,
				.name = sources[k]->listing[i].name,
			};
	if (n_seen)
		qsort(seen, n_seen, sizeof(*seen), cmp_seen);
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
		d = find_name_locked(seen[i].src->host->index, name);
		if (d && !d->gone && d->src == seen[i].src &&
		    strcmp(d->hv_name, seen[i].hv_name) == 0) {
			d->refs++;
			d->gone = true; /* marks it taken over */
		} else {
			d = dom_new(seen[i].src, seen[i].hv_name, name);
			if (d)
				d->slot = next_slot++;
		}
		free(qualified);
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
				d->refs++;
				n_gone++;
			}
			dom_release_watchers(d);
		}
		if (--d->refs == 0)
			dom_free(d);
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

static void kick(struct source *s);

/* Publishes ev about d and remembers what it said. */
static void tell(struct dom *d, const char *name, const struct hv_event *ev)
{
	pthread_mutex_lock(&d->lock);
	if (ev->kind == HV_EVENT_STATE)
		d->told_shutoff = ev->state == HV_STATE_SHUTOFF;
	d->told_undefined = ev->kind == HV_EVENT_UNDEFINED;
	pthread_mutex_unlock(&d->lock);
	events_publish(d->src, d, name, ev);
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
 * d left the tree: its events files get its final state (shutoff) and its
 * leaving, unless the peer's own events just said so, then end.
 */
static void say_left(struct dom *d)
{
	bool shutoff, undefined;

	pthread_mutex_lock(&d->lock);
	shutoff = d->told_shutoff;
	undefined = d->told_undefined;
	pthread_mutex_unlock(&d->lock);
	if (!shutoff) {
		tell_left(d, HV_EVENT_STATE);
		undefined = false;
	}
	if (!undefined)
		tell_left(d, HV_EVENT_UNDEFINED);
	events_end_domain(d->slot);
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
	    tree_now_ms() - s->failed_ms < FAILED_QUIET_MS) {
		pthread_mutex_unlock(&s->list_lock);
		return -EAGAIN;
	}
	__atomic_add_fetch(&s->listings_begun, 1, __ATOMIC_RELEASE);
	r = hv_list_domains(c, &info, &n, &err);
	if (r < 0) {
		s->failed_ms = tree_now_ms();
		__atomic_add_fetch(&s->listings, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&s->list_lock);
		source_set_error(s, "list", r, err);
		free(err);
		return r;
	}
	s->failed_ms = 0;
	source_set_error(s, NULL, 0, NULL);
	if (subscribed(s))
		set_evented(s, true);
	l = calloc(n ? n : 1, sizeof(*l));
	for (size_t i = 0; l && i < n; i++) {
		l[n_l].hv_name = strdup(info[i].name);
		l[n_l].name = tree_escape_name(info[i].name);
		if (l[n_l].hv_name && l[n_l].name) {
			n_l++;
		} else {
			free(l[n_l].hv_name);
			free(l[n_l].name);
		}
	}
	free(info);
	if (!l) {
		__atomic_add_fetch(&s->listings, 1, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&s->list_lock);
		return -ENOMEM;
	}
	pthread_mutex_lock(&tree_lock);
	listing_free(s->listing, s->n_listing);
	s->listing = l;
	s->n_listing = n_l;
	r = rebuild_locked(&gone, &n_gone);
	pthread_mutex_unlock(&tree_lock);
	/* With no lock held: the kernel may call us back while it works. */
	for (size_t i = 0; i < n_gone; i++) {
		if (gone[i].renamed)
			events_end_domain(gone[i].dom->slot);
		else
			say_left(gone[i].dom);
		if (session)
			fuse_lowlevel_notify_inval_entry(session,
							 gone[i].parent,
							 gone[i].name,
							 strlen(gone[i].name));
		free(gone[i].name);
		dom_unref(gone[i].dom);
	}
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
	       tree_now_ms() < deadline_ms)
		usleep(10 * 1000);
	still = tree_find_slot(d->slot);
	dom_unref(still);
	return still != NULL;
}

void tree_refresh(int host, bool only_unevented)
{
	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];

		if (host >= 0 && s->host->index != host)
			continue;
		if (only_unevented && source_evented(s))
			continue;
		/* A subscribed source that lost its peer is its worker's to
		 * retry; meanwhile its last listing stands. */
		if (only_unevented && subscribed(s))
			continue;
		refresh_source(s, true);
	}
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
		 tree_multi_host() ? d->src->host->name : "",
		 tree_multi_host() ? "/" : "", d->name, op,
		 msg ? msg : strerror(-err), ename ? ename : "?");
	pthread_mutex_lock(&d->lock);
	free(d->error);
	d->error = text;
	pthread_mutex_unlock(&d->lock);
}

/* ---- the levels above the domains ---- */

static struct host *host_of_level(fuse_ino_t ino)
{
	int h = top_host(ino);

	if (!tree_multi_host())
		return h < 0 ? hosts[0] : NULL;
	return h >= 0 && (size_t)h < n_hosts ? hosts[h] : NULL;
}

bool tree_top_exists(fuse_ino_t ino)
{
	unsigned kind = ino_kind(ino);
	bool root = top_host(ino) < 0;

	if (ino_slot(ino) != 0)
		return false;
	if (ino == FUSE_ROOT_ID || kind == FK_EVENTS)
		return root || host_of_level(ino);
	if (kind == FK_DIR || kind == FK_ERROR)
		return host_of_level(ino) != NULL;
	return false;
}

int tree_top_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ret)
{
	struct host *h;
	struct dom *d;

	if (!tree_top_exists(parent))
		return -ENOENT;
	if (ino_kind(parent) != FK_DIR)
		return -ENOTDIR;
	if (strcmp(name, HVFS_TOP_EVENTS) == 0) {
		*ret = top_ino(top_host(parent), FK_EVENTS);
		return 0;
	}
	h = host_of_level(parent);
	if (!h) {
		/* The root of several hosts: a host's directory. */
		for (size_t i = 0; i < n_hosts; i++)
			if (strcmp(hosts[i]->name, name) == 0) {
				*ret = top_ino(hosts[i]->index, FK_DIR);
				return 0;
			}
		return -ENOENT;
	}
	if (strcmp(name, HVFS_TOP_ERROR) == 0) {
		*ret = top_ino(top_host(parent), FK_ERROR);
		return 0;
	}
	d = tree_find_name(h->index, name);
	if (!d) {
		/* A source without events: perhaps it appeared since. */
		tree_refresh(h->index, true);
		d = tree_find_name(h->index, name);
	}
	if (!d)
		return -ENOENT;
	*ret = ino_make(d->slot, FK_DIR, 0);
	dom_unref(d);
	return 0;
}

int entries_add(struct entry **e, size_t *n, const char *name, fuse_ino_t ino,
		bool dir)
{
	struct entry *ne = reallocarray(*e, *n + 1, sizeof(**e));

	if (!ne)
		return -ENOMEM;
	*e = ne;
	ne[*n] = (struct entry){ .name = strdup(name), .ino = ino, .dir = dir };
	if (!ne[*n].name)
		return -ENOMEM;
	(*n)++;
	return 0;
}

int tree_top_entries(fuse_ino_t dir, struct entry **ret, size_t *ret_n)
{
	struct host *h = host_of_level(dir);
	struct entry *e = NULL;
	size_t n = 0;
	int r = 0;

	if (!tree_top_exists(dir) || ino_kind(dir) != FK_DIR)
		return -ENOTDIR;
	if (!h) {
		for (size_t i = 0; i < n_hosts && !r; i++)
			r = entries_add(&e, &n, hosts[i]->name,
				      top_ino(hosts[i]->index, FK_DIR), true);
	} else {
		tree_refresh(h->index, true);
		pthread_mutex_lock(&tree_lock);
		for (size_t i = 0; i < n_doms && !r; i++)
			if (by_name[i]->src->host == h)
				r = entries_add(&e, &n, by_name[i]->name,
					      ino_make(by_name[i]->slot,
						       FK_DIR, 0), true);
		pthread_mutex_unlock(&tree_lock);
	}
	/* The level's own files, after the directories. */
	if (!r)
		r = entries_add(&e, &n, HVFS_TOP_EVENTS,
			      top_ino(top_host(dir), FK_EVENTS), false);
	if (!r && h)
		r = entries_add(&e, &n, HVFS_TOP_ERROR,
			      top_ino(top_host(dir), FK_ERROR), false);
	if (r < 0) {
		entries_free(e, n);
		return r;
	}
	*ret = e;
	*ret_n = n;
	return 0;
}

int tree_top_error(fuse_ino_t ino, char **ret, size_t *ret_len)
{
	struct host *h = host_of_level(ino);
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	if (!h || ino_kind(ino) != FK_ERROR)
		return -ENOENT;
	f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	for (size_t k = 0; k < n_sources; k++)
		if (sources[k]->host == h && sources[k]->error)
			fputs(sources[k]->error, f);
	pthread_mutex_unlock(&h->lock);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
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
	for (size_t k = 0; k < n_sources; k++)
		kick(sources[k]);
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
		dom_prefetch(d);
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
 * batch is done; else at once.
 */
static void prefetch(struct source *s, bool wait)
{
	struct prefetch *p;
	pthread_attr_t attr;
	unsigned started = 0;

	if (!source_evented(s) || !(p = calloc(1, sizeof(*p))))
		return;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_lock(&tree_lock);
	p->doms = calloc(n_doms ? n_doms : 1, sizeof(*p->doms));
	for (size_t i = 0; p->doms && i < n_doms; i++) {
		struct dom *d = by_slot[i];
		bool need;

		if (d->src != s || d->prefetching)
			continue;
		pthread_mutex_lock(&d->lock);
		need = !d->state_known || !d->uuid ||
		       (!d->version && d->state != HV_STATE_SHUTOFF);
		pthread_mutex_unlock(&d->lock);
		if (need) {
			d->refs++;
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
	set_evented(s, true);
	__atomic_store_n(&s->subscribed, true, __ATOMIC_RELEASE);
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
		lost = !source_conn(s) || (subscribed(s) && !source_evented(s));
		if (!lost)
			retry_ms = 0;
		else if (retry_ms == 0)
			retry_ms = RETRY_MS_MIN;
		else if (retry_ms < RETRY_MS_MAX)
			retry_ms *= 2;
	}
	return NULL;
}

static void on_event(void *userdata, const struct hv_event *ev)
{
	struct source *src = userdata;
	struct dom *d = ev->domain ? tree_find_hv(src, ev->domain) : NULL;
	char *escaped = NULL;
	bool relist = false, off = false, late;

	if (!d && ev->domain) {
		pthread_mutex_lock(&tree_lock);
		late = said_already_locked(src, ev);
		pthread_mutex_unlock(&tree_lock);
		if (late)
			return;
	}

	switch (ev->kind) {
	case HV_EVENT_DEFINED:
	case HV_EVENT_UNDEFINED:
		if (d) {
			/* An undefined domain that is off leaves: its final
			 * state comes first. */
			pthread_mutex_lock(&d->lock);
			off = ev->kind == HV_EVENT_UNDEFINED && !d->told_shutoff &&
			      d->state_known && d->state == HV_STATE_SHUTOFF;
			pthread_mutex_unlock(&d->lock);
			if (off)
				tell_left(d, HV_EVENT_STATE);
			dom_forget(d);
		}
		relist = true;
		break;
	case HV_EVENT_STATE:
		if (d)
			dom_set_state(d, ev->state);
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
		set_evented(src, false);
		source_set_error(src, "connection", -ENOTCONN,
				 "the connection to the peer was lost");
		pthread_mutex_lock(&tree_lock);
		for (size_t i = 0; i < n_doms; i++)
			if (by_slot[i]->src == src)
				dom_forget(by_slot[i]);
		pthread_mutex_unlock(&tree_lock);
		relist = true;
		break;
	case HV_EVENT_HYPERVISOR:
		break;
	}
	/* Told before the worker re-lists: a domain's own lines come before
	 * what hvfs says when it leaves. */
	if (d) {
		tell(d, d->name, ev);
	} else {
		if (ev->domain)
			escaped = tree_escape_name(ev->domain);
		events_publish(src, NULL, escaped, ev);
	}
	if (relist)
		kick(src);
	free(escaped);
	dom_unref(d);
}

int tree_start(struct fuse_session *se)
{
	for (size_t k = 0; k < n_sources; k++) {
		if (source_conn(sources[k])) {
			subscribe(sources[k]);
			refresh_source(sources[k], false);
			prefetch(sources[k], true);
		}
	}
	session = se;
	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];

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
	for (size_t k = 0; k < n_sources; k++)
		kick(sources[k]);
	for (size_t k = 0; k < n_sources; k++) {
		if (!sources[k]->worker_running)
			continue;
		pthread_join(sources[k]->worker, NULL);
		sources[k]->worker_running = false;
	}
	/* Prefetching ends within a deadline: every call has one. */
	pthread_mutex_lock(&prefetch_lock);
	while (prefetch_batches > 0)
		pthread_cond_wait(&prefetch_cond, &prefetch_lock);
	pthread_mutex_unlock(&prefetch_lock);
	session = NULL;
}
