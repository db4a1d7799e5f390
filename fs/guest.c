/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A domain's guest/ directory: the QEMU guest agent as files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"

static int text(char *t, char **ret, size_t *ret_len)
{
	if (!t)
		return -ENOMEM;
	*ret = t;
	*ret_len = strlen(t);
	return 0;
}

int guest_read_state(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	bool up = false;
	int r = hv_agent_state(dom_conn(d), d->hv_name, &up, ret_error);

	if (r < 0)
		return r;
	return text(strdup(up ? "connected\n" : "disconnected\n"), ret,
		    ret_len);
}

static int info(struct dom *d, enum hv_agent_info what, char **ret,
		size_t *ret_len, char **ret_error)
{
	char *t = NULL;
	int r = hv_agent_info(dom_conn(d), d->hv_name, what, &t, ret_error);

	if (r < 0)
		return r;
	return text(t, ret, ret_len);
}

#define INFO(fn, what)                                                      \
	int guest_read_##fn(struct dom *d, char **ret, size_t *ret_len,     \
			    char **ret_error)                               \
	{                                                                   \
		return info(d, what, ret, ret_len, ret_error);              \
	}
INFO(hostname, HV_AGENT_HOSTNAME)
INFO(os, HV_AGENT_OS)
INFO(interfaces, HV_AGENT_INTERFACES)
INFO(addresses, HV_AGENT_ADDRESSES)
INFO(users, HV_AGENT_USERS)
INFO(filesystems, HV_AGENT_FILESYSTEMS)
INFO(time, HV_AGENT_TIME)

/* A write's text without the one newline echo adds, NUL-terminated. */
static int take(const char *buf, size_t len, const char *what, char **ret,
		char **ret_error)
{
	if (len > GUEST_WRITE_MAX)
		return hv_error(ret_error, -EFBIG, "%s is at most %u bytes",
				what, GUEST_WRITE_MAX);
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len == 0 || memchr(buf, '\0', len))
		return hv_error(ret_error, -EINVAL, "%s: empty, or with a NUL "
				"byte", what);
	*ret = strndup(buf, len);
	return *ret ? 0 : -ENOMEM;
}

int guest_write_exec(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error)
{
	struct hv_agent_exec_result res = { 0 };
	char *line = NULL, *out = NULL;
	size_t out_len = 0;
	FILE *f;
	int timeout = hvfs_opts.timeout_ms > GUEST_EXEC_MS ?
			      hvfs_opts.timeout_ms : GUEST_EXEC_MS;
	int r = take(buf, len, "a command line", &line, ret_error);

	if (r < 0)
		return r;
	const char *argv[] = { "/bin/sh", "-c", line, NULL };
	r = hv_agent_exec(dom_conn(d), d->hv_name, argv, NULL, 0, timeout,
			  &res, ret_error);
	free(line);
	if (r < 0)
		return r;
	f = open_memstream(&out, &out_len);
	if (f) {
		if (res.signal)
			fprintf(f, "signal %d", res.signal);
		else
			fprintf(f, "exit %d", res.exit_code);
		fprintf(f, " %zu %zu\n", res.out_len, res.err_len);
		fwrite(res.out, 1, res.out_len, f);
		fwrite(res.err, 1, res.err_len, f);
	}
	hv_agent_exec_release(&res);
	if (!f || fclose(f) != 0) {
		free(out);
		return -ENOMEM;
	}
	*ret_reply = out;
	*ret_reply_len = out_len;
	return 0;
}

int guest_write_agent(struct dom *d, const char *buf, size_t len,
		      char **ret_reply, size_t *ret_reply_len,
		      char **ret_error)
{
	char *cmd = NULL, *reply = NULL;
	int r = take(buf, len, "an agent command", &cmd, ret_error);

	if (r < 0)
		return r;
	r = hv_agent_command(dom_conn(d), d->hv_name, cmd, 0, &reply,
			     ret_error);
	free(cmd);
	if (r < 0)
		return r;
	/* One line, as the qmp file's replies. */
	if (asprintf(ret_reply, "%s\n", reply) < 0) {
		free(reply);
		return -ENOMEM;
	}
	free(reply);
	*ret_reply_len = strlen(*ret_reply);
	return 0;
}

int guest_read_control(struct dom *d, char **ret, size_t *ret_len,
		       char **ret_error)
{
	return text(strdup("fsfreeze\nfsthaw\n"), ret, ret_len);
}

int guest_write_control(struct dom *d, const char *buf, size_t len,
			char **ret_reply, size_t *ret_reply_len,
			char **ret_error)
{
	char *verb = NULL;
	bool freeze;
	int r = take(buf, len, "a guest verb", &verb, ret_error);

	if (r < 0)
		return r;
	if (strcmp(verb, "fsfreeze") == 0 || strcmp(verb, "fsthaw") == 0) {
		freeze = verb[2] == 'f';
		free(verb);
		return hv_agent_fsfreeze(dom_conn(d), d->hv_name, freeze, NULL,
					 ret_error);
	}
	r = hv_error(ret_error, -EINVAL, "unknown guest verb \"%.32s\" "
		     "(fsfreeze, fsthaw)", verb);
	free(verb);
	return r;
}
