/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The domain table: which domains the tree shows, under which names, and in
 * which slots. Two sorted arrays index the same live domains, by tree name
 * (lookup, readdir) and by slot (every operation on an inode).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hvfs.h"

static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;
/* Serialises refreshes, so two of them never race to add one domain. */
static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;

static struct source **sources;
static size_t n_sources;

static struct fuse_session *session; /* for invalidations, once mounted */

static struct dom **by_name; /* sorted by name */
static struct dom **by_slot; /* sorted by slot */
static size_t n_doms;
static uint64_t next_slot = 1;

int tree_add_source(const char *uri, const char *label, char **ret_error)
{
	struct hv_options o = { .timeout_ms = hvfs_opts.timeout_ms };
	struct source *s, **n;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = hv_open(uri, &o, &s->conn, ret_error);
	if (r < 0) {
		free(s);
		return r;
	}
	s->label = strdup(label ? label : hv_driver_name(s->conn));
	n = reallocarray(sources, n_sources + 1, sizeof(*sources));
	if (!s->label || !n) {
		hv_close(s->conn);
		free(s->label);
		free(s);
		return -ENOMEM;
	}
	sources = n;
	sources[n_sources++] = s;
	return 0;
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
		free(sources[i]->label);
		free(sources[i]);
	}
	free(sources);
	sources = NULL;
	n_sources = 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(struct dom *const *)a)->name,
		      (*(struct dom *const *)b)->name);
}

static int cmp_slot(const void *a, const void *b)
{
	uint64_t x = (*(struct dom *const *)a)->slot;
	uint64_t y = (*(struct dom *const *)b)->slot;

	return x < y ? -1 : x > y;
}

/* Caller holds tree_lock. */
static struct dom *find_name_locked(const char *name)
{
	struct dom key = { .name = (char *)name }, *kp = &key, **p;

	if (!n_doms)
		return NULL;
	p = bsearch(&kp, by_name, n_doms, sizeof(*by_name), cmp_name);
	return p ? *p : NULL;
}

struct dom *tree_find_name(const char *name)
{
	struct dom *d;

	pthread_mutex_lock(&tree_lock);
	d = find_name_locked(name);
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

int tree_entries(struct entry **ret, size_t *ret_n)
{
	struct entry *e;
	size_t n;

	pthread_mutex_lock(&tree_lock);
	n = n_doms;
	e = calloc(n ? n : 1, sizeof(*e));
	for (size_t i = 0; e && i < n; i++) {
		e[i].name = strdup(by_name[i]->name);
		e[i].ino = ino_make(by_name[i]->slot, FK_DIR, 0);
		e[i].dir = true;
		if (!e[i].name) {
			entries_free(e, i);
			e = NULL;
		}
	}
	pthread_mutex_unlock(&tree_lock);
	if (!e)
		return -ENOMEM;
	*ret = e;
	*ret_n = n;
	return 0;
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

struct seen {
	struct source *src;
	char *hv_name;
	char *name; /* escaped */
	bool clash;
};

static int cmp_seen(const void *a, const void *b)
{
	return strcmp(((const struct seen *)a)->name,
		      ((const struct seen *)b)->name);
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

/*
 * Rebuilds the table from `seen`: a domain keeps its slot as long as its
 * source, driver name and tree name stay the same. Sources whose listing
 * failed keep the domains they had (their files then report the failure).
 */
static int reconcile(struct seen *seen, size_t n_seen, const bool *failed,
		     char ***ret_gone, size_t *ret_n_gone)
{
	char **gone = NULL;
	size_t n_gone = 0;
	struct dom **names, **slots;
	size_t n = 0, cap = n_seen;

	pthread_mutex_lock(&tree_lock);
	for (size_t i = 0; i < n_doms; i++)
		for (size_t k = 0; k < n_sources; k++)
			if (failed[k] && by_name[i]->src == sources[k])
				cap++;
	names = calloc(cap ? cap : 1, sizeof(*names));
	slots = calloc(cap ? cap : 1, sizeof(*slots));
	if (!names || !slots) {
		pthread_mutex_unlock(&tree_lock);
		free(names);
		free(slots);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n_doms; i++)
		by_name[i]->gone = true;
	for (size_t i = 0; i < n_seen; i++) {
		struct dom *d = find_name_locked(seen[i].name);

		if (d && d->gone && d->src == seen[i].src &&
		    strcmp(d->hv_name, seen[i].hv_name) == 0) {
			d->refs++;
			d->gone = false;
		} else {
			d = dom_new(seen[i].src, seen[i].hv_name, seen[i].name);
			if (!d)
				continue;
			d->slot = next_slot++;
		}
		names[n++] = d;
	}
	for (size_t i = 0; i < n_doms; i++)
		for (size_t k = 0; k < n_sources; k++)
			if (failed[k] && by_name[i]->src == sources[k]) {
				by_name[i]->refs++;
				by_name[i]->gone = false;
				names[n++] = by_name[i];
			}
	/* Drop the old table's references; domains not taken over are gone. */
	if (n_doms)
		gone = calloc(n_doms, sizeof(*gone));
	for (size_t i = 0; i < n_doms; i++) {
		struct dom *d = by_name[i];

		if (d->gone && gone && (gone[n_gone] = strdup(d->name)))
			n_gone++;
		if (d->gone)
			dom_release_watchers(d);
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
	pthread_mutex_unlock(&tree_lock);
	*ret_gone = gone;
	*ret_n_gone = n_gone;
	return 0;
}

bool source_evented(struct source *s)
{
	return __atomic_load_n(&s->evented, __ATOMIC_ACQUIRE);
}

static void set_evented(struct source *s, bool on)
{
	__atomic_store_n(&s->evented, on, __ATOMIC_RELEASE);
}

int tree_refresh(bool only_unevented)
{
	struct seen *seen = NULL;
	size_t n_seen = 0, n_gone = 0;
	char **gone = NULL;
	bool *failed, any = !only_unevented;
	int r = 0;

	for (size_t k = 0; k < n_sources && !any; k++)
		any = !source_evented(sources[k]);
	if (!any)
		return 0;
	pthread_mutex_lock(&refresh_lock);
	failed = calloc(n_sources ? n_sources : 1, sizeof(*failed));
	if (!failed) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < n_sources; k++) {
		struct hv_domain_info *info = NULL;
		struct seen *ns;
		char *err = NULL;
		size_t n = 0;
		int q;

		q = hv_list_domains(sources[k]->conn, &info, &n, &err);
		if (q < 0) {
			hvfs_log(LOG_WARNING, "%s: listing domains: %s",
				 hv_uri(sources[k]->conn),
				 err ? err : strerror(-q));
			failed[k] = true;
			free(err);
			continue;
		}
		if (sources[k]->subscribed)
			set_evented(sources[k], true);
		ns = reallocarray(seen, n_seen + n + 1, sizeof(*seen));
		if (!ns) {
			free(info);
			r = -ENOMEM;
			goto out;
		}
		seen = ns;
		for (size_t i = 0; i < n; i++) {
			struct seen *s = &seen[n_seen];

			*s = (struct seen){ .src = sources[k] };
			s->hv_name = strdup(info[i].name);
			s->name = tree_escape_name(info[i].name);
			if (!s->hv_name || !s->name) {
				free(s->hv_name);
				free(s->name);
				continue;
			}
			n_seen++;
		}
		free(info);
	}

	/* A name two sources share is shown as NAME@LABEL for both. */
	if (n_seen)
		qsort(seen, n_seen, sizeof(*seen), cmp_seen);
	for (size_t i = 0; i + 1 < n_seen; i++)
		if (strcmp(seen[i].name, seen[i + 1].name) == 0)
			seen[i].clash = seen[i + 1].clash = true;
	for (size_t i = 0; i < n_seen; i++) {
		char *qualified;

		if (!seen[i].clash)
			continue;
		if (asprintf(&qualified, "%s@%s", seen[i].name,
			     seen[i].src->label) < 0)
			continue;
		free(seen[i].name);
		seen[i].name = qualified;
	}
	r = reconcile(seen, n_seen, failed, &gone, &n_gone);
out:
	for (size_t i = 0; i < n_seen; i++) {
		free(seen[i].hv_name);
		free(seen[i].name);
	}
	free(seen);
	free(failed);
	pthread_mutex_unlock(&refresh_lock);
	/* With no lock held: the kernel may call us back while it works. */
	for (size_t i = 0; i < n_gone; i++) {
		if (session)
			fuse_lowlevel_notify_inval_entry(session, FUSE_ROOT_ID,
							 gone[i],
							 strlen(gone[i]));
		free(gone[i]);
	}
	free(gone);
	return r;
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
	hvfs_log(LOG_ERR, "%s: %s: %s (%s)", d->name, op,
		 msg ? msg : strerror(-err), ename ? ename : "?");
	pthread_mutex_lock(&d->lock);
	free(d->error);
	d->error = text;
	pthread_mutex_unlock(&d->lock);
}

/* ---- the worker thread: refreshes and prefetches off the event path ---- */

#define PREFETCH_THREADS 8
#define RETRY_MS_MIN 500
#define RETRY_MS_MAX 8000

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick_cond = PTHREAD_COND_INITIALIZER;
static bool kicked, stopping;
static pthread_t worker_thread;
static bool worker_running;

void tree_kick(void)
{
	pthread_mutex_lock(&kick_lock);
	kicked = true;
	pthread_cond_signal(&kick_cond);
	pthread_mutex_unlock(&kick_lock);
}

struct prefetch {
	struct dom **doms;
	size_t n, next;
	pthread_mutex_t lock;
};

static void *prefetch_thread(void *arg)
{
	struct prefetch *p = arg;

	for (;;) {
		struct dom *d = NULL;

		pthread_mutex_lock(&p->lock);
		if (p->next < p->n)
			d = p->doms[p->next++];
		pthread_mutex_unlock(&p->lock);
		if (!d)
			return NULL;
		dom_prefetch(d);
	}
}

/*
 * Fetches what no domain of an evented source has cached yet, several at a
 * time: the peers answer concurrent calls (libvirt multiplexes one
 * connection, each QMP monitor has its own).
 */
static void prefetch_all(void)
{
	struct prefetch p = { .lock = PTHREAD_MUTEX_INITIALIZER };
	pthread_t threads[PREFETCH_THREADS];
	size_t started = 0;

	pthread_mutex_lock(&tree_lock);
	p.doms = calloc(n_doms ? n_doms : 1, sizeof(*p.doms));
	for (size_t i = 0; p.doms && i < n_doms; i++) {
		struct dom *d = by_slot[i];
		bool need;

		if (!source_evented(d->src))
			continue;
		pthread_mutex_lock(&d->lock);
		need = !d->state_known || !d->uuid ||
		       (!d->version && d->state != HV_STATE_SHUTOFF);
		pthread_mutex_unlock(&d->lock);
		if (need) {
			d->refs++;
			p.doms[p.n++] = d;
		}
	}
	pthread_mutex_unlock(&tree_lock);
	for (; started < PREFETCH_THREADS && started < p.n; started++)
		if (pthread_create(&threads[started], NULL, prefetch_thread,
				   &p) != 0)
			break;
	if (!started)
		prefetch_thread(&p);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	for (size_t i = 0; i < p.n; i++)
		dom_unref(p.doms[i]);
	free(p.doms);
}

static void *worker(void *arg)
{
	int retry_ms = 0;

	for (;;) {
		bool lost = false;

		pthread_mutex_lock(&kick_lock);
		if (retry_ms > 0 && !kicked && !stopping) {
			struct timespec t;

			clock_gettime(CLOCK_REALTIME, &t);
			t.tv_sec += retry_ms / 1000;
			t.tv_nsec += (retry_ms % 1000) * 1000000L;
			if (t.tv_nsec >= 1000000000L) {
				t.tv_sec++;
				t.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&kick_cond, &kick_lock, &t);
		}
		while (retry_ms == 0 && !kicked && !stopping)
			pthread_cond_wait(&kick_cond, &kick_lock);
		kicked = false;
		pthread_mutex_unlock(&kick_lock);
		if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE))
			return NULL;

		tree_refresh(false);
		prefetch_all();
		/* A source that lost its peer is retried with backoff until a
		 * listing succeeds (and its driver has re-subscribed). */
		for (size_t k = 0; k < n_sources; k++)
			lost |= sources[k]->subscribed && !source_evented(sources[k]);
		if (!lost)
			retry_ms = 0;
		else if (retry_ms == 0)
			retry_ms = RETRY_MS_MIN;
		else if (retry_ms < RETRY_MS_MAX)
			retry_ms *= 2;
	}
}

static void on_event(void *userdata, const struct hv_event *ev)
{
	struct source *src = userdata;
	struct dom *d = ev->domain ? tree_find_hv(src, ev->domain) : NULL;
	char *escaped = NULL;

	switch (ev->kind) {
	case HV_EVENT_DEFINED:
	case HV_EVENT_UNDEFINED:
		if (d)
			dom_forget(d);
		tree_kick();
		break;
	case HV_EVENT_STATE:
		if (d) {
			dom_set_state(d, ev->state);
			if (ev->state == HV_STATE_RUNNING)
				tree_kick(); /* a new QEMU: fetch its version */
		} else {
			tree_kick(); /* a domain we do not know yet */
		}
		break;
	case HV_EVENT_LOST:
		/* Nothing cached can be trusted until the peer is back. */
		set_evented(src, false);
		pthread_mutex_lock(&tree_lock);
		for (size_t i = 0; i < n_doms; i++)
			if (by_slot[i]->src == src && by_slot[i] != d)
				dom_forget(by_slot[i]);
		pthread_mutex_unlock(&tree_lock);
		if (d)
			dom_forget(d);
		tree_kick();
		break;
	case HV_EVENT_HYPERVISOR:
		break;
	}
	if (!d && ev->domain)
		escaped = tree_escape_name(ev->domain);
	events_publish(d, d ? d->name : escaped, ev);
	free(escaped);
	dom_unref(d);
}

int tree_start(struct fuse_session *se)
{
	for (size_t k = 0; k < n_sources; k++) {
		int r = hv_subscribe(sources[k]->conn, on_event, sources[k]);

		if (r < 0) {
			hvfs_log(LOG_NOTICE, "%s: no events (%s): every read "
				 "asks the peer", hv_uri(sources[k]->conn),
				 strerror(-r));
			continue;
		}
		sources[k]->subscribed = true;
		set_evented(sources[k], true);
	}
	tree_refresh(false);
	prefetch_all();
	session = se;
	if (pthread_create(&worker_thread, NULL, worker, NULL) != 0)
		return -errno;
	worker_running = true;
	return 0;
}

void tree_stop(void)
{
	if (!worker_running)
		return;
	pthread_mutex_lock(&kick_lock);
	__atomic_store_n(&stopping, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&kick_cond);
	pthread_mutex_unlock(&kick_lock);
	pthread_join(worker_thread, NULL);
	worker_running = false;
	session = NULL;
}
