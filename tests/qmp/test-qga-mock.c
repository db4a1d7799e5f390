/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent client (lib/qga.c) against a scripted agent (tests/mock's
 * QMP peer in its agent mode): what a real agent does not do on demand.
 * Garbage and stale replies around the resync, a garbage reply, silence
 * (ETIMEDOUT within the deadline, then at once until a sign of life), a
 * reply over QGA_REPLY_MAX, a peer that hangs up, no socket at all
 * (ENODATA).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock-qmp.h"
#include "qga.h"
#include "testutil.h"

/* The agent's side, in the order of main()'s calls. */
static const char script[] =
	/* a sane agent: one sync per connection */
	"accept\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* garbage, stale replies and a wrong id around the sync */
	"accept\n"
	"sync junk\\n{\"return\":7}\\n\\xff{\"return\":421}\\nnot json\\n\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* a garbage reply; the client starts over */
	"expect guest-info\n"
	"send this is not JSON\n"
	"accept\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* silence, then a late byte: a sign of life */
	"expect guest-info\n"
	"sleep 1200\n"
	"send {\"return\":{}}\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* silence, then qga_sign_of_life() */
	"expect guest-info\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	"expect guest-ping\n"
	"answer {}\n"
	/* a reply over QGA_REPLY_MAX */
	"expect guest-info\n"
	"flood 9437184\n"
	"accept\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* a hang-up */
	"expect guest-info\n"
	"close\n"
	"accept\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n"
	/* a hang-up between two calls (a QEMU that restarted) */
	"close\n"
	"accept\n"
	"sync\n"
	"expect guest-info\n"
	"answer {\"ok\":1}\n";

static int run(struct qga *q, int timeout_ms, char **reply, int64_t *ms)
{
	char *e = NULL;
	int64_t t0 = test_now_ms();
	int r;

	*reply = NULL;
	r = qga_execute_json(q, "{\"execute\":\"guest-info\"}", timeout_ms,
			     false, reply, &e);
	*ms = test_now_ms() - t0;
	printf("# %d after %lld ms: %s\n", r, (long long)*ms,
	       r < 0 ? e : *reply);
	CHECK(r >= 0 || (e && *e)); /* every failure says why */
	free(e);
	return r;
}

int main(void)
{
	const char *dir = test_init("qga-mock");
	struct mock_qmp *m;
	struct qga *q;
	char *reply = NULL, path[100];
	int64_t ms;
	int r;

	snprintf(path, sizeof(path), "%s/vm.qga", dir);

	/* No socket: ENODATA at once. */
	q = qga_new(path);
	REQUIRE(q);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -ENODATA && ms < 500);
	CHECK(qga_probe(q, 1000) == -ENODATA);

	m = mock_qmp_start(path, script, MOCK_QMP_AGENT, NULL);

	/* A sane agent, synced once per connection. */
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);
	CHECK(mock_qmp_count(m, "guest-sync-delimited") == 1);
	CHECK(mock_qmp_accepted(m) == 1);

	/* Garbage and stale replies around the sync are skipped. */
	qga_free(q);
	q = qga_new(path);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);

	/* A garbage reply: EPROTO; the next call starts over and works. */
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -EPROTO);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* Silence: ETIMEDOUT within the deadline, then at once. */
	r = run(q, 700, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms >= 650 && ms < 3000);
	r = run(q, 700, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms < 200);
	CHECK(qga_probe(q, 700) == 0);
	/* A byte from the agent (the script's, after 1.2 s) is a sign of
	 * life: the next call syncs again. */
	test_sleep_ms(2500);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);

	/* The same after qga_sign_of_life() (VSERPORT_CHANGE). */
	r = run(q, 500, &reply, &ms);
	CHECK(r == -ETIMEDOUT);
	r = run(q, 500, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms < 200);
	qga_sign_of_life(q);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);
	CHECK(qga_probe(q, 2000) == 1);

	/* A reply over QGA_REPLY_MAX: EFBIG, and the next call works. */
	r = run(q, 10000, &reply, &ms);
	CHECK(r == -EFBIG);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* The agent hangs up: ENODATA, and the next call reconnects. */
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -ENODATA);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* It hangs up between two calls: the next call reconnects at once. */
	test_sleep_ms(300);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* A command that is not one line is refused before any I/O. */
	CHECK(qga_execute_json(q, "{}\n{}", 1000, false, &reply, NULL) ==
	      -EINVAL);

	qga_free(q);
	CHECK(mock_qmp_finish(m));
	return check_finish("test-qga-mock");
}
