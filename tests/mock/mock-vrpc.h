/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Scripted mock libvirtds for the tests, on a UNIX socket in a temporary
 * directory or on TCP (127.0.0.1, a port the kernel picks). Packets are
 * framed and coded with lib/vrpc-codec.h and the XDR types of
 * lib/vrpc-protocol.x.
 *
 * Two kinds:
 *
 * - A scripted peer (mock_vrpc_start): a thread runs script(m) once; the
 *   script is C code built from the steps below (expect a call, reply, send
 *   an error, an event, a stream packet, hang up ...). A call the script
 *   does not expect fails it. For the RPC client's own tests.
 *
 * - A small libvirtd (mock_libvirtd_start): domains with a state and an XML
 *   description, the calls hvfs makes (AUTH_LIST, CONNECT_OPEN, listing,
 *   lookup, GET_STATE, GET_XML_DESC, bulk statistics (each domain's
 *   state.state and state.reason), the control verbs, which change the
 *   state and send lifecycle events to who registered, the QEMU monitor
 *   passthrough), on every connection, each on a thread of its own; and
 *   faults per procedure. Configured by a text script, one line each:
 *
 *     domain NAME STATE          running, paused or shutoff; uuid 01 02 ...
 *                                (its index+1 in the first byte), id 1, 2 ...
 *     xml NAME TEXT              its XML (default: <domain><name>NAME...)
 *     fault PROC[@NAME] ACTION   every call of PROC (of domain NAME) gets:
 *       error CODE MESSAGE       an error reply (a VIR_ERR_* code)
 *       stall                    no reply, ever
 *       late MS                  the reply, MS ms late (other calls go on)
 *       len N                    the reply with a length word of N
 *       raw TEXT                 a reply whose payload is TEXT (\xHH escapes)
 *       hangup                   the connection closed
 *
 *   PROC is a procedure's name as in vrpc-protocol.x, lowercase, without
 *   the VRPC_PROC_ prefix and with '-' for '_' (get-state, auth-list,
 *   lookup-by-name ...; "qemu-" names the QEMU program's: qemu-monitor-
 *   command), or a number. The newest fault of a call wins. Every fault
 *   played and every connection is written to the log ("fault PROC",
 *   "accepted N").
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vrpc-codec.h"
#include "vrpc-protocol.h"

/* ---- the scripted peer ---- */

struct mock_vrpc {
	char dir[64];
	char path[128];
	char uri[256];   /* qemu+unix:///system?socket=PATH or qemu+tcp://... */
	int lfd;
	int cfd;
	pthread_t thread;
	void (*script)(struct mock_vrpc *m);
	void *userdata;
	bool failed;
};

/* Listens (UNIX, or TCP if tcp) and runs script once a client connected. */
void mock_vrpc_start(struct mock_vrpc *m, void (*script)(struct mock_vrpc *m),
		     bool tcp);
/* Joins the script; stops listening. The check: !m->failed. */
void mock_vrpc_finish(struct mock_vrpc *m);
/* Stops listening: libvirtd is gone. */
void mock_vrpc_unlisten(struct mock_vrpc *m);

void mock_vrpc_fail(struct mock_vrpc *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
bool mock_vrpc_accept(struct mock_vrpc *m);
void mock_vrpc_hangup(struct mock_vrpc *m);
/* One packet, its payload malloc'd; false on EOF, garbage or 5 s silence. */
bool mock_vrpc_read(struct mock_vrpc *m, struct vrpc_header *h, uint8_t **pl,
		    size_t *n);
/* Expects a CALL of (prog, proc); decodes its args with fn if given. */
bool mock_vrpc_expect(struct mock_vrpc *m, uint32_t prog, int32_t proc,
		      struct vrpc_header *h, xdrproc_t fn, void *args);
void mock_vrpc_send(struct mock_vrpc *m, const void *buf, size_t n);
/* A packet like call's with type and status (malloc'd). */
uint8_t *mock_vrpc_packet(struct mock_vrpc *m, const struct vrpc_header *call,
			  int type, int status, xdrproc_t fn,
			  const void *payload, size_t *ret_n);
void mock_vrpc_reply(struct mock_vrpc *m, const struct vrpc_header *call,
		     xdrproc_t fn, const void *ret);
void mock_vrpc_reply_error(struct mock_vrpc *m, const struct vrpc_header *call,
			   int code, const char *msg);
/* AUTH_LIST, SUPPORTS_FEATURE(keepalive), CONNECT_OPEN(qemu:///system) as
 * vrpc sends them; with ping, a keepalive PING before OPEN's reply, whose
 * PONG must come first. */
bool mock_vrpc_handshake(struct mock_vrpc *m, bool ping);
/* CONNECT_CLOSE, answered. */
void mock_vrpc_expect_close(struct mock_vrpc *m);
/* The client hung up: nothing more may arrive. */
void mock_vrpc_expect_eof(struct mock_vrpc *m);
/* A LOOKUP_BY_NAME; *name (malloc'd) the name asked for, if name. */
bool mock_vrpc_expect_lookup(struct mock_vrpc *m, struct vrpc_header *h,
			     char **name);
/* A lookup reply naming name (id 7, uuid ab ab ...). */
uint8_t *mock_vrpc_lookup_packet(struct mock_vrpc *m,
				 const struct vrpc_header *call,
				 const char *name, size_t *ret_n);
void mock_vrpc_lookup_reply(struct mock_vrpc *m, const struct vrpc_header *call,
			    const char *name);
/* A lifecycle event of domain name (callback 3). */
void mock_vrpc_lifecycle_event(struct mock_vrpc *m, const char *name,
			       int event);
/* A STREAM packet of call with status and raw data. */
void mock_vrpc_stream(struct mock_vrpc *m, const struct vrpc_header *call,
		      int status, const void *data, size_t n);
/* Expects the client's empty STREAM packet for call with status. */
void mock_vrpc_expect_stream(struct mock_vrpc *m,
			     const struct vrpc_header *call, int status);

/* ---- the small libvirtd ---- */

struct mock_libvirtd;

/* On a UNIX socket at path (NULL: in a temporary directory), or on TCP;
 * log as for mock_qmp_start(), or NULL. */
struct mock_libvirtd *mock_libvirtd_start(const char *path, bool tcp,
					  const char *script, FILE *log);
/* The URI that reaches it. */
const char *mock_libvirtd_uri(struct mock_libvirtd *d);
/* Adds a script line (a domain, a fault) while it runs. */
void mock_libvirtd_line(struct mock_libvirtd *d, const char *line);
/* Sends a lifecycle event of domain name to every registered connection. */
void mock_libvirtd_event(struct mock_libvirtd *d, const char *name, int event,
			 int detail);
/* The state (VIR_DOMAIN_*: 1 running, 3 paused, 5 shutoff) of name, -1. */
int mock_libvirtd_state(struct mock_libvirtd *d, const char *name);
/* Shuts every connection down (libvirtd restarted). */
void mock_libvirtd_drop(struct mock_libvirtd *d);
int mock_libvirtd_accepted(struct mock_libvirtd *d);
/* Calls of proc received (its name or number, as in a script). */
int mock_libvirtd_calls(struct mock_libvirtd *d, const char *proc);
/* Stops, closes everything, frees d; false if a call came that it does not
 * know. */
bool mock_libvirtd_finish(struct mock_libvirtd *d);
