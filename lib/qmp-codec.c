/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The QMP codec: line framing and message classification, no I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <json-c/json.h>

#include "qmp-codec.h"

/*
 * A buffer that grew past this for one long line is given back afterwards,
 * so that 1000 idle connections do not each keep megabytes. Such buffers are
 * mapped by the decoder itself (mmap/mremap/munmap) rather than malloc'd:
 * malloc keeps a freed block of that size for reuse in the arena of the
 * thread that freed it, so a peer that sends long lines would leave up to
 * QMP_LINE_MAX resident per arena, long after the line failed.
 */
#define KEEP_BUF_MAX (64u << 10)

/* The one place where QMP error classes become errno values. */
int qmp_error_to_errno(const char *error_class)
{
	static const struct {
		const char *class;
		int err;
	} map[] = {
		{ "CommandNotFound", -EOPNOTSUPP },
		{ "DeviceNotFound", -ENOENT },
		/* e.g. query-balloon without a balloon: no such device. */
		{ "DeviceNotActive", -ENODEV },
		{ "GenericError", -EIO },
		{ "KVMMissingCap", -EOPNOTSUPP },
	};

	for (size_t i = 0; error_class && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].class, error_class) == 0)
			return map[i].err;
	return -EIO;
}

void qmpc_msg_release(struct qmpc_msg *m)
{
	if (!m)
		return;
	free(m->json);
	free(m->error_class);
	free(m->desc);
	free(m->event);
	memset(m, 0, sizeof(*m));
}

static int dup_text(json_object *o, char **ret)
{
	const char *s = json_object_to_json_string_ext(o,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	char *t = s ? strdup(s) : NULL;

	if (!t)
		return -ENOMEM;
	*ret = t;
	return 0;
}

static int dup_str(json_object *o, char **ret)
{
	char *t;

	if (!json_object_is_type(o, json_type_string))
		return -EPROTO;
	t = strdup(json_object_get_string(o));
	if (!t)
		return -ENOMEM;
	*ret = t;
	return 0;
}

/* An integer member of an object; 0 when it is absent. */
static int get_int(json_object *o, const char *key, int64_t *ret)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v)) {
		*ret = 0;
		return 0;
	}
	if (!json_object_is_type(v, json_type_int))
		return -EPROTO;
	*ret = json_object_get_int64(v);
	return 0;
}

static json_object *get_obj(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_object))
		return NULL;
	return v;
}

static int parse_greeting(json_object *qmp, struct qmpc_msg *m)
{
	/* get_obj(NULL, ...) is NULL: the chain needs only one test. */
	json_object *ver = get_obj(get_obj(qmp, "version"), "qemu");
	int64_t v[3];

	if (!ver)
		return -EPROTO;
	if (get_int(ver, "major", &v[0]) < 0 ||
	    get_int(ver, "minor", &v[1]) < 0 ||
	    get_int(ver, "micro", &v[2]) < 0)
		return -EPROTO;
	m->kind = QMP_MSG_GREETING;
	m->major = (int)v[0];
	m->minor = (int)v[1];
	m->micro = (int)v[2];
	return 0;
}

static int parse_error(json_object *err, struct qmpc_msg *m)
{
	json_object *v;
	int r;

	if (!json_object_is_type(err, json_type_object) ||
	    !json_object_object_get_ex(err, "class", &v))
		return -EPROTO;
	m->kind = QMP_MSG_ERROR;
	r = dup_str(v, &m->error_class);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(err, "desc", &v))
		r = dup_str(v, &m->desc);
	else
		r = (m->desc = strdup("")) ? 0 : -ENOMEM;
	if (r < 0)
		return r;
	return dup_text(err, &m->json);
}

static int parse_event(json_object *o, json_object *name, struct qmpc_msg *m)
{
	json_object *data, *ts;
	int r;

	m->kind = QMP_MSG_EVENT;
	r = dup_str(name, &m->event);
	if (r < 0)
		return r;
	if (json_object_object_get_ex(o, "data", &data)) {
		if (!json_object_is_type(data, json_type_object))
			return -EPROTO;
		r = dup_text(data, &m->json);
		if (r < 0)
			return r;
	}
	ts = get_obj(o, "timestamp");
	if (ts && (get_int(ts, "seconds", &m->seconds) < 0 ||
		   get_int(ts, "microseconds", &m->micros) < 0))
		return -EPROTO;
	return 0;
}

static int classify(json_object *o, struct qmpc_msg *m)
{
	json_object *v;

	if (json_object_object_get_ex(o, "id", &v) &&
	    json_object_is_type(v, json_type_int)) {
		m->has_id = true;
		m->id = json_object_get_int64(v);
	}
	if ((v = get_obj(o, "QMP")))
		return parse_greeting(v, m);
	if (json_object_object_get_ex(o, "return", &v)) {
		m->kind = QMP_MSG_RETURN;
		return dup_text(v, &m->json);
	}
	if (json_object_object_get_ex(o, "error", &v))
		return parse_error(v, m);
	if (json_object_object_get_ex(o, "event", &v))
		return parse_event(o, v, m);
	return -EPROTO;
}

/* qmpc_json_parse_object(), and on -EINVAL what was wrong (static text). */
static int parse_object(const char *text, size_t len, json_object **ret,
			const char **ret_why)
{
	enum json_tokener_error jerr;
	json_tokener *tok;
	json_object *o;
	size_t end;

	/* json-c would stop at a NUL and take the rest for trailing text. */
	if (len > QMP_LINE_MAX) {
		*ret_why = "a message longer than QMP_LINE_MAX";
		return -EINVAL;
	}
	if (memchr(text, '\0', len)) {
		*ret_why = "a NUL byte inside a message";
		return -EINVAL;
	}
	tok = json_tokener_new_ex(QMP_JSON_DEPTH_MAX);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!o || jerr != json_tokener_success) {
		/* json-c's own words: "nesting too deep", "invalid utf-8
		 * string", "unexpected character", ... (static strings). */
		*ret_why = jerr == json_tokener_continue ?
				   "an incomplete JSON value" :
				   json_tokener_error_desc(jerr);
	} else if (!json_object_is_type(o, json_type_object)) {
		*ret_why = "JSON that is not an object";
	} else {
		end = json_tokener_get_parse_end(tok);
		while (end < len && strchr(" \t\r\n", text[end]))
			end++;
		if (end == len) {
			json_tokener_free(tok);
			*ret = o;
			return 0;
		}
		*ret_why = "text after the JSON object";
	}
	json_object_put(o);
	json_tokener_free(tok);
	return -EINVAL;
}

int qmpc_json_parse_object(const char *text, size_t len, json_object **ret)
{
	const char *why;

	return parse_object(text, len, ret, &why);
}

int qmpc_command_parse(const char *text, size_t len, json_object **ret,
		       const char **ret_command, const char **ret_why)
{
	json_object *o = NULL, *v;
	const char *why = NULL;
	int r = parse_object(text, len, &o, &why);

	if (r == 0 && (!json_object_object_get_ex(o, "execute", &v) ||
		       !json_object_is_type(v, json_type_string))) {
		json_object_put(o);
		why = "no string \"execute\" member";
		r = -EINVAL;
	}
	if (r < 0) {
		if (ret_why)
			*ret_why = why ? why : "out of memory";
		return r;
	}
	*ret = o;
	if (ret_command)
		*ret_command = json_object_get_string(v);
	return 0;
}

int qmpc_msg_parse_why(const char *line, size_t len, struct qmpc_msg *ret,
		      const char **ret_why)
{
	struct qmpc_msg m = { 0 };
	json_object *o = NULL;
	int r;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	r = parse_object(line, len, &o, ret_why);
	if (r == -EINVAL)
		return -EPROTO;
	if (r < 0)
		return r;
	r = classify(o, &m);
	json_object_put(o);
	if (r < 0) {
		if (r == -EPROTO)
			*ret_why = "JSON that is not a QMP message";
		qmpc_msg_release(&m);
		return r;
	}
	*ret = m;
	return 0;
}

int qmpc_msg_parse(const char *line, size_t len, struct qmpc_msg *ret)
{
	const char *why;

	return qmpc_msg_parse_why(line, len, ret, &why);
}

void qmpc_decoder_init(struct qmpc_decoder *d)
{
	memset(d, 0, sizeof(*d));
}

/* Buffers over KEEP_BUF_MAX are mapped; their sizes are powers of two. */
static void buf_free(char *buf, size_t cap)
{
	if (buf && cap > KEEP_BUF_MAX)
		munmap(buf, cap);
	else
		free(buf);
}

static char *buf_grow(char *buf, size_t len, size_t cap, size_t new_cap)
{
	char *p;

	if (new_cap <= KEEP_BUF_MAX)
		return realloc(buf, new_cap);
	if (cap > KEEP_BUF_MAX) {
		p = mremap(buf, cap, new_cap, MREMAP_MAYMOVE);
		return p == MAP_FAILED ? NULL : p;
	}
	p = mmap(NULL, new_cap, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (len)
		memcpy(p, buf, len);
	free(buf);
	return p;
}

void qmpc_decoder_release(struct qmpc_decoder *d)
{
	buf_free(d->buf, d->cap);
	qmpc_decoder_init(d);
}

static int append(struct qmpc_decoder *d, const char *buf, size_t n)
{
	size_t cap;
	char *p;

	/* The caller checked d->len + n <= QMP_LINE_MAX. */
	if (d->len + n > d->cap) {
		cap = d->cap ? d->cap : 4096;
		while (cap < d->len + n)
			cap *= 2;
		if (cap > QMP_LINE_MAX)
			cap = QMP_LINE_MAX;
		p = buf_grow(d->buf, d->len, d->cap, cap);
		if (!p)
			return -ENOMEM;
		d->buf = p;
		d->cap = cap;
	}
	memcpy(d->buf + d->len, buf, n);
	d->len += n;
	return 0;
}

static int parse_line(struct qmpc_decoder *d, const char *line, size_t len,
		      struct qmpc_msg *ret)
{
	int r;

	if (len == 0 || (len == 1 && line[0] == '\r'))
		return 0;
	r = qmpc_msg_parse_why(line, len, ret, &d->why);
	return r < 0 ? r : 1;
}

int qmpc_decoder_feed(struct qmpc_decoder *d, const char *buf, size_t len,
		     size_t *consumed, struct qmpc_msg *ret)
{
	const char *nl = memchr(buf, '\n', len);
	size_t seg = nl ? (size_t)(nl - buf) : len;
	int r;

	*consumed = len;
	if (d->failed)
		return -EPROTO;
	/* Checked before growing: a peer cannot make us hold more. */
	if (seg > QMP_LINE_MAX - d->len) {
		qmpc_decoder_release(d);
		d->failed = true;
		d->why = "a line longer than QMP_LINE_MAX (8 MiB)";
		return -EPROTO;
	}
	if (!nl)
		return append(d, buf, seg);

	*consumed = seg + 1;
	if (d->len == 0)
		return parse_line(d, buf, seg, ret);
	r = append(d, buf, seg);
	if (r < 0)
		return r;
	r = parse_line(d, d->buf, d->len, ret);
	d->len = 0;
	if (d->cap > KEEP_BUF_MAX) {
		buf_free(d->buf, d->cap);
		d->buf = NULL;
		d->cap = 0;
	}
	return r;
}
