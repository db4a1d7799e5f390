/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rich tree: qmp, query/, block/, cpus, memory and screen.png. Nothing
 * here knows a QEMU version: query/ is whatever query-qmp-schema says this
 * domain's QEMU has, and the other files read the members they need from
 * QMP's own replies.
 *
 * Families of files (query/NAME, block/NAME/...) carry in their inode's sub
 * the index of NAME in a per-domain table that only grows, so a sub keeps
 * meaning the same name for the domain's whole life: an inode the kernel
 * kept from an older QEMU is either still right or missing, never another
 * command or device.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "rich.h"

#define NAMES_MAX 0xffffu /* what a sub can index */
#define JSON_OUT                                             \
	(JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | \
	 JSON_C_TO_STRING_NOSLASHESCAPE)

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

void rich_release(struct dom *d)
{
	struct rich *r = d->rich;

	if (!r)
		return;
	for (size_t i = 0; i < r->n_names; i++)
		free(r->names[i]);
	free(r->names);
	free(r->queries);
	free(r->fetch_error);
	free(r->fetch_subs);
	pthread_cond_destroy(&r->fetched);
	free(r);
	d->rich = NULL;
}

/* Caller holds d->lock. */
static struct rich *rich_of(struct dom *d)
{
	if (!d->rich && (d->rich = calloc(1, sizeof(*d->rich))))
		pthread_cond_init(&d->rich->fetched, NULL);
	return d->rich;
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

static int intern(struct dom *d, const char *name)
{
	int r;

	pthread_mutex_lock(&d->lock);
	r = intern_locked(d, name);
	pthread_mutex_unlock(&d->lock);
	return r;
}

/* The name a sub stands for (malloc'd), or NULL. */
static char *name_of(struct dom *d, unsigned sub)
{
	char *name = NULL;

	pthread_mutex_lock(&d->lock);
	if (d->rich && sub < d->rich->n_names)
		name = strdup(d->rich->names[sub]);
	pthread_mutex_unlock(&d->lock);
	return name;
}

/* ---- QMP through hv.h ---- */

static bool not_running(struct dom *d)
{
	enum hv_state s;

	return dom_state(d, &s, NULL) == 0 && s == HV_STATE_SHUTOFF;
}

/* Runs a QMP command; *ret gets its return value. A domain that is not
 * running is -ENODATA whatever the driver said. */
static int run(struct dom *d, const char *command, const char *args,
	       json_object **ret, char **ret_error)
{
	char *text = NULL;
	json_object *o;
	int r;

	r = hv_qmp_command(d->src->conn, d->hv_name, command, args, &text,
			   ret_error);
	if (r < 0 && r != -ENODATA && not_running(d))
		r = hv_error(ret_error, -ENODATA, "%s: not running",
			     d->hv_name);
	if (r < 0)
		return r;
	o = json_tokener_parse(text);
	if (!o && strcmp(text, "null") != 0) { /* json-c's null is NULL */
		free(text);
		return hv_error(ret_error, -EPROTO, "%s: bad JSON", command);
	}
	free(text);
	*ret = o;
	return 0;
}

/* Outputs are written only on success (asprintf() leaves its pointer
 * undefined when it fails), here and in every function of this file. */
static int pretty(json_object *o, char **ret, size_t *ret_len)
{
	const char *s = json_object_to_json_string_ext(o, JSON_OUT);
	char *text;

	if (!s || asprintf(&text, "%s\n", s) < 0)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}

/* QEMU's refusal in a reply object: its class's errno, and its "desc" in
 * *ret_desc (borrowed from reply); 0 when reply is no "error" reply. */
static int refusal(json_object *reply, const char **ret_desc)
{
	json_object *e, *cls = NULL, *desc = NULL;

	if (!reply || !json_object_object_get_ex(reply, "error", &e))
		return 0;
	json_object_object_get_ex(e, "class", &cls);
	json_object_object_get_ex(e, "desc", &desc);
	*ret_desc = desc ? json_object_get_string(desc) : "QEMU refused";
	return hv_qmp_error_errno(json_object_get_string(cls));
}

/* ---- qmp ---- */

int rich_write_qmp(struct dom *d, const char *buf, size_t len, char **ret_reply,
		   size_t *ret_reply_len, char **ret_error)
{
	json_tokener *tok;
	json_object *cmd, *ex, *reply;
	const char *desc;
	char *text = NULL, *out;
	size_t end;
	int r;

	if (len > RICH_QMP_MAX)
		return hv_error(ret_error, -EFBIG,
				"a QMP command is at most %u bytes",
				RICH_QMP_MAX);
	if (memchr(buf, '\0', len))
		return hv_error(ret_error, -EINVAL,
				"NUL byte in a QMP command");
	tok = json_tokener_new();
	if (!tok)
		return -ENOMEM;
	cmd = json_tokener_parse_ex(tok, buf, (int)len);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (cmd && end < len && strchr(" \t\r\n", buf[end]))
		end++;
	if (!cmd || end != len || !json_object_is_type(cmd, json_type_object) ||
	    !json_object_object_get_ex(cmd, "execute", &ex) ||
	    !json_object_is_type(ex, json_type_string)) {
		json_object_put(cmd);
		return hv_error(ret_error, -EINVAL,
				"not one JSON object with a string "
				"\"execute\" member");
	}
	r = hv_qmp(d->src->conn, d->hv_name,
		   json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN),
		   &text, ret_error);
	if (r < 0) {
		json_object_put(cmd);
		return r;
	}
	/* The exchange worked even when QEMU refused: record the refusal. */
	reply = json_tokener_parse(text);
	r = refusal(reply, &desc);
	if (r < 0) {
		char *op = NULL;

		if (asprintf(&op, "qmp %s", json_object_get_string(ex)) >= 0)
			dom_set_error(d, op, r, desc);
		free(op);
	}
	json_object_put(reply);
	json_object_put(cmd);
	r = asprintf(&out, "%s\n", text);
	free(text);
	if (r < 0)
		return -ENOMEM;
	*ret_reply = out;
	*ret_reply_len = strlen(out);
	return 0;
}

/* ---- query/ ---- */

/* Whether a command's arg-type lets it run without arguments. */
static bool argless(json_object *types, json_object *command)
{
	json_object *at, *members;
	size_t n;

	if (!json_object_object_get_ex(command, "arg-type", &at))
		return true;
	if (!json_object_object_get_ex(types, json_object_get_string(at),
				       &members))
		return false;
	n = json_object_array_length(members);
	for (size_t i = 0; i < n; i++)
		if (!json_object_object_get_ex(
			    json_object_array_get_idx(members, i), "default",
			    NULL))
			return false; /* a mandatory member */
	return true;
}

/* Whether a name from the peer is a path component as it is (QAPI's names
 * all are): "..", "a/b", a newline, "%41" are not, and are left out. */
static bool plain_name(const char *name)
{
	char *escaped = tree_escape_name(name);
	bool plain = escaped && strcmp(escaped, name) == 0;

	free(escaped);
	return plain;
}

static int cmp_sub_names(const void *a, const void *b, void *arg)
{
	char **names = arg;

	return strcmp(names[*(const unsigned *)a], names[*(const unsigned *)b]);
}

/*
 * Asks QEMU for its schema: every query-* command that runs without
 * arguments, as subs sorted by name.
 */
static int fetch_queries(struct dom *d, unsigned **ret, size_t *ret_n,
			 char **ret_error)
{
	json_object *schema = NULL, *types;
	unsigned *subs = NULL;
	size_t n = 0, len;
	int r;

	r = run(d, "query-qmp-schema", NULL, &schema, ret_error);
	if (r < 0)
		return r;
	if (!json_object_is_type(schema, json_type_array)) {
		json_object_put(schema);
		return hv_error(ret_error, -EPROTO,
				"query-qmp-schema: not an array");
	}
	types = json_object_new_object();
	len = json_object_array_length(schema);
	subs = calloc(len ? len : 1, sizeof(*subs));
	if (!types || !subs) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		json_object *e = json_object_array_get_idx(schema, i), *mt, *nm,
			    *members;

		if (json_object_object_get_ex(e, "meta-type", &mt) &&
		    strcmp(json_object_get_string(mt), "object") == 0 &&
		    json_object_object_get_ex(e, "name", &nm) &&
		    json_object_object_get_ex(e, "members", &members))
			json_object_object_add(types,
					       json_object_get_string(nm),
					       json_object_get(members));
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; r == 0 && i < len; i++) {
		json_object *e = json_object_array_get_idx(schema, i), *mt, *nm;
		const char *name;
		int sub;

		if (!json_object_object_get_ex(e, "meta-type", &mt) ||
		    strcmp(json_object_get_string(mt), "command") != 0 ||
		    !json_object_object_get_ex(e, "name", &nm))
			continue;
		name = json_object_get_string(nm);
		if (strncmp(name, "query-", 6) != 0 ||
		    !plain_name(name + 6) || !argless(types, e))
			continue;
		sub = intern_locked(d, name + 6);
		if (sub == -ENOSPC)
			continue;
		if (sub < 0)
			r = sub;
		else
			subs[n++] = sub;
	}
	if (r == 0)
		qsort_r(subs, n, sizeof(*subs), cmp_sub_names, d->rich->names);
	pthread_mutex_unlock(&d->lock);
out:
	json_object_put(types);
	json_object_put(schema);
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
	json_object *cmd = json_object_new_object(), *reply, *v;
	const char *desc;
	char *command = NULL, *text = NULL;
	int r;

	if (!cmd || asprintf(&command, "query-%s", arg) < 0) {
		json_object_put(cmd);
		return -ENOMEM;
	}
	json_object_object_add(cmd, "execute", json_object_new_string(command));
	free(command);
	r = hv_qmp(d->src->conn, d->hv_name,
		   json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN),
		   &text, ret_error);
	json_object_put(cmd);
	if (r < 0 && r != -ENODATA && not_running(d))
		r = hv_error(ret_error, -ENODATA, "%s: not running",
			     d->hv_name);
	if (r < 0)
		return r;
	reply = json_tokener_parse(text);
	free(text);
	if (refusal(reply, &desc) < 0)
		r = hv_error(ret_error, -ENODATA, "%s", desc);
	else if (json_object_object_get_ex(reply, "return", &v))
		r = pretty(v, ret, ret_len);
	else
		r = hv_error(ret_error, -EPROTO, "query-%s: unexpected reply",
			     arg);
	json_object_put(reply);
	return r;
}

/* ---- block/ ---- */

static const char *member(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/*
 * A device's directory name (malloc'd, escaped), the same for its
 * query-block and its query-blockstats element: the drive's "device"; else
 * the qdev id (the ID of a /machine/peripheral/ID/... path, or the whole
 * qdev); else the node name.
 */
static char *block_name(json_object *e)
{
	static const char peripheral[] = "/machine/peripheral/";
	const char *name = member(e, "device");
	char *id = NULL, *escaped;

	if (!*name && *(name = member(e, "qdev")) &&
	    strncmp(name, peripheral, sizeof(peripheral) - 1) == 0) {
		const char *p = name + sizeof(peripheral) - 1;

		id = strndup(p, strcspn(p, "/"));
		if (!id)
			return NULL;
		name = id;
	}
	if (!*name) {
		json_object *in;

		name = member(e, "node-name");
		if (!*name && json_object_object_get_ex(e, "inserted", &in))
			name = member(in, "node-name");
	}
	escaped = *name ? tree_escape_name(name) : NULL;
	free(id);
	return escaped;
}

/* The elements of query-block (or -blockstats) with their names, in order;
 * a name met twice keeps its first element. The functions that fill one
 * write it only on success, so callers start from {0}, which
 * blocks_release() accepts. */
struct blocks {
	json_object *list;
	char **names; /* NULL for an element without a name */
	size_t n;
};

static void blocks_release(struct blocks *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->names[i]);
	free(b->names);
	json_object_put(b->list);
}

static int blocks_get(struct dom *d, const char *command, struct blocks *ret,
		      char **ret_error)
{
	struct blocks b = {0};
	int r;

	r = run(d, command, NULL, &b.list, ret_error);
	if (r < 0)
		return r;
	if (!json_object_is_type(b.list, json_type_array)) {
		json_object_put(b.list);
		return hv_error(ret_error, -EPROTO, "%s: not an array",
				command);
	}
	b.n = json_object_array_length(b.list);
	b.names = calloc(b.n ? b.n : 1, sizeof(*b.names));
	if (!b.names) {
		json_object_put(b.list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b.n; i++) {
		b.names[i] = block_name(json_object_array_get_idx(b.list, i));
		for (size_t j = 0; b.names[i] && j < i; j++) {
			if (b.names[j] && strcmp(b.names[i], b.names[j]) == 0) {
				free(b.names[i]);
				b.names[i] = NULL;
			}
		}
	}
	*ret = b;
	return 0;
}

/* The element named name, or NULL. */
static json_object *blocks_find(const struct blocks *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->names[i] && strcmp(b->names[i], name) == 0)
			return json_object_array_get_idx(b->list, i);
	return NULL;
}

/* The current block devices; none when the domain is not running. */
static int block_devices(struct dom *d, struct blocks *ret, char **ret_error)
{
	int r = blocks_get(d, "query-block", ret, ret_error);

	if (r == -ENODATA) {
		memset(ret, 0, sizeof(*ret));
		return 0;
	}
	return r;
}

static int read_block(struct dom *d, const char *command, const char *arg,
		      char **ret, size_t *ret_len, char **ret_error)
{
	struct blocks b = {0};
	json_object *e;
	int r = blocks_get(d, command, &b, ret_error);

	if (r < 0)
		return r;
	e = blocks_find(&b, arg);
	if (e)
		r = pretty(e, ret, ret_len);
	else
		r = hv_error(ret_error, -ENOENT, "%s: no block device %s",
			     command, arg);
	blocks_release(&b);
	return r;
}

int rich_read_block_info(struct dom *d, const char *arg, char **ret,
			 size_t *ret_len, char **ret_error)
{
	return read_block(d, "query-block", arg, ret, ret_len, ret_error);
}

int rich_read_block_stats(struct dom *d, const char *arg, char **ret,
			  size_t *ret_len, char **ret_error)
{
	return read_block(d, "query-blockstats", arg, ret, ret_len, ret_error);
}

/* ---- cpus, memory, screen.png ---- */

int rich_read_cpus(struct dom *d, char **ret, size_t *ret_len, char **ret_error)
{
	json_object *list = NULL;
	char *text = NULL;
	size_t len = 0, n;
	FILE *f;
	int r;

	r = run(d, "query-cpus-fast", NULL, &list, ret_error);
	if (r < 0)
		return r;
	f = open_memstream(&text, &len);
	if (!f) {
		json_object_put(list);
		return -ENOMEM;
	}
	n = json_object_is_type(list, json_type_array)
		    ? json_object_array_length(list)
		    : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(list, i), *idx, *tid;

		if (json_object_object_get_ex(c, "cpu-index", &idx) &&
		    json_object_object_get_ex(c, "thread-id", &tid))
			fprintf(f, "%lld %lld\n",
				(long long)json_object_get_int64(idx),
				(long long)json_object_get_int64(tid));
	}
	json_object_put(list);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}

static uint64_t member_u64(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_uint64(v);
}

int rich_read_memory(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	json_object *o = NULL;
	uint64_t bytes;
	char *text;
	int r;

	/* With a balloon: what the guest has now; else what it was given. */
	r = run(d, "query-balloon", NULL, &o, ret_error);
	if (r == 0) {
		bytes = member_u64(o, "actual");
	} else if (r == -ENODEV) { /* DeviceNotActive: no balloon */
		if (ret_error) {
			free(*ret_error);
			*ret_error = NULL;
		}
		r = run(d, "query-memory-size-summary", NULL, &o, ret_error);
		if (r < 0)
			return r;
		bytes = member_u64(o, "base-memory") +
			member_u64(o, "plugged-memory");
	} else {
		return r;
	}
	json_object_put(o);
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
	return hv_set_memory(d->src->conn, d->hv_name, bytes, ret_error);
}

int rich_read_screen(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	int r = hv_screenshot(d->src->conn, d->hv_name, ret, ret_len,
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
		char *name = name_of(d, subs[i]);

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
	struct blocks b = {0};
	int r = block_devices(d, &b, NULL);

	for (size_t i = 0; r == 0 && i < b.n; i++) {
		int sub;

		if (!b.names[i])
			continue;
		sub = intern(d, b.names[i]);
		if (sub == -ENOSPC)
			continue;
		r = sub < 0 ? sub
			    : entries_add(e, n, b.names[i],
					ino_make(d->slot, FK_BLOCK_DEV, sub),
					true);
	}
	blocks_release(&b);
	return r;
}

int rich_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n)
{
	struct entry *e = NULL;
	size_t n = 0;
	int r = 0;

	switch (ino_kind(dir)) {
	case FK_DIR:
		for (unsigned k = 1; r == 0 && k < FK_COUNT; k++) {
			if (file_types[k].family ||
			    file_kind_by_name(d, file_types[k].name) < 0)
				continue;
			r = entries_add(&e, &n, file_types[k].name,
				      ino_make(d->slot, k, 0),
				      file_types[k].dir);
		}
		break;
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
	if (r < 0) {
		entries_free(e, n);
		return r;
	}
	*ret = e;
	*ret_n = n;
	return 0;
}

int rich_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret)
{
	unsigned kind = ino_kind(dir);
	struct entry *e = NULL;
	size_t n = 0;
	int k, r;

	if (kind == FK_DIR) {
		k = file_kind_by_name(d, name);
		if (k < 0)
			return k;
		*ret = ino_make(d->slot, k, 0);
		return 0;
	}
	if (kind == FK_BLOCK_DEV) {
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
	if (!file_kind_is_dir(kind))
		return -ENOTDIR;
	/* query/ and block/: the listing as it is now. */
	r = rich_entries(d, dir, &e, &n);
	if (r < 0)
		return r;
	r = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(e[i].name, name) == 0) {
			*ret = e[i].ino;
			r = 0;
			break;
		}
	}
	entries_free(e, n);
	return r;
}

int rich_check(struct dom *d, fuse_ino_t ino, char **ret_arg)
{
	unsigned kind = ino_kind(ino), sub = ino_sub(ino);
	char *name;
	int r;

	if (kind >= FK_COUNT)
		return -ENOENT;
	if (!file_types[kind].family) {
		if (kind != FK_DIR && file_types[kind].name &&
		    file_kind_by_name(d, file_types[kind].name) < 0)
			return -ENOENT;
		if (ret_arg)
			*ret_arg = NULL;
		return 0;
	}
	name = name_of(d, sub);
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
		struct blocks b = {0};

		r = block_devices(d, &b, NULL);
		if (r == 0) {
			if (!blocks_find(&b, name))
				r = -ENOENT;
			blocks_release(&b);
		}
	}
	if (r < 0 || !ret_arg)
		free(name);
	else
		*ret_arg = name;
	return r;
}
