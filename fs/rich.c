/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rich tree: qmp, query/, block/, cpus, memory and screen.png. What
 * QEMU's answers mean is lib/'s (hv.h: hv_query_list(), hv_block_devices(),
 * hv_vcpu_threads(), ...); here they become files. Nothing here knows a QEMU
 * version: query/ is whatever this domain's QEMU says it has.
 *
 * Families of files (query/NAME, block/NAME/...) carry in their inode's sub
 * the index of NAME in a per-domain table that only grows, so a sub keeps
 * meaning the same name for the domain's whole life: an inode the kernel
 * kept from an older QEMU is either still right or missing, never another
 * command or device.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "names.h"
#include "rich.h"

#define NAMES_MAX 0xffffu /* what a sub can index */

/* Guarded by the domain's lock. */
struct rich {
	char **names; /* sub -> name; append-only */
	size_t n_names;
	/* The argument-less query commands of the current QEMU (by sub),
	 * kept while qemu_gen stays and the source delivers events. */
	bool queries_known;
	uint64_t queries_qemu_gen;
	unsigned *queries;
	size_t n_queries;
	/* Single flight: one fetch of the list at a time; who asks meanwhile
	 * waits for it and takes its result (kept until the next fetch). */
	bool fetching;
	uint64_t fetches;    /* fetches that ended */
	pthread_cond_t fetched;
	int fetch_err;
	char *fetch_error;
	unsigned *fetch_subs;
	size_t fetch_n;
};

static void rich_free(void *ext)
{
	struct rich *r = ext;

	for (size_t i = 0; i < r->n_names; i++)
		free(r->names[i]);
	free(r->names);
	free(r->queries);
	free(r->fetch_error);
	free(r->fetch_subs);
	pthread_cond_destroy(&r->fetched);
	free(r);
}

/* Caller holds d->lock. d's table, made on first use; NULL on ENOMEM. */
static struct rich *rich_of(struct dom *d)
{
	struct rich *r = d->ext;

	if (!r && (r = calloc(1, sizeof(*r)))) {
		pthread_cond_init(&r->fetched, NULL);
		d->ext = r;
		d->ext_free = rich_free;
	}
	return r;
}

static unsigned *subs_dup(const unsigned *subs, size_t n)
{
	unsigned *copy = malloc((n ? n : 1) * sizeof(*copy));

	if (copy && n)
		memcpy(copy, subs, n * sizeof(*copy));
	return copy;
}

/* Caller holds d->lock. The sub of name, added if new; or -errno. */
static int intern_locked(struct dom *d, const char *name)
{
	struct rich *r = rich_of(d);
	char **n;

	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_names; i++)
		if (strcmp(r->names[i], name) == 0)
			return (int)i;
	if (r->n_names >= NAMES_MAX)
		return -ENOSPC;
	n = reallocarray(r->names, r->n_names + 1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	r->names = n;
	if (!(n[r->n_names] = strdup(name)))
		return -ENOMEM;
	return (int)r->n_names++;
}

int rich_intern(struct dom *d, const char *name)
{
	int r;

	pthread_mutex_lock(&d->lock);
	r = intern_locked(d, name);
	pthread_mutex_unlock(&d->lock);
	return r;
}

char *rich_sub_name(struct dom *d, unsigned sub)
{
	char *name = NULL;

	pthread_mutex_lock(&d->lock);
	struct rich *r = d->ext;

	if (r && sub < r->n_names)
		name = strdup(r->names[sub]);
	pthread_mutex_unlock(&d->lock);
	return name;
}

/* ---- QMP through hv.h ---- */

static bool not_running(struct dom *d)
{
	enum hv_state s;

	return dom_state(d, &s, NULL) == 0 && s == HV_STATE_SHUTOFF;
}

/* A failure of a domain that is not running is -ENODATA whatever the driver
 * said. Returns r, or that. */
static int unless_off(struct dom *d, int r, char **ret_error)
{
	if (r < 0 && r != -ENODATA && not_running(d))
		r = hv_error(ret_error, -ENODATA, "%s: not running",
			     d->hv_name);
	return r;
}

/* ---- qmp ---- */

int rich_write_qmp(struct dom *d, const char *buf, size_t len, char **ret_reply,
		   size_t *ret_reply_len, char **ret_error)
{
	struct hv_qmp_reply reply = { 0 };
	int r;

	if (len > RICH_QMP_MAX)
		return hv_error(ret_error, -EFBIG,
				"a QMP command is at most %u bytes",
				RICH_QMP_MAX);
	r = hv_qmp_exchange(dom_conn(d), d->hv_name, buf, len, &reply,
			    ret_error);
	if (r < 0)
		return r;
	/* The exchange worked even when QEMU refused: record the refusal. */
	if (reply.refusal < 0) {
		char *op = NULL;

		if (asprintf(&op, "qmp %s", reply.command) >= 0)
			dom_set_error(d, op, reply.refusal, reply.desc);
		free(op);
	}
	*ret_reply = reply.text;
	*ret_reply_len = strlen(reply.text);
	reply.text = NULL;
	hv_qmp_reply_release(&reply);
	return 0;
}

/* ---- query/ ---- */

/*
 * Asks QEMU for its argument-less queries, as subs in the order of their
 * names. A name that is no path component as it is (QAPI's names all are:
 * "..", "a/b", a newline, "%41" are not) is left out.
 */
static int fetch_queries(struct dom *d, unsigned **ret, size_t *ret_n,
			 char **ret_error)
{
	char **names = NULL;
	unsigned *subs;
	size_t n_names = 0, n = 0;
	int r;

	r = hv_query_list(dom_conn(d), d->hv_name, &names, &n_names,
			  ret_error);
	r = unless_off(d, r, ret_error);
	if (r < 0)
		return r;
	subs = calloc(n_names ? n_names : 1, sizeof(*subs));
	if (!subs) {
		hv_names_free(names, n_names);
		return -ENOMEM;
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; r == 0 && i < n_names; i++) {
		int sub;

		if (!name_is_plain(names[i]))
			continue;
		sub = intern_locked(d, names[i]);
		if (sub == -ENOSPC)
			continue;
		if (sub < 0)
			r = sub;
		else
			subs[n++] = sub;
	}
	pthread_mutex_unlock(&d->lock);
	hv_names_free(names, n_names);
	if (r < 0) {
		free(subs);
		return r;
	}
	*ret = subs;
	*ret_n = n;
	return 0;
}

/* Caller holds d->lock. Waits for the fetch in flight (its calls have
 * deadlines, and a peer that let one pass fails the next at once) and
 * returns a copy of its result. */
static int join_fetch(struct dom *d, struct rich *rc, unsigned **ret,
		      size_t *ret_n, char **ret_error)
{
	uint64_t seen = rc->fetches;

	while (rc->fetches == seen)
		pthread_cond_wait(&rc->fetched, &d->lock);
	if (rc->fetch_err < 0) {
		if (rc->fetch_error)
			hv_error(ret_error, rc->fetch_err, "%s",
				 rc->fetch_error);
		return rc->fetch_err;
	}
	*ret = subs_dup(rc->fetch_subs, rc->fetch_n);
	*ret_n = rc->fetch_n;
	return *ret ? 0 : -ENOMEM;
}

/*
 * The current QEMU's argument-less queries (subs), from the cache while it
 * holds; none when the domain is not running. Concurrent askers share one
 * fetch (the kernel serialises lookups of one name, so without it each
 * would wait for a hung QEMU in turn).
 */
static int queries(struct dom *d, unsigned **ret, size_t *ret_n,
		   char **ret_error)
{
	struct rich *rc;
	unsigned *subs = NULL;
	char *err = NULL;
	uint64_t gen, qgen;
	size_t n = 0;
	int r;

	pthread_mutex_lock(&d->lock);
	rc = rich_of(d);
	if (rc && rc->queries_known && rc->queries_qemu_gen == d->qemu_gen &&
	    source_evented(d->src)) {
		subs = subs_dup(rc->queries, rc->n_queries);
		if (subs) {
			*ret = subs;
			*ret_n = rc->n_queries;
		}
		pthread_mutex_unlock(&d->lock);
		return subs ? 0 : -ENOMEM;
	}
	if (rc && rc->fetching) {
		r = join_fetch(d, rc, ret, ret_n, ret_error);
		pthread_mutex_unlock(&d->lock);
		return r;
	}
	if (rc)
		rc->fetching = true;
	gen = d->gen;
	qgen = d->qemu_gen;
	pthread_mutex_unlock(&d->lock);
	if (!rc)
		return -ENOMEM;

	r = fetch_queries(d, &subs, &n, &err);
	if (r == -ENODATA) {
		r = 0;
		subs = NULL;
		n = 0;
	}
	pthread_mutex_lock(&d->lock);
	/* For those who waited. */
	free(rc->fetch_subs);
	free(rc->fetch_error);
	rc->fetch_subs = r == 0 ? subs_dup(subs, n) : NULL;
	rc->fetch_n = n;
	rc->fetch_err = r == 0 && !rc->fetch_subs ? -ENOMEM : r;
	rc->fetch_error = err ? strdup(err) : NULL;
	rc->fetching = false;
	rc->fetches++;
	pthread_cond_broadcast(&rc->fetched);
	/* Kept only if nothing happened meanwhile (as dom.c does). */
	if (r == 0 && source_evented(d->src) && d->gen == gen &&
	    d->qemu_gen == qgen) {
		unsigned *copy = subs_dup(subs, n);

		if (copy) {
			free(rc->queries);
			rc->queries = copy;
			rc->n_queries = n;
			rc->queries_known = true;
			rc->queries_qemu_gen = qgen;
		}
	}
	pthread_mutex_unlock(&d->lock);
	if (r < 0) {
		free(subs);
		if (err)
			hv_error(ret_error, r, "%s", err);
		free(err);
		return r;
	}
	free(err);
	*ret = subs;
	*ret_n = n;
	return 0;
}

static bool has_sub(const unsigned *subs, size_t n, unsigned sub)
{
	for (size_t i = 0; i < n; i++)
		if (subs[i] == sub)
			return true;
	return false;
}

/*
 * QEMU's refusal of an argument-less query (no SEV on this host, no balloon
 * in this VM, a feature this machine lacks) is an answer about this VM, not
 * a failure: ENODATA, which the error file does not record (docs/design.md).
 */
int rich_read_query(struct dom *d, const char *arg, char **ret, size_t *ret_len,
		    char **ret_error)
{
	int r = hv_query(dom_conn(d), d->hv_name, arg, ret, ret_len,
			 ret_error);

	return unless_off(d, r, ret_error);
}

/* ---- block/ ---- */

/* The current block devices' names, escaped; none when the domain is not
 * running. */
static int block_devices(struct dom *d, char ***ret, size_t *ret_n,
			 char **ret_error)
{
	char **names = NULL;
	size_t n = 0;
	int r = hv_block_devices(dom_conn(d), d->hv_name, &names, &n,
				 ret_error);

	r = unless_off(d, r, ret_error);
	if (r == -ENODATA) {
		*ret = NULL;
		*ret_n = 0;
		return 0;
	}
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		char *escaped = name_escape(names[i]);

		if (!escaped) {
			hv_names_free(names, n);
			return -ENOMEM;
		}
		free(names[i]);
		names[i] = escaped;
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

static bool has_name(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* arg: a device's name as block/ shows it (escaped). */
static int read_block(struct dom *d,
		      int (*fn)(struct hv_conn *, const char *, const char *,
				char **, size_t *, char **),
		      const char *arg, char **ret, size_t *ret_len,
		      char **ret_error)
{
	char *device = name_unescape(arg);
	int r;

	if (!device)
		return -ENOMEM;
	r = fn(dom_conn(d), d->hv_name, device, ret, ret_len, ret_error);
	free(device);
	return unless_off(d, r, ret_error);
}

int rich_read_block_info(struct dom *d, const char *arg, char **ret,
			 size_t *ret_len, char **ret_error)
{
	return read_block(d, hv_block_info, arg, ret, ret_len, ret_error);
}

int rich_read_block_stats(struct dom *d, const char *arg, char **ret,
			  size_t *ret_len, char **ret_error)
{
	return read_block(d, hv_block_stats, arg, ret, ret_len, ret_error);
}

/* ---- cpus, memory, screen.png ---- */

int rich_read_cpus(struct dom *d, char **ret, size_t *ret_len, char **ret_error)
{
	struct hv_vcpu_thread *v = NULL;
	char *text = NULL;
	size_t len = 0, n = 0;
	FILE *f;
	int r;

	r = hv_vcpu_threads(dom_conn(d), d->hv_name, &v, &n, ret_error);
	r = unless_off(d, r, ret_error);
	if (r < 0)
		return r;
	f = open_memstream(&text, &len);
	if (!f) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%lld %lld\n", (long long)v[i].index,
			(long long)v[i].thread_id);
	free(v);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}

int rich_read_memory(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	uint64_t bytes = 0;
	char *text;
	int r;

	r = hv_memory(dom_conn(d), d->hv_name, &bytes, ret_error);
	r = unless_off(d, r, ret_error);
	if (r < 0)
		return r;
	if (asprintf(&text, "%llu\n", (unsigned long long)bytes) < 0)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}

int rich_write_memory(struct dom *d, const char *buf, size_t len,
		      char **ret_reply, size_t *ret_reply_len, char **ret_error)
{
	uint64_t bytes = 0;
	size_t n = len;

	if (n > 0 && buf[n - 1] == '\n')
		n--;
	if (n == 0 || n > 20)
		return hv_error(ret_error, -EINVAL,
				"expected a byte count in decimal");
	for (size_t i = 0; i < n; i++) {
		unsigned digit = (unsigned char)buf[i] - '0';

		if (digit > 9 || bytes > (UINT64_MAX - digit) / 10)
			return hv_error(ret_error, -EINVAL,
					"expected a byte count in decimal");
		bytes = bytes * 10 + digit;
	}
	if (bytes == 0)
		return hv_error(ret_error, -EINVAL, "the memory cannot be 0");
	return hv_set_memory(dom_conn(d), d->hv_name, bytes, ret_error);
}

int rich_read_screen(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	int r = hv_screenshot(dom_conn(d), d->hv_name, ret, ret_len,
			      ret_error);

	if (r < 0 && r != -ENODATA && not_running(d))
		r = -ENODATA;
	return r;
}

/* ---- lookup and listing ---- */

static int query_entries(struct dom *d, struct entry **e, size_t *n)
{
	unsigned *subs = NULL;
	char *err = NULL;
	size_t ns = 0;
	int r = queries(d, &subs, &ns, &err);

	if (r < 0 && r != -ENOMEM)
		dom_set_error(d, "list query", r, err);
	free(err);

	for (size_t i = 0; r == 0 && i < ns; i++) {
		char *name = rich_sub_name(d, subs[i]);

		r = name ? entries_add(e, n, name,
				     ino_make(d->slot, FK_QUERY, subs[i]),
				     false)
			 : -ENOMEM;
		free(name);
	}
	free(subs);
	return r;
}

static int block_entries(struct dom *d, struct entry **e, size_t *n)
{
	char **names = NULL;
	size_t nn = 0;
	int r = block_devices(d, &names, &nn, NULL);

	for (size_t i = 0; r == 0 && i < nn; i++) {
		int sub = rich_intern(d, names[i]);

		if (sub == -ENOSPC)
			continue;
		r = sub < 0 ? sub
			    : entries_add(e, n, names[i],
					ino_make(d->slot, FK_BLOCK_DEV, sub),
					true);
	}
	hv_names_free(names, nn);
	return r;
}

int rich_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n)
{
	struct entry *e = NULL;
	size_t n = 0;
	int r = 0;

	switch (ino_kind(dir)) {
	case FK_QUERY_DIR:
		r = query_entries(d, &e, &n);
		break;
	case FK_BLOCK_DIR:
		r = block_entries(d, &e, &n);
		break;
	case FK_BLOCK_DEV:
		r = rich_check(d, dir, NULL);
		if (r == 0)
			r = entries_add(
				&e, &n, "info",
				ino_make(d->slot, FK_BLOCK_INFO, ino_sub(dir)),
				false);
		if (r == 0)
			r = entries_add(
				&e, &n, "stats",
				ino_make(d->slot, FK_BLOCK_STATS, ino_sub(dir)),
				false);
		break;
	default:
		r = -ENOTDIR;
	}
	return entries_give(e, n, r, ret, ret_n);
}

int rich_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret)
{
	struct entry *e = NULL;
	size_t n = 0;
	int r;

	if (ino_kind(dir) == FK_BLOCK_DEV) {
		r = rich_check(d, dir, NULL);
		if (r < 0)
			return r;
		if (strcmp(name, "info") == 0)
			*ret = ino_make(d->slot, FK_BLOCK_INFO, ino_sub(dir));
		else if (strcmp(name, "stats") == 0)
			*ret = ino_make(d->slot, FK_BLOCK_STATS, ino_sub(dir));
		else
			return -ENOENT;
		return 0;
	}
	/* query/ and block/: the listing as it is now. */
	r = rich_entries(d, dir, &e, &n);
	if (r < 0)
		return r;
	r = entries_find(e, n, name, ret);
	entries_free(e, n);
	return r;
}

int rich_check(struct dom *d, fuse_ino_t ino, char **ret_arg)
{
	unsigned kind = ino_kind(ino), sub = ino_sub(ino);
	char *name;
	int r;

	if (kind != FK_QUERY && kind != FK_BLOCK_DEV && kind != FK_BLOCK_INFO &&
	    kind != FK_BLOCK_STATS)
		return -ENOENT;
	name = rich_sub_name(d, sub);
	if (!name)
		return -ENOENT;
	if (kind == FK_QUERY) {
		unsigned *subs = NULL;
		size_t n = 0;

		r = queries(d, &subs, &n, NULL);
		if (r == 0 && !has_sub(subs, n, sub))
			r = -ENOENT;
		free(subs);
	} else {
		char **names = NULL;
		size_t n = 0;

		r = block_devices(d, &names, &n, NULL);
		if (r == 0 && !has_name(names, n, name))
			r = -ENOENT;
		hv_names_free(names, n);
	}
	if (r < 0 || !ret_arg)
		free(name);
	else
		*ret_arg = name;
	return r;
}
