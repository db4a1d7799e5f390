/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The QMP codec: bytes from a QEMU monitor in, classified messages out. It
 * touches no socket and keeps no global state; unit tests and fuzzers call it
 * directly. Private to lib/.
 *
 * Framing: a message is one line ending in "\n" (QEMU sends "\r\n"; one
 * trailing "\r" is stripped). A line longer than QMP_LINE_MAX bytes (not
 * counting its "\n") is refused before any memory is allocated for it, so a
 * decoder never holds more than QMP_LINE_MAX bytes. Empty lines are skipped.
 *
 * Every line must be one JSON object (at most QMP_JSON_DEPTH_MAX deep, valid
 * UTF-8, nothing after it but white space) of one of these shapes:
 *   {"QMP": {"version": {"qemu": {"major", "minor", "micro"}}, ...}}
 *   {"return": VALUE, "id"?: ...}
 *   {"error": {"class": STR, "desc"?: STR}, "id"?: ...}
 *   {"event": STR, "data"?: {...}, "timestamp"?: {"seconds", "microseconds"}}
 * Anything else is -EPROTO.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qmp.h"

enum qmpc_msg_kind {
	QMP_MSG_GREETING,
	QMP_MSG_RETURN,
	QMP_MSG_ERROR,
	QMP_MSG_EVENT,
};

/* One decoded message. The strings are owned by the message. */
struct qmpc_msg {
	enum qmpc_msg_kind kind;
	bool has_id;       /* "id" was present and an integer */
	int64_t id;
	/* QMP_MSG_GREETING */
	int major, minor, micro;
	/*
	 * QMP_MSG_RETURN: the "return" value as JSON text.
	 * QMP_MSG_ERROR:  the "error" object as JSON text.
	 * QMP_MSG_EVENT:  the "data" object as JSON text, or NULL without one.
	 * QMP_MSG_GREETING: NULL.
	 */
	char *json;
	/* QMP_MSG_ERROR: the error's class and description ("" if none). */
	char *error_class;
	char *desc;
	/* QMP_MSG_EVENT: its name and timestamp (0 when absent). */
	char *event;
	int64_t seconds, micros;
};

/* Frees the message's strings and zeroes it. Accepts NULL. */
void qmpc_msg_release(struct qmpc_msg *m);

/*
 * Classifies one line (without its "\n"; a trailing "\r" is ignored).
 * Returns 0 and *ret, -EPROTO for anything that is not a QMP message,
 * -ENOMEM.
 */
int qmpc_msg_parse(const char *line, size_t len, struct qmpc_msg *ret);

/* The same, and on -EPROTO *ret_why says what was wrong (static text). */
int qmpc_msg_parse_why(const char *line, size_t len, struct qmpc_msg *ret,
		      const char **ret_why);

/* A line splitter. Zero-initialised or qmpc_decoder_init()ed before use. */
struct qmpc_decoder {
	char *buf;    /* the incomplete line so far */
	size_t len;
	size_t cap;
	bool failed;  /* a line was over-long: the stream cannot be resynced */
	/* After -EPROTO: what was wrong with the line, for humans (static). */
	const char *why;
};

void qmpc_decoder_init(struct qmpc_decoder *d);
void qmpc_decoder_release(struct qmpc_decoder *d);

/*
 * Feeds bytes. Consumes buf up to and including the first "\n" (all of it
 * when there is none), stores the count in *consumed, and returns:
 *    1  a message completed: *ret holds it (qmpc_msg_release() it);
 *    0  more bytes are needed (or an empty line was skipped);
 *   -EPROTO  the line was not a QMP message (it is dropped and the decoder
 *            goes on with the next line), or it is longer than QMP_LINE_MAX
 *            (the decoder then fails every later call too); d->why says
 *            which, e.g. "nesting too deep";
 *   -ENOMEM.
 * Callers loop until all their bytes are consumed:
 *
 *	while (len > 0) {
 *		r = qmpc_decoder_feed(d, p, len, &n, &msg);
 *		p += n, len -= n;
 *		...
 *	}
 */
int qmpc_decoder_feed(struct qmpc_decoder *d, const char *buf, size_t len,
		     size_t *consumed, struct qmpc_msg *ret);

struct json_object;

/*
 * Parses text (len bytes, no NUL inside) that must be exactly one JSON
 * object within the codec's limits. Returns 0 and a reference in *ret
 * (json_object_put() it), -EINVAL otherwise, -ENOMEM. Used for what users
 * hand us, with the same limits as what QEMU sends.
 */
int qmpc_json_parse_object(const char *text, size_t len,
			  struct json_object **ret);

/*
 * The one check of a QMP command given as text (a user's, or a caller's of
 * qmp_execute_json() or hv_qmp()): qmpc_json_parse_object(), and a string
 * "execute" member. Returns 0, the object in *ret and its command in
 * *ret_command (borrowed from *ret; may be NULL); -EINVAL with what was
 * wrong in *ret_why (static text; may be NULL); -ENOMEM.
 */
int qmpc_command_parse(const char *text, size_t len, struct json_object **ret,
		       const char **ret_command, const char **ret_why);
