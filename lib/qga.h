/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The QEMU guest agent client (private to lib/): one agent socket (the host
 * side of the guest's org.qemu.guest_agent.0 virtio-serial port, e.g. a
 * chardev socket NAME.qga beside NAME.qmp). Synchronous: the caller's
 * thread does the I/O, one command at a time per agent; no thread of its
 * own.
 *
 * Protocol: QMP-like JSON lines, no greeting, no capabilities, no events,
 * no ids. Before the first command, and after anything that may have left
 * the stream out of step (a timeout, garbage), the client resynchronises
 * as libvirt does: it sends 0xFF (resets the agent's parser) and
 * guest-sync-delimited with a fresh random id, then discards everything
 * until a 0xFF byte followed by {"return": id}. Replies are decoded with
 * the QMP codec, so one reply is at most QGA_REPLY_MAX (QMP_LINE_MAX)
 * bytes; a longer one is -EFBIG and the connection is dropped (the next
 * call reconnects and resynchronises).
 *
 * Errors: -ENODATA when there is no agent socket (nobody listens at the
 * path); -ETIMEDOUT when no reply came within the deadline; -EPROTO for a
 * reply that is no agent reply. An agent that let a deadline pass is
 * "unresponsive": later commands fail at once with -ETIMEDOUT, until a sign
 * of life (a byte arrived since, or qga_sign_of_life(), e.g. on QEMU's
 * VSERPORT_CHANGE), or until QGA_RETRY_MS passed since the last attempt,
 * when one caller tries again with a full deadline. The agent's error reply
 * is not an error here: it is returned as the reply.
 */

#include <stdbool.h>
#include <stdint.h>

#include "qmp-codec.h"

#define QGA_REPLY_MAX QMP_LINE_MAX
#define QGA_RETRY_MS 10000

struct qga;

/* A client for the agent socket at `path` (a UNIX socket path); no I/O.
 * NULL on ENOMEM. */
struct qga *qga_new(const char *path);
/* Closes and frees. Accepts NULL. No call may be running. */
void qga_free(struct qga *q);
/* The socket's path, as given to qga_new(). */
const char *qga_path(const struct qga *q);

/*
 * Runs one command (`command_json`: one JSON object's text, e.g.
 * {"execute":"guest-info"}) within timeout_ms (<= 0: QMP's default).
 * Returns 0 and the reply object as text in *ret_reply ({"return": ...} or
 * {"error": ...}, malloc'd). `no_reply`: the command does not answer on
 * success (guest-shutdown, guest-suspend-*): 0 and *ret_reply NULL once it
 * was sent after a sync.
 */
int qga_execute_json(struct qga *q, const char *command_json, int timeout_ms,
		     bool no_reply, char **ret_reply, char **ret_error);

/*
 * Whether the agent answers a guest-sync now (within timeout_ms): 1 yes,
 * 0 no (known unresponsive, or no reply in time), -ENODATA when there is
 * no agent socket.
 */
int qga_probe(struct qga *q, int timeout_ms);

/* A sign of life from elsewhere (the guest opened its port): the next
 * command tries the agent again. Any thread. */
void qga_sign_of_life(struct qga *q);

/*
 * The resynchronisation reader, without I/O (for tests and fuzzers): fed
 * the bytes from the agent after guest-sync-delimited with `id` was sent.
 * Everything before a 0xFF byte is skipped; after it, lines are decoded and
 * skipped until {"return": id} (another 0xFF starts over).
 */
struct qga_sync {
	struct qmpc_decoder dec;
	bool delimited; /* a 0xFF was seen */
	int64_t id;
};

void qga_sync_init(struct qga_sync *s, int64_t id);
void qga_sync_release(struct qga_sync *s);
/* Consumes bytes (*consumed of len); returns 1 when the reply with the id
 * came (the rest of buf is not consumed), 0 when more are needed, -EFBIG
 * for a line over QGA_REPLY_MAX, -ENOMEM. */
int qga_sync_feed(struct qga_sync *s, const char *buf, size_t len,
		  size_t *consumed);
