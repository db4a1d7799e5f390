/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt RPC codec. The header is encoded by hand (seven big-endian words)
 * so that its checks happen before any XDR machinery or allocation; payloads
 * go through the rpcgen filters of vrpc-protocol.x over xdrmem streams.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vrpc-codec.h"

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

int vrpc_len_decode(const uint8_t *buf, uint32_t *ret_len)
{
	uint32_t len = get_be32(buf);

	if (len < VRPC_HEADER_SIZE)
		return -EPROTO;
	if (len > VRPC_LEN_MAX)
		return -EMSGSIZE;
	*ret_len = len;
	return 0;
}

int vrpc_header_decode(const uint8_t *buf, size_t size,
		       struct vrpc_header *ret)
{
	struct vrpc_header h;
	int r;

	if (size < VRPC_HEADER_SIZE)
		return -EPROTO;
	r = vrpc_len_decode(buf, &h.len);
	if (r < 0)
		return r;
	h.prog = get_be32(buf + 4);
	h.vers = get_be32(buf + 8);
	h.proc = (int32_t)get_be32(buf + 12);
	h.type = (int32_t)get_be32(buf + 16);
	h.serial = get_be32(buf + 20);
	h.status = (int32_t)get_be32(buf + 24);
	*ret = h;
	return 0;
}

void vrpc_header_encode(const struct vrpc_header *h, uint8_t *out)
{
	put_be32(out, h->len);
	put_be32(out + 4, h->prog);
	put_be32(out + 8, h->vers);
	put_be32(out + 12, (uint32_t)h->proc);
	put_be32(out + 16, (uint32_t)h->type);
	put_be32(out + 20, h->serial);
	put_be32(out + 24, (uint32_t)h->status);
}

int vrpc_packet_encode(const struct vrpc_header *h, xdrproc_t fn,
		       const void *payload, uint8_t **ret_buf,
		       size_t *ret_size)
{
	struct vrpc_header hh = *h;
	unsigned long size = 0;
	uint8_t *buf;

	if (fn) {
		/* xdr_sizeof() walks the value without writing it; 0 may mean
		 * an empty payload or a failure, which encoding tells apart. */
		size = xdr_sizeof(fn, (void *)payload);
		if (size > VRPC_PAYLOAD_MAX)
			return -EMSGSIZE;
	}
	buf = malloc(VRPC_HEADER_SIZE + size);
	if (!buf)
		return -ENOMEM;
	hh.len = VRPC_HEADER_SIZE + size;
	vrpc_header_encode(&hh, buf);
	if (fn) {
		XDR x;
		bool_t ok;

		xdrmem_create(&x, (char *)buf + VRPC_HEADER_SIZE, size,
			      XDR_ENCODE);
		ok = fn(&x, (void *)payload) && xdr_getpos(&x) == size;
		xdr_destroy(&x);
		if (!ok) {
			free(buf);
			return -EINVAL;
		}
	}
	*ret_buf = buf;
	*ret_size = hh.len;
	return 0;
}

int vrpc_call_encode(uint32_t prog, int32_t proc, uint32_t serial,
		     xdrproc_t fn, const void *args, uint8_t **ret_buf,
		     size_t *ret_size)
{
	const struct vrpc_header h = {
		.prog = prog,
		.vers = VRPC_PROTOCOL_VERSION,
		.proc = proc,
		.type = VRPC_CALL,
		.serial = serial,
		.status = VRPC_OK,
	};

	return vrpc_packet_encode(&h, fn, args, ret_buf, ret_size);
}

int vrpc_payload_decode(const uint8_t *payload, size_t size, xdrproc_t fn,
			void *ret)
{
	XDR x;
	bool_t ok;

	if (size > VRPC_PAYLOAD_MAX)
		return -EPROTO;
	xdrmem_create(&x, (char *)payload, size, XDR_DECODE);
	ok = fn(&x, ret) && xdr_getpos(&x) == size;
	xdr_destroy(&x);
	if (!ok) {
		/* A filter that failed halfway keeps what it had allocated;
		 * xdr_free() releases the partial value and NULLs its
		 * pointers (zeroed fields are fine for it). */
		xdr_free(fn, ret);
		return -EPROTO;
	}
	return 0;
}

int vrpc_error_decode(const uint8_t *payload, size_t size, int *ret_code,
		      char **ret_message)
{
	vrpc_error e;
	char *msg;
	int r;

	memset(&e, 0, sizeof(e));
	r = vrpc_payload_decode(payload, size, VRPC_XDR(xdr_vrpc_error), &e);
	if (r < 0)
		return r;
	if (e.message && *e.message)
		msg = strdup(*e.message);
	else if (asprintf(&msg, "libvirt error %d", e.code) < 0)
		msg = NULL;
	xdr_free(VRPC_XDR(xdr_vrpc_error), &e);
	if (!msg)
		return -ENOMEM;
	*ret_code = e.code;
	*ret_message = msg;
	return 0;
}

#define ANY_CODE (-1)

/*
 * The one table. "Operation invalid" is libvirt saying that the domain's
 * state forbids the call: for a verb that is -EBUSY, but for a call that
 * reads what only a running domain has (its QEMU's monitor, its screen) it
 * means the domain is not running, which hv.h calls -ENODATA. Whatever
 * polkit answers is a refusal.
 */
static const struct {
	int code;      /* VRPC_ERR_*, or ANY_CODE */
	uint32_t prog; /* with proc: only for this procedure; 0: any */
	int32_t proc;
	int err;
} errnos[] = {
	{ VRPC_ERR_OPERATION_INVALID, VRPC_PROGRAM_QEMU,
	  VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND, -ENODATA },
	{ VRPC_ERR_OPERATION_INVALID, VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_SCREENSHOT, -ENODATA },
	{ ANY_CODE, VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_POLKIT, -EACCES },
	/* The console: the domain is not running; it has no such console
	 * ("cannot find character device"); another client holds it
	 * ("Active console session exists for this domain"). */
	{ VRPC_ERR_OPERATION_INVALID, VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_OPEN_CONSOLE, -ENODATA },
	{ VRPC_ERR_INTERNAL_ERROR, VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_OPEN_CONSOLE, -ENODATA },
	{ VRPC_ERR_OPERATION_FAILED, VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_OPEN_CONSOLE, -EBUSY },
	{ VRPC_ERR_NO_DOMAIN, 0, 0, -ENOENT },
	{ VRPC_ERR_NO_DOMAIN_SNAPSHOT, 0, 0, -ENOENT },
	{ VRPC_ERR_NO_DOMAIN_CHECKPOINT, 0, 0, -ENOENT },
	{ VRPC_ERR_DOM_EXIST, 0, 0, -EEXIST },
	{ VRPC_ERR_OPERATION_INVALID, 0, 0, -EBUSY },
	{ VRPC_ERR_RESOURCE_BUSY, 0, 0, -EBUSY },
	{ VRPC_ERR_INVALID_ARG, 0, 0, -EINVAL },
	{ VRPC_ERR_ARGUMENT_UNSUPPORTED, 0, 0, -EINVAL },
	{ VRPC_ERR_XML_ERROR, 0, 0, -EINVAL },
	{ VRPC_ERR_XML_DETAIL, 0, 0, -EINVAL },
	{ VRPC_ERR_INVALID_DOMAIN_SNAPSHOT, 0, 0, -EINVAL },
	{ VRPC_ERR_XML_INVALID_SCHEMA, 0, 0, -EINVAL },
	{ VRPC_ERR_NO_SUPPORT, 0, 0, -EOPNOTSUPP },
	{ VRPC_ERR_OPERATION_UNSUPPORTED, 0, 0, -EOPNOTSUPP },
	{ VRPC_ERR_CONFIG_UNSUPPORTED, 0, 0, -EOPNOTSUPP },
	{ VRPC_ERR_AUTH_FAILED, 0, 0, -EACCES },
	{ VRPC_ERR_ACCESS_DENIED, 0, 0, -EACCES },
	{ VRPC_ERR_OPERATION_TIMEOUT, 0, 0, -ETIMEDOUT },
	{ VRPC_ERR_RPC, 0, 0, -EPROTO },
};

int vrpc_errno(uint32_t prog, int32_t proc, int code)
{
	for (size_t i = 0; i < sizeof(errnos) / sizeof(*errnos); i++)
		if ((errnos[i].code == ANY_CODE || errnos[i].code == code) &&
		    (errnos[i].prog == 0 ||
		     (errnos[i].prog == prog && errnos[i].proc == proc)))
			return errnos[i].err;
	return -EIO;
}
