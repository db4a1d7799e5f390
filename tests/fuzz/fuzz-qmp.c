/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: QMP framing and message classification (lib/qmp-codec.h).
 *
 * Input: one byte K, then K bytes of chunk lengths, then the byte stream a
 * monitor would send. The stream is fed to one decoder whole and to another
 * in chunks of (length byte + 1) bytes, the lengths used in a cycle (K == 0:
 * one chunk), so split points are fuzzed too. Both decoders must yield the
 * same messages (and the same reasons for refusing lines); every message
 * must keep the codec's contract and survive a round trip through its JSON
 * text. The whole stream is also given to qmpc_json_parse_object(), the
 * parser of what users write.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "qmp-codec.h"
#include "fuzz.h"

#define RESULTS_MAX 256

struct result {
	int r;
	struct qmpc_msg m;
	const char *why; /* after -EPROTO */
};

struct results {
	struct result v[RESULTS_MAX];
	size_t n;
};

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool msg_eq(const struct qmpc_msg *a, const struct qmpc_msg *b)
{
	return a->kind == b->kind && a->has_id == b->has_id && a->id == b->id &&
	       a->major == b->major && a->minor == b->minor &&
	       a->micro == b->micro && str_eq(a->json, b->json) &&
	       str_eq(a->error_class, b->error_class) &&
	       str_eq(a->desc, b->desc) && str_eq(a->event, b->event) &&
	       a->seconds == b->seconds && a->micros == b->micros;
}

/* What qmp.c relies on, message by message. */
static void check_msg(const struct qmpc_msg *m)
{
	struct qmpc_msg again = {0};
	char *line = NULL;
	int r, e;

	switch (m->kind) {
	case QMP_MSG_GREETING:
		ASSERT(!m->json && !m->error_class && !m->event);
		return;
	case QMP_MSG_RETURN:
		ASSERT(m->json && !m->error_class && !m->event);
		/* The text we hand on parses back to the same value. */
		r = asprintf(&line, "{\"return\":%s}", m->json);
		break;
	case QMP_MSG_ERROR:
		ASSERT(m->json && m->error_class && m->desc && !m->event);
		e = qmp_error_to_errno(m->error_class);
		ASSERT(e < 0 && e > -512);
		r = asprintf(&line, "{\"error\":%s}", m->json);
		break;
	case QMP_MSG_EVENT:
		ASSERT(m->event && !m->error_class);
		if (!m->json)
			return;
		r = asprintf(&line, "{\"event\":\"x\",\"data\":%s}", m->json);
		break;
	default:
		ASSERT(!"unknown kind");
		return;
	}
	if (r < 0)
		return;
	r = qmpc_msg_parse(line, strlen(line), &again);
	/* Nesting one level deeper may cross QMP_JSON_DEPTH_MAX. */
	if (r == -EPROTO) {
		free(line);
		return;
	}
	ASSERT(r == 0);
	ASSERT(again.kind == m->kind);
	ASSERT(str_eq(again.json, m->json));
	ASSERT(str_eq(again.error_class, m->error_class));
	ASSERT(str_eq(again.desc, m->desc));
	qmpc_msg_release(&again);
	free(line);
}

static void keep(struct results *res, int r, struct qmpc_msg *m, const char *why)
{
	if (r == 0)
		return;
	ASSERT(r == 1 || r == -EPROTO || r == -ENOMEM);
	if (r == 1)
		check_msg(m);
	if (r == -EPROTO)
		ASSERT(why && *why);
	if (res->n < RESULTS_MAX) {
		res->v[res->n].r = r;
		res->v[res->n].why = r == -EPROTO ? why : NULL;
		res->v[res->n].m = *m; /* takes the strings */
		res->n++;
	} else {
		qmpc_msg_release(m);
	}
	memset(m, 0, sizeof(*m));
}

/* Feeds buf[0..len) as qmp.c does: until every byte is consumed. */
static void feed(struct qmpc_decoder *d, struct results *res, const char *buf,
		 size_t len)
{
	while (len > 0) {
		struct qmpc_msg m = {0};
		size_t n = 0;
		int r;

		r = qmpc_decoder_feed(d, buf, len, &n, &m);
		ASSERT(n > 0 && n <= len);
		ASSERT(d->len <= QMP_LINE_MAX && d->len <= d->cap);
		keep(res, r, &m, d->why);
		buf += n;
		len -= n;
	}
}

static void release(struct results *res)
{
	for (size_t i = 0; i < res->n; i++)
		qmpc_msg_release(&res->v[i].m);
	res->n = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct results whole, chunked;
	struct qmpc_decoder d;
	const uint8_t *lens;
	const char *s;
	size_t k, len, i = 0;
	json_object *o = NULL;

	if (size < 1)
		return 0;
	k = data[0];
	if (k > size - 1)
		k = size - 1;
	lens = data + 1;
	s = (const char *)data + 1 + k;
	len = size - 1 - k;

	qmpc_decoder_init(&d);
	feed(&d, &whole, s, len);
	qmpc_decoder_release(&d);

	qmpc_decoder_init(&d);
	for (size_t off = 0; off < len;) {
		size_t n = k ? (size_t)lens[i++ % k] + 1 : len - off;

		if (n > len - off)
			n = len - off;
		feed(&d, &chunked, s + off, n);
		off += n;
	}
	qmpc_decoder_release(&d);

	ASSERT(whole.n == chunked.n);
	for (size_t j = 0; j < whole.n; j++) {
		ASSERT(whole.v[j].r == chunked.v[j].r);
		ASSERT(msg_eq(&whole.v[j].m, &chunked.v[j].m));
		ASSERT(str_eq(whole.v[j].why, chunked.v[j].why));
	}
	release(&whole);
	release(&chunked);

	if (qmpc_json_parse_object(s, len, &o) == 0) {
		ASSERT(json_object_is_type(o, json_type_object));
		json_object_put(o);
	}
	return 0;
}
