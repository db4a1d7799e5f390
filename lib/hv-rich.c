/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * QMP commands by name over either driver, on top of the raw exchange
 * hv_qmp(): what the rich tree (query/, cpus, memory, block/) is made of.
 */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hv-driver.h"
#include "qmp.h"

int hv_qmp_command(struct hv_conn *c, const char *name, const char *command,
		   const char *args_json, char **ret_json, char **ret_error)
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
		r = 0;
		if (ret_json) {
			*ret_json = strdup(json_object_to_json_string_ext(
				v, JSON_C_TO_STRING_PLAIN));
			if (!*ret_json)
				r = -ENOMEM;
		}
	} else if (reply && json_object_object_get_ex(reply, "error", &v)) {
		json_object *cls = NULL, *desc = NULL;

		json_object_object_get_ex(v, "class", &cls);
		json_object_object_get_ex(v, "desc", &desc);
		r = hv_error(
			ret_error,
			qmp_error_to_errno(json_object_get_string(cls)), "%s",
			desc ? json_object_get_string(desc) : "QEMU refused");
	} else {
		r = hv_error(ret_error, -EPROTO, "%s: unexpected reply to %s",
			     name, command);
	}
	json_object_put(reply);
	return r;
}

int hv_qmp_error_errno(const char *error_class)
{
	return qmp_error_to_errno(error_class);
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
