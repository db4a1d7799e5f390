/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What QEMU's answers mean, over either driver, on top of the raw exchange
 * hv_qmp(): commands by name, the query-* commands a QEMU offers, block
 * devices, vCPUs, memory; the qmp file's checked exchange. Each answer is
 * parsed once here (call()).
 */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv-driver.h"
#include "qmp-codec.h"
#include "qmp.h"

/* How files show QEMU's JSON: indented by two, "key": value, "/" as is. */
#define JSON_OUT                                             \
	(JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | \
	 JSON_C_TO_STRING_NOSLASHESCAPE)

/* A QMP error object's errno (by its class) and desc, in *ret_error. */
static int refused(json_object *e, char **ret_error)
{
	json_object *cls = NULL, *desc = NULL;

	json_object_object_get_ex(e, "class", &cls);
	json_object_object_get_ex(e, "desc", &desc);
	return hv_error(ret_error,
			qmp_error_to_errno(json_object_get_string(cls)), "%s",
			desc ? json_object_get_string(desc) : "QEMU refused");
}

/*
 * Runs one command by name through the driver's raw QMP entry and parses
 * the answer, once: 0 and the "return" value in *ret (a reference, NULL
 * for JSON null), or an error reply as refused() says, which sets
 * *ret_refused (may be NULL).
 */
static int call_ex(struct hv_conn *c, const char *name, const char *command,
		   const char *args_json, json_object **ret, bool *ret_refused,
		   char **ret_error)
{
	json_object *cmd = json_object_new_object(), *args = NULL;
	json_object *reply = NULL, *v;
	char *text = NULL;
	int r;

	if (!cmd)
		return -ENOMEM;
	if (args_json) {
		args = json_tokener_parse(args_json);
		if (!args || !json_object_is_type(args, json_type_object)) {
			json_object_put(args);
			json_object_put(cmd);
			return hv_error(ret_error, -EINVAL,
					"%s: arguments are not a JSON object",
					command);
		}
	}
	json_object_object_add(cmd, "execute", json_object_new_string(command));
	if (args)
		json_object_object_add(cmd, "arguments", args);
	r = hv_qmp(c, name,
		   json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN),
		   &text, ret_error);
	json_object_put(cmd);
	if (r < 0)
		return r;
	reply = json_tokener_parse(text);
	free(text);
	if (reply && json_object_object_get_ex(reply, "return", &v)) {
		*ret = json_object_get(v);
		r = 0;
	} else if (reply && json_object_object_get_ex(reply, "error", &v)) {
		r = refused(v, ret_error);
		if (ret_refused)
			*ret_refused = true;
	} else {
		r = hv_error(ret_error, -EPROTO, "%s: unexpected reply to %s",
			     name, command);
	}
	json_object_put(reply);
	return r;
}

static int call(struct hv_conn *c, const char *name, const char *command,
		const char *args_json, json_object **ret, char **ret_error)
{
	return call_ex(c, name, command, args_json, ret, NULL, ret_error);
}

/* o as a file shows it: indented JSON and "\n". */
static int pretty(json_object *o, char **ret, size_t *ret_len)
{
	const char *s = json_object_to_json_string_ext(o, JSON_OUT);
	char *text;

	if (!s || asprintf(&text, "%s\n", s) < 0)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}

int hv_qmp_command(struct hv_conn *c, const char *name, const char *command,
		   const char *args_json, char **ret_json, char **ret_error)
{
	json_object *v = NULL;
	int r = call(c, name, command, args_json, &v, ret_error);

	if (r == 0 && ret_json) {
		*ret_json = strdup(json_object_to_json_string_ext(
			v, JSON_C_TO_STRING_PLAIN));
		if (!*ret_json)
			r = -ENOMEM;
	}
	json_object_put(v);
	return r;
}

int hv_qmp_error_errno(const char *error_class)
{
	return qmp_error_to_errno(error_class);
}

void hv_qmp_reply_release(struct hv_qmp_reply *r)
{
	free(r->text);
	free(r->command);
	free(r->desc);
	memset(r, 0, sizeof(*r));
}

int hv_qmp_exchange(struct hv_conn *c, const char *name, const char *buf,
		    size_t len, struct hv_qmp_reply *ret, char **ret_error)
{
	struct hv_qmp_reply out = { 0 };
	json_object *cmd = NULL, *reply, *e;
	const char *command = NULL, *why = NULL;
	char *text = NULL;
	int r;

	r = qmpc_command_parse(buf, len, &cmd, &command, &why);
	if (r == -EINVAL)
		return hv_error(ret_error, r, "not one JSON object with a "
				"string \"execute\" member: %s", why);
	if (r < 0)
		return r;
	out.command = strdup(command);
	if (!out.command) {
		json_object_put(cmd);
		return -ENOMEM;
	}
	r = hv_qmp(c, name,
		   json_object_to_json_string_ext(cmd, JSON_C_TO_STRING_PLAIN),
		   &text, ret_error);
	json_object_put(cmd);
	if (r < 0) {
		hv_qmp_reply_release(&out);
		return r;
	}
	/* The exchange worked even when QEMU refused: say so beside it. */
	reply = json_tokener_parse(text);
	if (reply && json_object_object_get_ex(reply, "error", &e))
		out.refusal = refused(e, &out.desc);
	json_object_put(reply);
	if (asprintf(&out.text, "%s\n", text) < 0)
		out.text = NULL;
	free(text);
	if (!out.text || (out.refusal && !out.desc)) {
		hv_qmp_reply_release(&out);
		return -ENOMEM;
	}
	*ret = out;
	return 0;
}

void hv_names_free(char **names, size_t n)
{
	for (size_t i = 0; names && i < n; i++)
		free(names[i]);
	free(names);
}

/* ---- query-* commands ---- */

/* Whether a command's arg-type lets it run without arguments. */
static bool argless(json_object *types, json_object *command)
{
	json_object *at, *members;
	size_t n;

	if (!json_object_object_get_ex(command, "arg-type", &at))
		return true;
	if (!json_object_object_get_ex(types, json_object_get_string(at),
				       &members))
		return false;
	n = json_object_array_length(members);
	for (size_t i = 0; i < n; i++)
		if (!json_object_object_get_ex(
			    json_object_array_get_idx(members, i), "default",
			    NULL))
			return false; /* a mandatory member */
	return true;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int hv_query_list(struct hv_conn *c, const char *name, char ***ret,
		  size_t *ret_n, char **ret_error)
{
	json_object *schema = NULL, *types;
	char **names = NULL;
	size_t n = 0, len;
	int r;

	r = call(c, name, "query-qmp-schema", NULL, &schema, ret_error);
	if (r < 0)
		return r;
	if (!json_object_is_type(schema, json_type_array)) {
		json_object_put(schema);
		return hv_error(ret_error, -EPROTO,
				"query-qmp-schema: not an array");
	}
	types = json_object_new_object();
	len = json_object_array_length(schema);
	names = calloc(len ? len : 1, sizeof(*names));
	if (!types || !names) {
		r = -ENOMEM;
		goto out;
	}
	/* The object types first: commands name their argument type. */
	for (size_t i = 0; i < len; i++) {
		json_object *e = json_object_array_get_idx(schema, i), *mt, *nm,
			    *members;

		if (json_object_object_get_ex(e, "meta-type", &mt) &&
		    strcmp(json_object_get_string(mt), "object") == 0 &&
		    json_object_object_get_ex(e, "name", &nm) &&
		    json_object_object_get_ex(e, "members", &members))
			json_object_object_add(types,
					       json_object_get_string(nm),
					       json_object_get(members));
	}
	for (size_t i = 0; r == 0 && i < len; i++) {
		json_object *e = json_object_array_get_idx(schema, i), *mt, *nm;
		const char *command;

		if (!json_object_object_get_ex(e, "meta-type", &mt) ||
		    strcmp(json_object_get_string(mt), "command") != 0 ||
		    !json_object_object_get_ex(e, "name", &nm))
			continue;
		command = json_object_get_string(nm);
		if (strncmp(command, "query-", 6) != 0 || !command[6] ||
		    !argless(types, e))
			continue;
		if (!(names[n++] = strdup(command + 6)))
			r = -ENOMEM;
	}
	if (r == 0)
		qsort(names, n, sizeof(*names), cmp_names);
out:
	json_object_put(types);
	json_object_put(schema);
	if (r < 0) {
		hv_names_free(names, n);
		return r;
	}
	*ret = names;
	*ret_n = n;
	return 0;
}

int hv_query(struct hv_conn *c, const char *name, const char *what,
	     char **ret, size_t *ret_len, char **ret_error)
{
	json_object *v = NULL;
	char *command = NULL;
	bool refusal = false;
	int r;

	if (asprintf(&command, "query-%s", what) < 0)
		return -ENOMEM;
	r = call_ex(c, name, command, NULL, &v, &refusal, ret_error);
	free(command);
	/* Any refusal is an answer about this VM: QEMU lacks it here. */
	if (r < 0 && refusal)
		r = -ENODATA;
	if (r == 0)
		r = pretty(v, ret, ret_len);
	json_object_put(v);
	return r;
}

/* ---- block devices ---- */

static const char *member(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

/*
 * A device's name (malloc'd; NULL for none or ENOMEM), the same for its
 * query-block and its query-blockstats element: the drive's "device"; else
 * the qdev id (the ID of a /machine/peripheral/ID/... path, or the whole
 * qdev); else the node name.
 */
static char *block_name(json_object *e)
{
	static const char peripheral[] = "/machine/peripheral/";
	const char *name = member(e, "device");

	if (!*name && *(name = member(e, "qdev")) &&
	    strncmp(name, peripheral, sizeof(peripheral) - 1) == 0) {
		const char *p = name + sizeof(peripheral) - 1;

		return strndup(p, strcspn(p, "/"));
	}
	if (!*name) {
		json_object *in;

		name = member(e, "node-name");
		if (!*name && json_object_object_get_ex(e, "inserted", &in))
			name = member(in, "node-name");
	}
	return *name ? strdup(name) : NULL;
}

/* The elements of query-block (or -blockstats) with their names, in order;
 * a name met twice keeps its first element (the later ones get NULL). */
struct blocks {
	json_object *list;
	char **names; /* NULL for an element without a name */
	size_t n;
};

static void blocks_release(struct blocks *b)
{
	hv_names_free(b->names, b->n);
	json_object_put(b->list);
}

static int blocks_get(struct hv_conn *c, const char *name,
		      const char *command, struct blocks *ret,
		      char **ret_error)
{
	struct blocks b = { 0 };
	int r;

	r = call(c, name, command, NULL, &b.list, ret_error);
	if (r < 0)
		return r;
	if (!json_object_is_type(b.list, json_type_array)) {
		json_object_put(b.list);
		return hv_error(ret_error, -EPROTO, "%s: not an array",
				command);
	}
	b.n = json_object_array_length(b.list);
	b.names = calloc(b.n ? b.n : 1, sizeof(*b.names));
	if (!b.names) {
		json_object_put(b.list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b.n; i++) {
		b.names[i] = block_name(json_object_array_get_idx(b.list, i));
		for (size_t j = 0; b.names[i] && j < i; j++) {
			if (b.names[j] && strcmp(b.names[i], b.names[j]) == 0) {
				free(b.names[i]);
				b.names[i] = NULL;
			}
		}
	}
	*ret = b;
	return 0;
}

int hv_block_devices(struct hv_conn *c, const char *name, char ***ret,
		     size_t *ret_n, char **ret_error)
{
	struct blocks b = { 0 };
	char **names;
	size_t n = 0;
	int r = blocks_get(c, name, "query-block", &b, ret_error);

	if (r < 0)
		return r;
	names = calloc(b.n ? b.n : 1, sizeof(*names));
	if (!names) {
		blocks_release(&b);
		return -ENOMEM;
	}
	for (size_t i = 0; i < b.n; i++) {
		if (b.names[i]) {
			names[n++] = b.names[i];
			b.names[i] = NULL;
		}
	}
	blocks_release(&b);
	*ret = names;
	*ret_n = n;
	return 0;
}

static int block_element(struct hv_conn *c, const char *name,
			 const char *command, const char *device, char **ret,
			 size_t *ret_len, char **ret_error)
{
	struct blocks b = { 0 };
	int r = blocks_get(c, name, command, &b, ret_error);

	if (r < 0)
		return r;
	r = hv_error(ret_error, -ENOENT, "%s: no block device %s", command,
		     device);
	for (size_t i = 0; i < b.n; i++) {
		if (b.names[i] && strcmp(b.names[i], device) == 0) {
			if (ret_error) {
				free(*ret_error);
				*ret_error = NULL;
			}
			r = pretty(json_object_array_get_idx(b.list, i), ret,
				   ret_len);
			break;
		}
	}
	blocks_release(&b);
	return r;
}

int hv_block_info(struct hv_conn *c, const char *name, const char *device,
		  char **ret, size_t *ret_len, char **ret_error)
{
	return block_element(c, name, "query-block", device, ret, ret_len,
			     ret_error);
}

int hv_block_stats(struct hv_conn *c, const char *name, const char *device,
		   char **ret, size_t *ret_len, char **ret_error)
{
	return block_element(c, name, "query-blockstats", device, ret,
			     ret_len, ret_error);
}

/* ---- vCPUs and memory ---- */

int hv_vcpu_threads(struct hv_conn *c, const char *name,
		    struct hv_vcpu_thread **ret, size_t *ret_n,
		    char **ret_error)
{
	json_object *list = NULL;
	struct hv_vcpu_thread *v;
	size_t n = 0, len;
	int r = call(c, name, "query-cpus-fast", NULL, &list, ret_error);

	if (r < 0)
		return r;
	len = json_object_is_type(list, json_type_array) ?
		      json_object_array_length(list) : 0;
	v = calloc(len ? len : 1, sizeof(*v));
	if (!v) {
		json_object_put(list);
		return -ENOMEM;
	}
	for (size_t i = 0; i < len; i++) {
		json_object *e = json_object_array_get_idx(list, i), *idx, *tid;

		if (json_object_object_get_ex(e, "cpu-index", &idx) &&
		    json_object_object_get_ex(e, "thread-id", &tid))
			v[n++] = (struct hv_vcpu_thread){
				.index = json_object_get_int64(idx),
				.thread_id = json_object_get_int64(tid),
			};
	}
	json_object_put(list);
	*ret = v;
	*ret_n = n;
	return 0;
}

static uint64_t member_u64(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_uint64(v);
}

int hv_memory(struct hv_conn *c, const char *name, uint64_t *ret,
	      char **ret_error)
{
	json_object *o = NULL;
	int r;

	/* With a balloon: what the guest has now; else what it was given. */
	r = call(c, name, "query-balloon", NULL, &o, ret_error);
	if (r == 0) {
		*ret = member_u64(o, "actual");
	} else if (r == -ENODEV) { /* DeviceNotActive: no balloon */
		if (ret_error) {
			free(*ret_error);
			*ret_error = NULL;
		}
		r = call(c, name, "query-memory-size-summary", NULL, &o,
			 ret_error);
		if (r < 0)
			return r;
		*ret = member_u64(o, "base-memory") +
		       member_u64(o, "plugged-memory");
	}
	json_object_put(o);
	return r;
}

/* ---- PPM to PNG, for QEMU and libvirt versions that give PPM ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[n] = c;
	}
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	pthread_once(&crc_once, crc_init);
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/* Appends a chunk: length, type, data, CRC of type and data. */
static uint8_t *chunk(uint8_t *out, const char *type, const uint8_t *data,
		      size_t n)
{
	put32(out, (uint32_t)n);
	memcpy(out + 4, type, 4);
	if (n)
		memcpy(out + 8, data, n);
	put32(out + 8 + n, crc32_of(out + 4, n + 4));
	return out + 12 + n;
}

/* Skips whitespace and #-comments of a PPM header, then reads a number. */
static int ppm_number(const uint8_t *p, size_t len, size_t *pos,
		      unsigned long *ret)
{
	unsigned long v = 0;
	size_t i = *pos, digits = 0;

	for (;;) {
		while (i < len && strchr(" \t\r\n", p[i]) && p[i])
			i++;
		if (i < len && p[i] == '#') {
			while (i < len && p[i] != '\n')
				i++;
			continue;
		}
		break;
	}
	while (i < len && p[i] >= '0' && p[i] <= '9' && digits < 9) {
		v = v * 10 + (p[i++] - '0');
		digits++;
	}
	if (!digits)
		return -EPROTO;
	*pos = i;
	*ret = v;
	return 0;
}

int ppm_to_png(const uint8_t *ppm, size_t len, char **ret, size_t *ret_len)
{
	static const uint8_t sig[8] = {0x89, 'P',  'N',	 'G',
				       '\r', '\n', 0x1a, '\n'};
	unsigned long w, h, maxval;
	size_t pos = 2, row, raw_len, blocks, zlen, total;
	uint8_t ihdr[13], *out, *z, *o;
	uint32_t a = 1, b = 0;

	if (len < 2 || ppm[0] != 'P' || ppm[1] != '6' ||
	    ppm_number(ppm, len, &pos, &w) < 0 ||
	    ppm_number(ppm, len, &pos, &h) < 0 ||
	    ppm_number(ppm, len, &pos, &maxval) < 0 || maxval != 255 ||
	    pos >= len || w == 0 || h == 0 || w > 65535 || h > 65535)
		return -EPROTO;
	pos++; /* the one whitespace byte before the pixels */
	row = (size_t)w * 3;
	if (len - pos < row * h)
		return -EPROTO;
	/* Filter byte 0 before each row; stored deflate blocks of <= 65535. */
	raw_len = (row + 1) * h;
	blocks = (raw_len + 65534) / 65535;
	zlen = 2 + raw_len + blocks * 5 + 4;
	total = sizeof(sig) + 12 + 13 + 12 + zlen + 12;
	if (total > HV_SCREENSHOT_MAX)
		return -EFBIG;
	out = malloc(total);
	z = malloc(zlen);
	if (!out || !z) {
		free(out);
		free(z);
		return -ENOMEM;
	}
	o = z;
	*o++ = 0x78; /* zlib: deflate, 32 KiB window */
	*o++ = 0x01; /* no dictionary, fastest; (0x7801 % 31 == 0) */
	for (size_t done = 0, y = 0, x = 0; done < raw_len;) {
		size_t n = raw_len - done < 65535 ? raw_len - done : 65535;

		*o++ = done + n == raw_len; /* BFINAL, BTYPE 00: stored */
		*o++ = n & 0xff;
		*o++ = n >> 8;
		*o++ = ~n & 0xff;
		*o++ = (~n >> 8) & 0xff;
		for (size_t i = 0; i < n; i++) {
			uint8_t c;

			if (x == 0)
				c = 0; /* the row's filter: none */
			else
				c = ppm[pos + y * row + x - 1];
			if (++x == row + 1) {
				x = 0;
				y++;
			}
			*o++ = c;
			a = (a + c) % 65521;
			b = (b + a) % 65521;
		}
		done += n;
	}
	put32(o, b << 16 | a);
	o += 4;

	memcpy(out, sig, sizeof(sig));
	put32(ihdr, (uint32_t)w);
	put32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8;  /* bits per sample */
	ihdr[9] = 2;  /* RGB */
	ihdr[10] = 0; /* deflate */
	ihdr[11] = 0; /* adaptive filtering */
	ihdr[12] = 0; /* no interlace */
	o = chunk(out + sizeof(sig), "IHDR", ihdr, sizeof(ihdr));
	o = chunk(o, "IDAT", z, zlen);
	o = chunk(o, "IEND", NULL, 0);
	free(z);
	*ret = (char *)out;
	*ret_len = (size_t)(o - out);
	return 0;
}
