/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * QMP client: one connection to one QEMU monitor socket, shared by any number
 * of threads.
 *
 * A struct qmp owns at most one socket. Callers send commands under a lock
 * and wait, each on its own condition, for the reply whose "id" matches. One
 * reader thread serves every struct qmp of the process (epoll): it routes
 * replies to waiters and events to the event handlers. It starts with the
 * first connection and ends when the last struct qmp that connected is
 * freed. Events may arrive before the reply of the command that caused
 * them; a handler has returned before that reply reaches its waiter.
 *
 * The connection is made lazily: qmp_execute() connects (greeting, then
 * qmp_capabilities) when there is no live connection, so a monitor that went
 * away and came back is reconnected on the next use.
 *
 * Errors are negative errno values:
 *   -EINVAL      bad address or bad command text (nothing was sent)
 *   -ECONNREFUSED, -ENOENT  nobody listens at the address (QEMU not running)
 *   -ETIMEDOUT   no greeting or no reply before the deadline; also at once,
 *                without sending, while the monitor is unresponsive: after
 *                a deadline passed on it and until any byte arrives from it
 *                (the late reply counts) or its connection ends
 *   -ENOTCONN    the peer closed the connection while we waited
 *   -EPROTO      the peer broke the protocol (garbage, oversized line, ...);
 *                the connection is dropped
 *   -EOPNOTSUPP, -ENOENT, -EIO, -EBUSY, ...  QEMU answered with an error
 *                class, mapped by qmp_error_to_errno()
 * Wherever a function takes `char **ret_error`, it may be NULL; otherwise, on
 * failure it receives a malloc'd human-readable message (for a QMP error:
 * QEMU's "desc" text) and on success it is left untouched.
 *
 * No json-c type crosses this header: JSON goes in and out as text.
 */

#include <stdbool.h>
#include <stdint.h>

/* Named limits. A peer that exceeds one loses its connection (-EPROTO). */
#define QMP_LINE_MAX (8u << 20)      /* one JSON message from QEMU */
#define QMP_JSON_DEPTH_MAX 64        /* nesting depth accepted by the parser */
#define QMP_TIMEOUT_MS_DEFAULT 5000

struct qmp;

/*
 * Called on the reader thread for every QMP event, and once with event ==
 * NULL when the connection is lost (the peer closed it or broke the
 * protocol). data_json is the JSON text of the event's "data" member, or NULL
 * when QEMU sent none. The strings are borrowed for the duration of the call.
 *
 * The reader thread is shared by every monitor of the process, and while a
 * handler runs no monitor's reply or event is read. So a handler must not
 * block: no I/O, no waiting for another thread that may itself wait for a
 * monitor, and only locks that are held briefly everywhere. It must not
 * call qmp_connect(), qmp_execute(), qmp_execute_json(), qmp_disconnect()
 * or qmp_free() on any struct qmp: they wait for this very thread. Work that
 * may take long belongs to another thread the handler wakes.
 */
typedef void (*qmp_event_fn)(void *userdata, const char *event,
			     const char *data_json, int64_t seconds,
			     int64_t micros);

/*
 * Creates a client for "unix:PATH" or "tcp:HOST:PORT". No I/O happens here.
 * Returns 0 and *ret, -EINVAL for a malformed address, -ENOMEM. *ret
 * belongs to the caller until qmp_free().
 */
int qmp_new(const char *address, struct qmp **ret);

/* Closes the connection, waits until the reader thread let go of it (and
 * ends that thread if q was its last user), frees. Accepts NULL; returns
 * NULL. No other thread may be using q. */
struct qmp *qmp_free(struct qmp *q);

/* Sets the event handler (see qmp_event_fn: it runs on the reader thread).
 * Call before the first connection, from one thread. */
void qmp_set_event_handler(struct qmp *q, qmp_event_fn fn, void *userdata);

/* The address given to qmp_new(); borrowed until qmp_free(). */
const char *qmp_address(const struct qmp *q);

/*
 * Connects, reads the greeting and negotiates capabilities unless a live
 * connection exists already. Returns 0 or a negative errno (see above).
 */
int qmp_connect(struct qmp *q, int timeout_ms, char **ret_error);

/* Drops the connection, if any. Waiters get -ENOTCONN. */
void qmp_disconnect(struct qmp *q);

/* Whether a negotiated connection is up right now. */
bool qmp_is_connected(struct qmp *q);

/*
 * Runs `command` with `args_json` (a JSON object as text, or NULL for none),
 * connecting first if needed, and waits at most timeout_ms (<= 0 means the
 * default) for the reply. On success returns 0 and, if ret_json is not NULL,
 * stores the malloc'd JSON text of the "return" member in *ret_json.
 */
int qmp_execute(struct qmp *q, const char *command, const char *args_json,
		int timeout_ms, char **ret_json, char **ret_error);

/*
 * Runs a whole command object given as JSON text, e.g. the text a user wrote
 * to a "qmp" file: {"execute": "query-status"}. It must be one JSON object
 * with a string "execute" member (else -EINVAL, nothing sent); any "id" it
 * carries is replaced by our own. On success or on a QMP error reply,
 * *ret_reply receives the malloc'd JSON text of the whole reply object
 * without the "id" member ({"return": ...} or {"error": ...}) and the return
 * value is 0 in both cases: the caller asked for the raw exchange.
 */
int qmp_execute_json(struct qmp *q, const char *command_json, int timeout_ms,
		     char **ret_reply, char **ret_error);

/*
 * The QEMU version from the greeting of the current (or last) connection;
 * no I/O. Returns -ENOTCONN if no greeting was ever read.
 */
int qmp_version(struct qmp *q, int *ret_major, int *ret_minor,
		int *ret_micro);

/*
 * The pid of the process at the other end of a live UNIX-socket connection
 * (SO_PEERCRED), in the caller's pid namespace: for a QEMU monitor, the QEMU
 * on this machine. No I/O. -ENOTCONN without a live connection,
 * -EOPNOTSUPP for a TCP monitor.
 */
int qmp_peer_pid(struct qmp *q, int *ret_pid);

/* Maps a QMP error class ("CommandNotFound", ...) to a negative errno. */
int qmp_error_to_errno(const char *error_class);
