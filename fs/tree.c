/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The domain table: which domains the tree shows, under which names, and in
 * which slots. Two sorted arrays index the same live domains, by tree name
 * (lookup, readdir) and by slot (every operation on an inode).
 */
#include <errno.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "hvfs.h"

static pthread_mutex_t tree_lock = PTHREAD_MUTEX_INITIALIZER;
/* Serialises refreshes, so two of them never race to add one domain. */
static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;

static struct source **sources;
static size_t n_sources;

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
	pthread_mutex_destroy(&d->lock);
	free(d->name);
	free(d->hv_name);
	free(d->error);
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
	for (size_t i = 0; i < n_doms; i++)
		dom_unref(by_name[i]);
	free(by_name);
	free(by_slot);
	by_name = by_slot = NULL;
	n_doms = 0;
	for (size_t i = 0; i < n_sources; i++) {
		hv_close(sources[i]->conn);
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
	p = bsearch(&kp, by_slot, n_doms, sizeof(*by_slot), cmp_slot);
	if (p) {
		d = *p;
		d->refs++;
	}
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
static int reconcile(struct seen *seen, size_t n_seen, const bool *failed)
{
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
	for (size_t i = 0; i < n_doms; i++)
		if (--by_name[i]->refs == 0)
			dom_free(by_name[i]);
	memcpy(slots, names, n * sizeof(*names));
	qsort(names, n, sizeof(*names), cmp_name);
	qsort(slots, n, sizeof(*slots), cmp_slot);
	free(by_name);
	free(by_slot);
	by_name = names;
	by_slot = slots;
	n_doms = n;
	pthread_mutex_unlock(&tree_lock);
	return 0;
}

int tree_refresh(void)
{
	struct seen *seen = NULL;
	size_t n_seen = 0;
	bool *failed;
	int r = 0;

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
	r = reconcile(seen, n_seen, failed);
out:
	for (size_t i = 0; i < n_seen; i++) {
		free(seen[i].hv_name);
		free(seen[i].name);
	}
	free(seen);
	free(failed);
	pthread_mutex_unlock(&refresh_lock);
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
