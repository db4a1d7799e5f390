/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The QMP codec (lib/qmp-codec.c) against literal lines, as QEMU sends them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qmp-codec.h"
#include "../check.h"


#define STREQ(a, b) ((a) && (b) && strcmp((a), (b)) == 0)

#define MAX_MSGS 8

/* What one stream of bytes decoded to. */
struct result {
	struct qmpc_msg msg[MAX_MSGS];
	int n;      /* messages */
	int errors; /* -EPROTO results */
	int last_err;
};

static void result_release(struct result *res)
{
	for (int i = 0; i < res->n; i++)
		qmpc_msg_release(&res->msg[i]);
}

/* Feeds len bytes in chunks of `step` bytes (0: all at once). */
static void decode(const char *buf, size_t len, size_t step, struct result *res)
{
	struct qmpc_decoder d;

	memset(res, 0, sizeof(*res));
	qmpc_decoder_init(&d);
	for (size_t off = 0; off < len;) {
		size_t chunk = step && len - off > step ? step : len - off;
		const char *p = buf + off;

		off += chunk;
		while (chunk > 0) {
			struct qmpc_msg m;
			size_t used = 0;
			int r = qmpc_decoder_feed(&d, p, chunk, &used, &m);

			CHECK(used > 0 && used <= chunk);
			p += used;
			chunk -= used;
			if (r == 1 && res->n < MAX_MSGS)
				res->msg[res->n++] = m;
			else if (r == 1)
				qmpc_msg_release(&m);
			else if (r < 0) {
				res->errors++;
				res->last_err = r;
			}
		}
	}
	CHECK(d.len <= QMP_LINE_MAX);
	qmpc_decoder_release(&d);
}

#define DECODE(lit, step, res) decode(lit, sizeof(lit) - 1, step, res)

static const char greeting[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
	"\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, "
	"\"capabilities\": [\"oob\"]}}\r\n";

static void test_greeting(void)
{
	struct result res;

	DECODE(greeting, 0, &res);
	CHECK(res.n == 1 && res.errors == 0);
	CHECK(res.msg[0].kind == QMP_MSG_GREETING);
	CHECK(res.msg[0].major == 7);
	CHECK(res.msg[0].minor == 2);
	CHECK(res.msg[0].micro == 22);
	CHECK(!res.msg[0].has_id);
	CHECK(res.msg[0].json == NULL);
	result_release(&res);

	/* A greeting without a version is not one we can use. */
	DECODE("{\"QMP\": {\"capabilities\": []}}\r\n", 0, &res);
	CHECK(res.n == 0 && res.errors == 1 && res.last_err == -EPROTO);
	result_release(&res);
}

static void test_return(void)
{
	struct result res;

	DECODE("{\"return\": {\"status\": \"running\", \"singlestep\": false, "
	       "\"running\": true}, \"id\": 42}\r\n", 0, &res);
	CHECK(res.n == 1 && res.errors == 0);
	CHECK(res.msg[0].kind == QMP_MSG_RETURN);
	CHECK(res.msg[0].has_id && res.msg[0].id == 42);
	CHECK(STREQ(res.msg[0].json, "{\"status\":\"running\","
		    "\"singlestep\":false,\"running\":true}"));
	result_release(&res);

	/* Empty return; "/" is not escaped; a string id is not ours. */
	DECODE("{\"return\": {}, \"id\": \"a/b\"}\r\n"
	       "{\"return\": \"/dev/x\"}\r\n", 0, &res);
	CHECK(res.n == 2 && res.errors == 0);
	CHECK(STREQ(res.msg[0].json, "{}"));
	CHECK(!res.msg[0].has_id);
	CHECK(STREQ(res.msg[1].json, "\"/dev/x\""));
	result_release(&res);
}

static void test_error(void)
{
	struct result res;

	DECODE("{\"id\": 7, \"error\": {\"class\": \"CommandNotFound\", "
	       "\"desc\": \"The command foo has not been found\"}}\r\n", 0,
	       &res);
	CHECK(res.n == 1 && res.errors == 0);
	CHECK(res.msg[0].kind == QMP_MSG_ERROR);
	CHECK(res.msg[0].has_id && res.msg[0].id == 7);
	CHECK(STREQ(res.msg[0].error_class, "CommandNotFound"));
	CHECK(STREQ(res.msg[0].desc, "The command foo has not been found"));
	CHECK(STREQ(res.msg[0].json, "{\"class\":\"CommandNotFound\","
		    "\"desc\":\"The command foo has not been found\"}"));
	result_release(&res);

	/* No desc: "". No class: not an error we understand. */
	DECODE("{\"error\": {\"class\": \"GenericError\"}}\r\n"
	       "{\"error\": {\"desc\": \"x\"}}\r\n"
	       "{\"error\": \"x\"}\r\n", 0, &res);
	CHECK(res.n == 1 && res.errors == 2);
	CHECK(STREQ(res.msg[0].desc, ""));
	result_release(&res);

	CHECK(qmp_error_to_errno("CommandNotFound") == -EOPNOTSUPP);
	CHECK(qmp_error_to_errno("DeviceNotFound") == -ENOENT);
	CHECK(qmp_error_to_errno("DeviceNotActive") == -ENODEV);
	CHECK(qmp_error_to_errno("GenericError") == -EIO);
	CHECK(qmp_error_to_errno("KVMMissingCap") == -EOPNOTSUPP);
	CHECK(qmp_error_to_errno("SomethingNew") == -EIO);
	CHECK(qmp_error_to_errno(NULL) == -EIO);
}

static void test_event(void)
{
	struct result res;

	/* STOP carries no data: the member is absent, not empty. */
	DECODE("{\"timestamp\": {\"seconds\": 1732435200, \"microseconds\": "
	       "123456}, \"event\": \"STOP\"}\r\n"
	       "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
	       "\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, "
	       "\"reason\": \"host-qmp-quit\"}}\r\n", 0, &res);
	CHECK(res.n == 2 && res.errors == 0);
	CHECK(res.msg[0].kind == QMP_MSG_EVENT);
	CHECK(STREQ(res.msg[0].event, "STOP"));
	CHECK(res.msg[0].json == NULL);
	CHECK(res.msg[0].seconds == 1732435200);
	CHECK(res.msg[0].micros == 123456);
	CHECK(res.msg[1].kind == QMP_MSG_EVENT);
	CHECK(STREQ(res.msg[1].event, "SHUTDOWN"));
	CHECK(STREQ(res.msg[1].json,
		    "{\"guest\":false,\"reason\":\"host-qmp-quit\"}"));
	CHECK(res.msg[1].seconds == 1 && res.msg[1].micros == 2);
	result_release(&res);

	/* An event name that is not a string; a bad timestamp. */
	DECODE("{\"event\": 3}\n"
	       "{\"event\": \"X\", \"timestamp\": {\"seconds\": \"1\"}}\n", 0,
	       &res);
	CHECK(res.n == 0 && res.errors == 2);
	result_release(&res);
}

static void test_framing(void)
{
	static const char two[] =
		"{\"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": 1}\r\n";
	struct result res;

	/* Two messages in one chunk, then the same one byte at a time. */
	for (size_t step = 0; step <= 1; step++) {
		DECODE(two, step, &res);
		CHECK(res.n == 2 && res.errors == 0);
		CHECK(res.msg[0].kind == QMP_MSG_EVENT);
		CHECK(res.msg[1].kind == QMP_MSG_RETURN);
		CHECK(res.msg[1].id == 1);
		result_release(&res);
	}

	/* The greeting split at every possible point. */
	for (size_t step = 1; step < sizeof(greeting); step++) {
		decode(greeting, sizeof(greeting) - 1, step, &res);
		CHECK(res.n == 1 && res.errors == 0);
		CHECK(res.n == 1 && res.msg[0].micro == 22);
		result_release(&res);
	}

	/* Bare "\n" is fine; empty lines are skipped; no "\n" yet: nothing. */
	DECODE("\r\n\n{\"return\": 1}\n{\"return\": 2}", 0, &res);
	CHECK(res.n == 1 && res.errors == 0);
	CHECK(STREQ(res.msg[0].json, "1"));
	result_release(&res);
}

static void test_long_line(void)
{
	size_t n = QMP_LINE_MAX + 2;
	char *big = malloc(n);
	struct qmpc_decoder d;
	struct qmpc_msg m;
	size_t used;
	int r;

	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, ' ', n);

	/* Exactly QMP_LINE_MAX bytes, then "\n": accepted (it is blank
	 * padding around a valid object). */
	memcpy(big, "{\"return\": 5}", 13);
	big[QMP_LINE_MAX] = '\n';
	qmpc_decoder_init(&d);
	r = qmpc_decoder_feed(&d, big, QMP_LINE_MAX + 1, &used, &m);
	CHECK(r == 1 && used == QMP_LINE_MAX + 1);
	if (r == 1) {
		CHECK(STREQ(m.json, "5"));
		qmpc_msg_release(&m);
	}

	/* One byte more, fed in pieces: refused as soon as it is over, with
	 * the buffer never above the limit, and the decoder stays failed. */
	memset(big, ' ', n);
	r = 0;
	for (size_t off = 0; off < n && r == 0; off += used) {
		size_t chunk = n - off < 65536 ? n - off : 65536;

		r = qmpc_decoder_feed(&d, big + off, chunk, &used, &m);
		CHECK(d.cap <= QMP_LINE_MAX);
	}
	CHECK(r == -EPROTO);
	CHECK(d.buf == NULL && d.len == 0);
	r = qmpc_decoder_feed(&d, "{\"return\": {}}\n", 15, &used, &m);
	CHECK(r == -EPROTO && used == 15);
	qmpc_decoder_release(&d);

	/* In one chunk with no newline at all. */
	qmpc_decoder_init(&d);
	r = qmpc_decoder_feed(&d, big, n, &used, &m);
	CHECK(r == -EPROTO && used == n && d.buf == NULL);
	qmpc_decoder_release(&d);
	free(big);
}

static void test_depth(void)
{
	char line[1024];
	struct result res;

	/* The object is one level, the arrays in it the rest. */
	for (int pass = 0; pass < 2; pass++) {
		size_t arrays = pass == 0 ? QMP_JSON_DEPTH_MAX - 1 : 300;
		size_t len = (size_t)sprintf(line, "{\"return\": ");

		memset(line + len, '[', arrays);
		len += arrays;
		memset(line + len, ']', arrays);
		len += arrays;
		memcpy(line + len, "}\n", 2);
		len += 2;
		decode(line, len, 0, &res);
		if (pass == 0)
			CHECK(res.n == 1 && res.errors == 0);
		else
			CHECK(res.n == 0 && res.errors == 1);
		result_release(&res);
	}
}

static void test_garbage(void)
{
	static const char *const bad[] = {
		"[1, 2, 3]\r\n",              /* not an object */
		"\"return\"\r\n",
		"42\n",
		"null\n",
		"{\"return\": }\n",           /* not JSON */
		"{\"return\": 1\n",           /* truncated */
		"{\"return\": 1} x\n",        /* trailing text */
		"{\"return\": 1}{\"return\": 2}\n",
		"{}\n",                       /* not a QMP message */
		"{\"foo\": 1}\n",
		"\x01\x02\x03\xff\xfe\n",     /* binary */
		"{\"return\": \"\xff\xfe\"}\n", /* invalid UTF-8 */
		" \n",
	};
	struct result res;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		decode(bad[i], strlen(bad[i]), 0, &res);
		if (res.n != 0 || res.errors != 1)
			fprintf(stderr, "garbage %zu was accepted\n", i);
		CHECK(res.n == 0 && res.errors == 1 && res.last_err == -EPROTO);
		result_release(&res);
	}

	/* A NUL inside a line; and the decoder goes on after a bad line. */
	static const char nul[] = "{\"return\": 1}\0x\n{\"return\": 2}\n";

	decode(nul, sizeof(nul) - 1, 0, &res);
	CHECK(res.n == 1 && res.errors == 1);
	CHECK(res.n == 1 && STREQ(res.msg[0].json, "2"));
	result_release(&res);
}

int main(void)
{
	test_greeting();
	test_return();
	test_error();
	test_event();
	test_framing();
	test_long_line();
	test_depth();
	test_garbage();
	return check_finish("test-qmp-codec");
}
