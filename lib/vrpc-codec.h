/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The pure codec of libvirt's RPC protocol: bytes in, messages out, no
 * sockets. Internal to lib/ (XDR types cross this header).
 *
 * A packet is a 4-byte length word (counting itself), a 24-byte header and an
 * XDR payload. Every decoder here is safe on arbitrary bytes: lengths are
 * checked against named limits before anything is allocated, and a payload
 * that fails to decode leaves nothing allocated behind.
 */

#include <stddef.h>
#include <stdint.h>
#include <rpc/rpc.h>

#include "vrpc-protocol.h"

#define VRPC_LEN_SIZE 4u
#define VRPC_HEADER_SIZE 28u /* the length word and the header */
/* Largest packet without its length word (libvirt 9.0: 32 MiB). */
#define VRPC_MESSAGE_MAX 33554432u
/* Largest value of the length word. */
#define VRPC_LEN_MAX (VRPC_LEN_SIZE + VRPC_MESSAGE_MAX)
#define VRPC_PAYLOAD_MAX (VRPC_LEN_MAX - VRPC_HEADER_SIZE)

_Static_assert(VRPC_STRING_MAX == 4194304, "libvirt's string limit");

/* rpcgen's filters have typed second arguments; xdrproc_t is variadic. The
 * detour through void (*)(void) says the cast is meant. */
#define VRPC_XDR(fn) ((xdrproc_t)(void (*)(void))(fn))

struct vrpc_header {
	uint32_t len; /* whole packet, including the length word */
	uint32_t prog;
	uint32_t vers;
	int32_t proc;
	int32_t type;   /* enum vrpc_message_type */
	uint32_t serial;
	int32_t status; /* enum vrpc_message_status */
};

/*
 * Reads and validates the length word at buf (4 bytes). Returns 0 and
 * *ret_len, -EPROTO when it is below VRPC_HEADER_SIZE or -EMSGSIZE when it
 * is above VRPC_LEN_MAX.
 */
int vrpc_len_decode(const uint8_t *buf, uint32_t *ret_len);

/*
 * Decodes the 28-byte header at the start of buf[0..size). Validates the
 * length word as vrpc_len_decode() does; size may be less than the packet
 * (only the header is read). -EPROTO when size < VRPC_HEADER_SIZE.
 */
int vrpc_header_decode(const uint8_t *buf, size_t size,
		       struct vrpc_header *ret);

/* Writes h as 28 bytes; h->len is written as given. */
void vrpc_header_encode(const struct vrpc_header *h, uint8_t *out);

/*
 * Builds one whole packet: the header h (its len is ignored and computed)
 * followed by the XDR encoding of *payload with fn (fn NULL: empty payload).
 * Returns 0 and a malloc'd buffer in *ret_buf / *ret_size, -EMSGSIZE when the
 * packet would exceed VRPC_LEN_MAX, -EINVAL when fn fails (a string over its
 * limit, a NULL nonnull string), -ENOMEM.
 */
int vrpc_packet_encode(const struct vrpc_header *h, xdrproc_t fn,
		       const void *payload, uint8_t **ret_buf,
		       size_t *ret_size);

/* A CALL of (prog, proc) with serial: vrpc_packet_encode() with vers 1,
 * type CALL, status OK. */
int vrpc_call_encode(uint32_t prog, int32_t proc, uint32_t serial,
		     xdrproc_t fn, const void *args, uint8_t **ret_buf,
		     size_t *ret_size);

/*
 * Decodes payload[0..size) into *ret with fn. *ret must be zeroed by the
 * caller; on success the caller frees it with xdr_free(fn, ret). Trailing
 * bytes are an error. On failure returns -EPROTO and *ret holds nothing that
 * needs freeing: its pointers are NULL again, but numbers decoded before the
 * failure stay (do not read *ret).
 */
int vrpc_payload_decode(const uint8_t *payload, size_t size, xdrproc_t fn,
			void *ret);

/*
 * Decodes the remote_error payload of an ERROR reply. Returns 0, the libvirt
 * error code in *ret_code and a malloc'd message in *ret_message (libvirt's
 * text, or a made-up one naming the code when the peer sent none); -EPROTO
 * when the payload does not decode; -ENOMEM.
 */
int vrpc_error_decode(const uint8_t *payload, size_t size, int *ret_code,
		      char **ret_message);

/*
 * The one mapping of a libvirt error to -errno: its code (virErrorNumber,
 * named VRPC_ERR_* in vrpc-protocol.x) and the procedure it answers (prog,
 * proc), for the codes whose meaning depends on the call. An unknown code
 * is -EIO. Nothing maps the result again.
 */
int vrpc_errno(uint32_t prog, int32_t proc, int code);
