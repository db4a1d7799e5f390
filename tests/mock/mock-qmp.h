/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A scripted QMP monitor for the tests (the C tests link it; tests/mock/hvmock
 * runs it for the Python tests). It listens on a UNIX socket and plays a
 * script, one step per line ('#' starts a comment line):
 *
 *   accept             take the next connection (sequential scripts)
 *   greet [M.m.u]      send the greeting (default version 7.2.22)
 *   caps               expect qmp_capabilities and answer {}
 *   expect NAME        read one command; its "execute" must be NAME ('*': any)
 *   answer JSON        {"return": JSON, "id": ID} to the last command
 *   error CLASS DESC   an error reply of that class to the last command
 *   event NAME [JSON]  an event with a timestamp and optional data
 *   send TEXT          TEXT and "\r\n"; sendraw TEXT: TEXT alone
 *   slow MS N TEXT     TEXT and "\r\n" in pieces of N bytes, MS ms apart
 *                      (stops when the client hangs up)
 *   flood N            N bytes of 'x', no newline
 *   nest N             N '[' then N ']'
 *   answer-all         answer every unanswered command, newest first, with
 *                      its own arguments
 *   serve              answer every command by the rules (below) until EOF
 *   hold               stay silent until the client hangs up
 *   wait-eof           the same, but any command is a failure
 *   close              close the connection
 *   sleep MS           stay silent for MS ms
 *   label / again      loop: go back to the step after the last label
 *   sync [TEXT]        (MOCK_QMP_AGENT) guest-sync-delimited, answered
 *                      after TEXT, 0xFF
 *   on NAME[+ARG] return JSON | error CLASS DESC | copy ARG FILE
 *                      a rule for serve (not a step; the newest rule wins;
 *                      +ARG: only when the command has argument ARG; copy:
 *                      write FILE's bytes to the path in argument ARG)
 *
 * TEXT takes the escapes \r \n \t \\ \xHH; "$ID" in TEXT or JSON becomes the
 * last command's id. Without a rule, serve answers qmp_capabilities with {}
 * and anything else with QEMU's CommandNotFound.
 *
 * Sequential mode (MOCK_QMP_EACH not set): one thread plays the script once;
 * it starts with `accept`, a client that does something else, or hangs up
 * early, is a failure. MOCK_QMP_EACH: every connection gets its own thread
 * playing the script from the top; a client that hangs up ends its play.
 */

#include <stdbool.h>
#include <stdio.h>

#define MOCK_QMP_EACH 1
/* A guest agent instead of a monitor: commands carry no id, replies get
 * none, 0xFF bytes from the client (its parser resets) are dropped, and
 * the step `sync [TEXT]` reads guest-sync-delimited, sends TEXT (escapes
 * as in send; stale bytes, garbage), then 0xFF and {"return": its id};
 * serve answers guest-sync-delimited so too unless a rule says otherwise. */
#define MOCK_QMP_AGENT 2

struct mock_qmp;

/* Listens at path (bound as path.tmp, then renamed: it appears listening)
 * and starts playing. Every accepted connection, command received and
 * failure is written as a line to log, if not NULL ("accepted N", "command
 * NAME", "failed: WHAT"). Aborts the program on a bad script or socket. */
struct mock_qmp *mock_qmp_start(const char *path, const char *script,
				int flags, FILE *log);

/* Adds a rule, as an `on` line without the "on ". */
void mock_qmp_rule(struct mock_qmp *m, const char *rule);

/* Shuts every open connection down (a restarted QEMU). */
void mock_qmp_drop(struct mock_qmp *m);

int mock_qmp_accepted(struct mock_qmp *m);
/* How many commands named name arrived. */
int mock_qmp_count(struct mock_qmp *m, const char *name);

/* Sequential mode: waits for the script's end. Stops listening, closes
 * everything, frees m. True if the script ran to its end and nothing
 * failed. */
bool mock_qmp_finish(struct mock_qmp *m);
