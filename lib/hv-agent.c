/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent calls of hv.h. Drivers give only a raw passthrough
 * (agent_command) and the agent's state; everything else is built here on
 * the passthrough, once for both drivers, so that their outputs are the
 * same bytes. Formats: docs/design.md "Guest agent".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "hv-driver.h"
#include "qmp-codec.h"
#include "sock.h"

#define EXEC_POLL_MIN_MS 20
#define EXEC_POLL_MAX_MS 250

static int effective_timeout(const struct hv_conn *c, int timeout_ms)
{
	return timeout_ms > 0 && timeout_ms < c->timeout_ms ? timeout_ms :
							       c->timeout_ms;
}

#define UNSUPPORTED(c, what) \
	hv_error(ret_error, -EOPNOTSUPP, "%s: %s is not supported by the %s driver", \
		 (c)->uri, what, (c)->drv->name)

int hv_agent_command(struct hv_conn *c, const char *name,
		     const char *command_json, int timeout_ms,
		     char **ret_reply, char **ret_error)
{
	if (!c->drv->agent_command)
		return UNSUPPORTED(c, "the guest agent");
	return c->drv->agent_command(c->priv, name, command_json,
				     effective_timeout(c, timeout_ms),
				     ret_reply, ret_error);
}

int hv_agent_state(struct hv_conn *c, const char *name, bool *ret,
		   char **ret_error)
{
	if (!c->drv->agent_state)
		return UNSUPPORTED(c, "the guest agent");
	return c->drv->agent_state(c->priv, name, ret, ret_error);
}

/*
 * One agent command `execute` with `args` (may be NULL; borrowed) and its
 * "return" value in *ret (a reference; json_object_put() it). An error
 * reply is its class's errno with the agent's desc.
 */
static int agent_call(struct hv_conn *c, const char *name, const char *execute,
		      json_object *args, int timeout_ms, json_object **ret,
		      char **ret_error)
{
	json_object *cmd = json_object_new_object(), *reply = NULL, *v, *e;
	char *text = NULL;
	int r;

	if (!cmd)
		return -ENOMEM;
	json_object_object_add(cmd, "execute", json_object_new_string(execute));
	if (args)
		json_object_object_add(cmd, "arguments", json_object_get(args));
	r = hv_agent_command(c, name, json_object_to_json_string_ext(cmd,
			     JSON_C_TO_STRING_PLAIN), timeout_ms, &text,
			     ret_error);
	json_object_put(cmd);
	if (r < 0)
		return r;
	r = qmpc_json_parse_object(text, strlen(text), &reply);
	free(text);
	if (r < 0)
		return hv_error(ret_error, r == -ENOMEM ? r : -EPROTO,
				"%s: %s: the agent's reply is no JSON object",
				name, execute);
	if (json_object_object_get_ex(reply, "return", &v)) {
		*ret = json_object_get(v);
		r = 0;
	} else if (json_object_object_get_ex(reply, "error", &e) &&
		   json_object_is_type(e, json_type_object)) {
		json_object *cls = NULL, *desc = NULL;

		json_object_object_get_ex(e, "class", &cls);
		json_object_object_get_ex(e, "desc", &desc);
		r = hv_error(ret_error,
			     hv_qmp_error_errno(json_object_get_string(cls)),
			     "%s: %s: %s", name, execute,
			     desc ? json_object_get_string(desc) :
				    "the agent refused");
	} else {
		r = hv_error(ret_error, -EPROTO, "%s: %s: unexpected agent "
			     "reply", name, execute);
	}
	json_object_put(reply);
	return r;
}

static const char *const info_names[HV_AGENT_INFO_COUNT] = {
	[HV_AGENT_HOSTNAME] = "hostname",
	[HV_AGENT_OS] = "os",
	[HV_AGENT_INTERFACES] = "interfaces",
	[HV_AGENT_ADDRESSES] = "addresses",
	[HV_AGENT_USERS] = "users",
	[HV_AGENT_FILESYSTEMS] = "filesystems",
	[HV_AGENT_TIME] = "time",
};

static const char *const info_commands[HV_AGENT_INFO_COUNT] = {
	[HV_AGENT_HOSTNAME] = "guest-get-host-name",
	[HV_AGENT_OS] = "guest-get-osinfo",
	[HV_AGENT_INTERFACES] = "guest-network-get-interfaces",
	[HV_AGENT_ADDRESSES] = "guest-network-get-interfaces",
	[HV_AGENT_USERS] = "guest-get-users",
	[HV_AGENT_FILESYSTEMS] = "guest-get-fsinfo",
	[HV_AGENT_TIME] = "guest-get-time",
};

const char *hv_agent_info_name(enum hv_agent_info what)
{
	if ((unsigned)what >= HV_AGENT_INFO_COUNT)
		return NULL;
	return info_names[what];
}

/* A growing text. */
struct text {
	char *s;
	size_t len, cap;
	int err;
};

static void text_add(struct text *t, const char *p, size_t n)
{
	if (t->err)
		return;
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 256;
		char *s;

		while (cap < t->len + n + 1)
			cap *= 2;
		if (!(s = realloc(t->s, cap))) {
			t->err = -ENOMEM;
			return;
		}
		t->s = s;
		t->cap = cap;
	}
	memcpy(t->s + t->len, p, n);
	t->len += n;
	t->s[t->len] = '\0';
}

static void text_str(struct text *t, const char *s)
{
	text_add(t, s, strlen(s));
}

/* A string without control characters (one line, one field). */
static bool field_ok(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ' ')
			return false;
	return true;
}

/* guest-network-get-interfaces -> "IFACE ADDR/PREFIX\n" per address. */
static int addresses(json_object *ifaces, struct text *t)
{
	if (!json_object_is_type(ifaces, json_type_array))
		return -EPROTO;
	for (size_t i = 0; i < json_object_array_length(ifaces); i++) {
		json_object *ifc = json_object_array_get_idx(ifaces, i);
		json_object *n = NULL, *addrs = NULL;
		const char *iname;

		if (!json_object_object_get_ex(ifc, "name", &n) ||
		    !field_ok(iname = json_object_get_string(n)))
			return -EPROTO;
		if (!json_object_object_get_ex(ifc, "ip-addresses", &addrs))
			continue; /* an interface without addresses */
		if (!json_object_is_type(addrs, json_type_array))
			return -EPROTO;
		for (size_t k = 0; k < json_object_array_length(addrs); k++) {
			json_object *a = json_object_array_get_idx(addrs, k);
			json_object *ip = NULL, *pfx = NULL;
			const char *addr;
			char buf[32];

			if (!json_object_object_get_ex(a, "ip-address", &ip) ||
			    !json_object_object_get_ex(a, "prefix", &pfx) ||
			    !json_object_is_type(pfx, json_type_int) ||
			    !field_ok(addr = json_object_get_string(ip)))
				return -EPROTO;
			text_str(t, iname);
			text_str(t, " ");
			text_str(t, addr);
			snprintf(buf, sizeof(buf), "/%d\n",
				 json_object_get_int(pfx));
			text_str(t, buf);
		}
	}
	return 0;
}

int hv_agent_info(struct hv_conn *c, const char *name,
		  enum hv_agent_info what, char **ret, char **ret_error)
{
	struct text t = { 0 };
	json_object *v = NULL, *h = NULL;
	int r;

	if ((unsigned)what >= HV_AGENT_INFO_COUNT)
		return hv_error(ret_error, -EINVAL, "unknown agent info %d",
				what);
	r = agent_call(c, name, info_commands[what], NULL, 0, &v, ret_error);
	if (r < 0)
		return r;
	switch (what) {
	case HV_AGENT_HOSTNAME:
		if (!json_object_object_get_ex(v, "host-name", &h) ||
		    !json_object_is_type(h, json_type_string) ||
		    strchr(json_object_get_string(h), '\n'))
			r = -EPROTO;
		else
			text_str(&t, json_object_get_string(h));
		break;
	case HV_AGENT_TIME:
		if (!json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) < 0) {
			r = -EPROTO;
		} else {
			int64_t ns = json_object_get_int64(v);
			char buf[48];

			snprintf(buf, sizeof(buf), "%lld.%09lld",
				 (long long)(ns / 1000000000),
				 (long long)(ns % 1000000000));
			text_str(&t, buf);
		}
		break;
	case HV_AGENT_ADDRESSES:
		r = addresses(v, &t);
		if (r == 0 && t.len == 0)
			text_str(&t, ""); /* no address: an empty text */
		break;
	default:
		text_str(&t, json_object_to_json_string_ext(v,
			 JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		break;
	}
	json_object_put(v);
	if (r == 0 && what != HV_AGENT_ADDRESSES)
		text_str(&t, "\n");
	if (r == 0 && !t.s)
		text_add(&t, "", 0);
	if (r == 0 && t.err)
		r = t.err;
	if (r < 0) {
		free(t.s);
		if (r == -EPROTO)
			return hv_error(ret_error, r, "%s: %s: the agent's "
					"answer has an unexpected shape", name,
					info_commands[what]);
		return r;
	}
	*ret = t.s;
	return 0;
}

/* ---- exec ---- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64_encode(const unsigned char *p, size_t n)
{
	char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		*o++ = b64[v >> 18 & 63];
		*o++ = b64[v >> 12 & 63];
		*o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
		*o++ = i + 2 < n ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* Decodes base64 (no white space) into a malloc'd buffer with a NUL after
 * it: 0, -EPROTO for what is not base64, -EFBIG over max, -ENOMEM. */
static int base64_decode(const char *s, size_t max, char **ret,
			 size_t *ret_len)
{
	size_t n = strlen(s), len = 0;
	uint32_t v = 0;
	int bits = 0, pad = 0;
	char *out;

	if (n % 4)
		return -EPROTO;
	if (n / 4 * 3 > max + 2)
		return -EFBIG;
	out = malloc(n / 4 * 3 + 1);
	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *k = s[i] ? strchr(b64, s[i]) : NULL;

		if (s[i] == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (!k || pad) {
			free(out);
			return -EPROTO;
		}
		v = v << 6 | (uint32_t)(k - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[len++] = (char)(v >> bits & 0xff);
		}
	}
	if (len > max) {
		free(out);
		return -EFBIG;
	}
	out[len] = '\0';
	*ret = out;
	*ret_len = len;
	return 0;
}

static int output(json_object *st, const char *key, const char *trunc,
		  char **ret, size_t *ret_len)
{
	json_object *d = NULL, *t = NULL;

	if (json_object_object_get_ex(st, trunc, &t) &&
	    json_object_get_boolean(t))
		return -EFBIG;
	if (!json_object_object_get_ex(st, key, &d)) {
		*ret = strdup("");
		*ret_len = 0;
		return *ret ? 0 : -ENOMEM;
	}
	if (!json_object_is_type(d, json_type_string))
		return -EPROTO;
	return base64_decode(json_object_get_string(d),
			     HV_AGENT_EXEC_OUTPUT_MAX, ret, ret_len);
}

void hv_agent_exec_release(struct hv_agent_exec_result *r)
{
	if (!r)
		return;
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

int hv_agent_exec(struct hv_conn *c, const char *name,
		  const char *const *argv, const char *input,
		  size_t input_len, int timeout_ms,
		  struct hv_agent_exec_result *ret, char **ret_error)
{
	int64_t deadline = sock_now_ms() + (timeout_ms > 0 ? timeout_ms :
					c->timeout_ms);
	struct hv_agent_exec_result res = { 0 };
	json_object *args, *arr, *v = NULL, *pid = NULL, *sargs;
	int wait_ms = EXEC_POLL_MIN_MS;
	int r;

	if (!argv || !argv[0] || !*argv[0])
		return hv_error(ret_error, -EINVAL, "%s: nothing to run", name);
	args = json_object_new_object();
	arr = json_object_new_array();
	if (!args || !arr) {
		json_object_put(args);
		json_object_put(arr);
		return -ENOMEM;
	}
	json_object_object_add(args, "path", json_object_new_string(argv[0]));
	for (size_t i = 1; argv[i]; i++)
		json_object_array_add(arr, json_object_new_string(argv[i]));
	json_object_object_add(args, "arg", arr);
	json_object_object_add(args, "capture-output",
			       json_object_new_boolean(1));
	if (input) {
		char *enc = base64_encode((const unsigned char *)input,
					  input_len);

		if (!enc) {
			json_object_put(args);
			return -ENOMEM;
		}
		json_object_object_add(args, "input-data",
				       json_object_new_string(enc));
		free(enc);
	}
	r = agent_call(c, name, "guest-exec", args, 0, &v, ret_error);
	json_object_put(args);
	if (r < 0)
		return r;
	if (!json_object_object_get_ex(v, "pid", &pid) ||
	    !json_object_is_type(pid, json_type_int)) {
		json_object_put(v);
		return hv_error(ret_error, -EPROTO, "%s: guest-exec: no pid "
				"in the agent's answer", name);
	}
	sargs = json_object_new_object();
	if (!sargs) {
		json_object_put(v);
		return -ENOMEM;
	}
	json_object_object_add(sargs, "pid", json_object_get(pid));
	json_object_put(v);
	for (;;) {
		json_object *st = NULL, *ex = NULL, *code = NULL, *sig = NULL;
		int64_t left = deadline - sock_now_ms();

		if (left <= 0) {
			r = hv_error(ret_error, -ETIMEDOUT, "%s: the guest "
				     "process did not exit in time", name);
			break;
		}
		r = agent_call(c, name, "guest-exec-status", sargs,
			       (int)(left < INT32_MAX ? left : INT32_MAX),
			       &st, ret_error);
		if (r < 0)
			break;
		if (!json_object_object_get_ex(st, "exited", &ex) ||
		    !json_object_is_type(ex, json_type_boolean)) {
			json_object_put(st);
			r = hv_error(ret_error, -EPROTO, "%s: guest-exec-status:"
				     " unexpected answer", name);
			break;
		}
		if (json_object_get_boolean(ex)) {
			json_object_object_get_ex(st, "exitcode", &code);
			json_object_object_get_ex(st, "signal", &sig);
			res.exit_code = code ? json_object_get_int(code) : -1;
			res.signal = sig ? json_object_get_int(sig) : 0;
			r = output(st, "out-data", "out-truncated", &res.out,
				   &res.out_len);
			if (r == 0)
				r = output(st, "err-data", "err-truncated",
					   &res.err, &res.err_len);
			json_object_put(st);
			if (r < 0)
				r = hv_error(ret_error, r, "%s: the guest "
					     "process's output: %s", name,
					     r == -EFBIG ? "too large" :
					     strerror(-r));
			break;
		}
		json_object_put(st);
		left = deadline - sock_now_ms();
		if (left > 0) {
			struct timespec ts;
			int w = wait_ms < left ? wait_ms : (int)left;

			ts.tv_sec = w / 1000;
			ts.tv_nsec = (long)(w % 1000) * 1000000;
			nanosleep(&ts, NULL);
		}
		if (wait_ms < EXEC_POLL_MAX_MS)
			wait_ms *= 2;
	}
	json_object_put(sargs);
	if (r < 0) {
		hv_agent_exec_release(&res);
		return r;
	}
	*ret = res;
	return 0;
}

/* ---- fsfreeze ---- */

int hv_agent_fsfreeze(struct hv_conn *c, const char *name, bool freeze,
		      int *ret_count, char **ret_error)
{
	json_object *v = NULL;
	int r;

	if (c->drv->agent_fsfreeze)
		return c->drv->agent_fsfreeze(c->priv, name, freeze, ret_count,
					      ret_error);
	r = agent_call(c, name, freeze ? "guest-fsfreeze-freeze" :
		       "guest-fsfreeze-thaw", NULL, 0, &v, ret_error);
	if (r < 0)
		return r;
	if (!json_object_is_type(v, json_type_int))
		r = hv_error(ret_error, -EPROTO, "%s: fsfreeze: unexpected "
			     "answer", name);
	else if (ret_count)
		*ret_count = json_object_get_int(v);
	json_object_put(v);
	return r;
}
