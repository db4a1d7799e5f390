/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * guest.c: the files of a domain's guest/ directory, over the QEMU guest
 * agent (hv.h's hv_agent_* calls): state, the agent's facts (hostname, os,
 * interfaces, addresses, users, filesystems, time), the exec and agent
 * transaction files and the control file (fsfreeze, fsthaw). The file
 * table (files.c) calls these; formats in docs/fs-layout.md "guest/".
 * Calls: dom, lib/.
 */

#include "dom.h"

/* The largest command line or agent command a write may carry. */
#define GUEST_WRITE_MAX (64u << 10)
/* How long an exec may run before its write fails with ETIMEDOUT, at
 * least (-o timeout when that is longer). */
#define GUEST_EXEC_MS 10000

int guest_read_state(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int guest_read_hostname(struct dom *d, char **ret, size_t *ret_len,
			char **ret_error);
int guest_read_os(struct dom *d, char **ret, size_t *ret_len,
		  char **ret_error);
int guest_read_interfaces(struct dom *d, char **ret, size_t *ret_len,
			  char **ret_error);
int guest_read_addresses(struct dom *d, char **ret, size_t *ret_len,
			 char **ret_error);
int guest_read_users(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int guest_read_filesystems(struct dom *d, char **ret, size_t *ret_len,
			   char **ret_error);
int guest_read_time(struct dom *d, char **ret, size_t *ret_len,
		    char **ret_error);
/* exec: a shell line, run as /bin/sh -c LINE; the reply is
 * "exit CODE OUTLEN ERRLEN\n" (or "signal SIG ...") then stdout, stderr. */
int guest_write_exec(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error);
/* agent: one agent command object; the reply is the agent's reply. */
int guest_write_agent(struct dom *d, const char *buf, size_t len,
		      char **ret_reply, size_t *ret_reply_len,
		      char **ret_error);
/* control: reads "fsfreeze\nfsthaw\n"; a write runs one of them. */
int guest_read_control(struct dom *d, char **ret, size_t *ret_len,
		       char **ret_error);
int guest_write_control(struct dom *d, const char *buf, size_t len,
			char **ret_reply, size_t *ret_reply_len,
			char **ret_error);
