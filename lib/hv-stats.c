/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Counters as hv.h hands them out: the builder both drivers fill, and the
 * functions over the result. One domain's counters are one allocation, so
 * that a few hundred domains with a hundred counters each cost a few hundred
 * mallocs, not tens of thousands.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "hv-driver.h"

static bool valid_key(const char *k, size_t len)
{
	if (len == 0 || len > HV_STAT_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (k[i] <= ' ' || k[i] >= 0x7f)
			return false;
	return true;
}

/* Appends len bytes and a NUL to b->buf; returns the offset or -1. */
static ssize_t append(struct hvd_stats_builder *b, const char *s, size_t len)
{
	size_t off = b->len;

	if (b->len + len + 1 > b->bufcap) {
		size_t cap = b->bufcap ? b->bufcap : 1024;
		char *p;

		while (b->len + len + 1 > cap)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p) {
			b->err = -ENOMEM;
			return -1;
		}
		b->buf = p;
		b->bufcap = cap;
	}
	memcpy(b->buf + b->len, s, len);
	b->buf[b->len + len] = '\0';
	b->len += len + 1;
	return (ssize_t)off;
}

void hvd_stats_add(struct hvd_stats_builder *b, const struct hv_stat *s)
{
	struct hv_stat e = *s;
	size_t klen = strlen(s->key);
	ssize_t off;

	if (b->err)
		return;
	if (!valid_key(s->key, klen) || s->type < HV_STAT_INT ||
	    s->type > HV_STAT_STRING) {
		b->err = -EPROTO;
		return;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 32;
		struct hv_stat *v = realloc(b->v, cap * sizeof(*v));

		if (!v) {
			b->err = -ENOMEM;
			return;
		}
		b->v = v;
		b->cap = cap;
	}
	off = append(b, s->key, klen);
	if (off < 0)
		return;
	e.key = (const char *)(uintptr_t)off;
	if (s->type == HV_STAT_STRING) {
		off = append(b, s->v.s, strlen(s->v.s));
		if (off < 0)
			return;
		e.v.s = (const char *)(uintptr_t)off;
	}
	b->v[b->n++] = e;
}

void hvd_stats_addf(struct hvd_stats_builder *b, struct hv_stat s,
		   const char *fmt, ...)
{
	char key[HV_STAT_KEY_MAX + 2];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(key, sizeof(key), fmt, ap);
	va_end(ap);
	if (n < 0 || n > HV_STAT_KEY_MAX) {
		if (!b->err)
			b->err = -EPROTO;
		return;
	}
	s.key = key;
	hvd_stats_add(b, &s);
}

void hvd_stats_builder_release(struct hvd_stats_builder *b)
{
	free(b->v);
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

int hvd_stats_pack(struct hvd_stats_builder *b, struct hv_stats *out)
{
	size_t head = b->n * sizeof(struct hv_stat);
	struct hv_stat *v;
	char *strs;
	int r = b->err;

	if (r < 0 || b->n == 0) {
		hvd_stats_builder_release(b);
		out->n = 0;
		out->stats = NULL;
		return r;
	}
	v = malloc(head + b->len);
	if (!v) {
		hvd_stats_builder_release(b);
		return -ENOMEM;
	}
	strs = (char *)v + head;
	memcpy(strs, b->buf, b->len);
	for (size_t i = 0; i < b->n; i++) {
		v[i] = b->v[i];
		v[i].key = strs + (uintptr_t)b->v[i].key;
		if (v[i].type == HV_STAT_STRING)
			v[i].v.s = strs + (uintptr_t)b->v[i].v.s;
	}
	out->n = b->n;
	out->stats = v;
	hvd_stats_builder_release(b);
	return 0;
}

struct hv_stats *hv_stats_free(struct hv_stats *v, size_t n)
{
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		free(v[i].stats);
	free(v);
	return NULL;
}

int hv_stat_format(const struct hv_stat *s, char *buf, size_t size)
{
	switch (s->type) {
	case HV_STAT_INT:
		return snprintf(buf, size, "%d", s->v.i);
	case HV_STAT_UINT:
		return snprintf(buf, size, "%u", s->v.ui);
	case HV_STAT_LLONG:
		return snprintf(buf, size, "%lld", (long long)s->v.l);
	case HV_STAT_ULLONG:
		return snprintf(buf, size, "%llu", (unsigned long long)s->v.ul);
	case HV_STAT_DOUBLE:
		return snprintf(buf, size, "%g", s->v.d);
	case HV_STAT_BOOLEAN:
		return snprintf(buf, size, "%d", s->v.b ? 1 : 0);
	case HV_STAT_STRING:
		return snprintf(buf, size, "%s", s->v.s);
	}
	return -EINVAL;
}

const struct hv_stat *hv_stats_find(const struct hv_stats *st,
				    const char *key)
{
	for (size_t i = 0; i < st->n; i++)
		if (strcmp(st->stats[i].key, key) == 0)
			return &st->stats[i];
	return NULL;
}
