/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: the libvirt RPC decoders (lib/vrpc-codec.h and the rpcgen
 * filters of lib/vrpc-protocol.x), on exactly what lib/vrpc.c and
 * lib/hv-libvirt.c decode from a peer.
 *
 * Input: a selector byte, then bytes.
 *   selector < NTYPES: the bytes are one payload of types[selector].
 *   otherwise: the bytes are what libvirtd writes on the socket, a stream of
 *   packets, split as vrpc.c's reader splits them (length word, then the
 *   rest). Each packet goes where the reader would send it: a REPLY with
 *   status ERROR to vrpc_error_decode(); another REPLY to the decoder of its
 *   procedure's result (an unknown procedure: picked by serial, as a caller
 *   expecting any result could receive it); a MESSAGE to the event decoder
 *   of its procedure (lifecycle, QEMU monitor event); a STREAM packet that
 *   ends a download with an error to vrpc_error_decode().
 *
 * Every value that decodes is encoded again and decoded again; the two
 * encodings must be identical (XDR has one encoding per value, apart from
 * padding and booleans that we accept loosely), and the length of the
 * encoding must not exceed what we decoded.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vrpc-codec.h"
#include "fuzz.h"

/* Room for the largest decoded struct. */
union any {
	vrpc_error error;
	vrpc_connect_list_all_domains_ret list;
	vrpc_domain_lookup_ret lookup;
	vrpc_domain_get_state_ret state;
	vrpc_domain_get_xml_desc_ret xml;
	vrpc_qemu_domain_monitor_command_ret monitor;
	vrpc_auth_list_ret auth_list;
	vrpc_auth_polkit_ret auth_polkit;
	vrpc_connect_supports_feature_ret feature;
	vrpc_connect_domain_event_callback_register_any_ret reg;
	vrpc_qemu_connect_domain_monitor_event_register_ret qreg;
	vrpc_domain_event_callback_lifecycle_msg lifecycle;
	vrpc_qemu_domain_monitor_event_msg event;
	vrpc_domain_screenshot_ret screenshot;
	vrpc_connect_get_all_domain_stats_ret stats;
};

struct type {
	uint32_t prog;
	int32_t proc; /* -1: not a reply to a call */
	xdrproc_t fn;
};

#define T(prog, proc, name)                      \
	{                                        \
		prog, proc, VRPC_XDR(xdr_##name) \
	}
static const struct type types[] = {
	T(0, -1, vrpc_error),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_LIST_ALL_DOMAINS,
	  vrpc_connect_list_all_domains_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_LOOKUP_BY_NAME,
	  vrpc_domain_lookup_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_LOOKUP_BY_UUID,
	  vrpc_domain_lookup_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_GET_STATE,
	  vrpc_domain_get_state_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_GET_XML_DESC,
	  vrpc_domain_get_xml_desc_ret),
	T(VRPC_PROGRAM_QEMU, VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND,
	  vrpc_qemu_domain_monitor_command_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_LIST, vrpc_auth_list_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_POLKIT, vrpc_auth_polkit_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_SUPPORTS_FEATURE,
	  vrpc_connect_supports_feature_ret),
	T(VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
	  vrpc_connect_domain_event_callback_register_any_ret),
	T(VRPC_PROGRAM_QEMU,
	  VRPC_QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_REGISTER,
	  vrpc_qemu_connect_domain_monitor_event_register_ret),
	/* MESSAGEs */
	T(VRPC_PROGRAM_REMOTE, -1, vrpc_domain_event_callback_lifecycle_msg),
	T(VRPC_PROGRAM_QEMU, -1, vrpc_qemu_domain_monitor_event_msg),
	/* later replies: after the MESSAGEs, so that seeds keep their types */
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_SCREENSHOT,
	  vrpc_domain_screenshot_ret),
	T(VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_GET_ALL_DOMAIN_STATS,
	  vrpc_connect_get_all_domain_stats_ret),
};
#define NTYPES (sizeof(types) / sizeof(types[0]))
_Static_assert(NTYPES == 16, "seeds name types by index: append only");
#define T_ERROR 0
#define T_LIFECYCLE 12
#define T_EVENT 13
#define T_SCREENSHOT 14
#define T_STATS 15

static void check_string(const char *s, size_t size)
{
	/* Decoded strings are NUL-terminated within what was sent. */
	ASSERT(s && strlen(s) <= size && strlen(s) <= VRPC_STRING_MAX);
}

static void check_domain(const vrpc_nonnull_domain *d, size_t size)
{
	check_string(d->name, size);
}

/* What vrpc.c / hv-libvirt.c read out of a decoded value. */
static void check_value(size_t t, const union any *v, size_t size)
{
	switch (t) {
	case T_ERROR:
		if (v->error.message)
			check_string(*v->error.message, size);
		if (v->error.dom)
			check_domain(v->error.dom, size);
		break;
	case 1:
		ASSERT(v->list.domains.domains_len <= VRPC_DOMAIN_LIST_MAX);
		ASSERT(v->list.domains.domains_len == 0 ||
		       v->list.domains.domains_val);
		for (unsigned i = 0; i < v->list.domains.domains_len; i++)
			check_domain(&v->list.domains.domains_val[i], size);
		break;
	case 2:
	case 3:
		check_domain(&v->lookup.dom, size);
		break;
	case 5:
		check_string(v->xml.xml, size);
		break;
	case 6:
		check_string(v->monitor.result, size);
		break;
	case 7:
		ASSERT(v->auth_list.types.types_len <= VRPC_AUTH_TYPE_LIST_MAX);
		break;
	case T_LIFECYCLE:
		check_domain(&v->lifecycle.dom, size);
		break;
	case T_EVENT:
		check_domain(&v->event.dom, size);
		check_string(v->event.event, size);
		if (v->event.details)
			check_string(*v->event.details, size);
		break;
	case T_SCREENSHOT:
		if (v->screenshot.mime)
			check_string(*v->screenshot.mime, size);
		break;
	case T_STATS:
		ASSERT(v->stats.retStats.retStats_len <= VRPC_DOMAIN_LIST_MAX);
		for (unsigned i = 0; i < v->stats.retStats.retStats_len; i++) {
			const vrpc_domain_stats_record *r =
				&v->stats.retStats.retStats_val[i];

			check_domain(&r->dom, size);
			ASSERT(r->params.params_len <=
			       VRPC_DOMAIN_STATS_PARAMS_MAX);
			for (unsigned j = 0; j < r->params.params_len; j++) {
				const vrpc_typed_param *p =
					&r->params.params_val[j];

				check_string(p->field, size);
				ASSERT(p->value.type >= VRPC_TYPED_PARAM_INT &&
				       p->value.type <=
					       VRPC_TYPED_PARAM_STRING);
				if (p->value.type == VRPC_TYPED_PARAM_STRING)
					check_string(p->value
						.vrpc_typed_param_value_u.s,
						size);
			}
		}
		break;
	}
}

/* Encodes v as the payload of a packet; returns the payload's size. */
static size_t encode(const struct type *ty, const union any *v,
		     uint8_t **ret_buf)
{
	const struct vrpc_header h = {.prog = ty->prog, .vers = 1};
	size_t size;
	int r;

	r = vrpc_packet_encode(&h, ty->fn, v, ret_buf, &size);
	/* A string with a NUL inside shrinks: still within the limits. */
	ASSERT(r == 0 || r == -ENOMEM);
	if (r < 0) {
		*ret_buf = NULL;
		return 0;
	}
	return size - VRPC_HEADER_SIZE;
}

static void decode(size_t t, const uint8_t *payload, size_t size)
{
	const struct type *ty = &types[t];
	union any v, v2;
	uint8_t *e1, *e2;
	size_t n1, n2;

	memset(&v, 0, sizeof(v));
	if (vrpc_payload_decode(payload, size, ty->fn, &v) < 0) {
		/* A failed decode leaves nothing to free: freeing again
		 * finds only NULL pointers (ASan sees a double free). */
		xdr_free(ty->fn, (char *)&v);
		return;
	}
	check_value(t, &v, size);

	n1 = encode(ty, &v, &e1);
	xdr_free(ty->fn, (char *)&v);
	if (!e1)
		return;
	ASSERT(n1 <= size);
	memset(&v2, 0, sizeof(v2));
	ASSERT(vrpc_payload_decode(e1 + VRPC_HEADER_SIZE, n1, ty->fn, &v2) ==
	       0);
	n2 = encode(ty, &v2, &e2);
	xdr_free(ty->fn, (char *)&v2);
	if (e2) {
		ASSERT(n1 == n2 && memcmp(e1 + VRPC_HEADER_SIZE,
					  e2 + VRPC_HEADER_SIZE, n1) == 0);
		free(e2);
	}
	free(e1);
}

static void error_reply(const uint8_t *payload, size_t size)
{
	char *msg = NULL;
	int code = 0, r, e;

	r = vrpc_error_decode(payload, size, &code, &msg);
	ASSERT(r == 0 || r == -EPROTO || r == -ENOMEM);
	if (r < 0) {
		ASSERT(!msg);
		return;
	}
	ASSERT(msg);
	e = vrpc_errno(VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_SCREENSHOT, code);
	ASSERT(e < 0 && e > -512);
	free(msg);
	decode(T_ERROR, payload, size);
}

static size_t reply_type(const struct vrpc_header *h)
{
	for (size_t t = 0; t < NTYPES; t++)
		if (types[t].proc >= 0 && types[t].prog == h->prog &&
		    types[t].proc == h->proc)
			return t;
	if (h->serial % T_LIFECYCLE == 0)
		return T_SCREENSHOT;
	return h->serial % T_LIFECYCLE;
}

/* One packet, as vrpc.c's reader and its users see it. */
static void packet(const uint8_t *pkt, size_t len)
{
	struct vrpc_header h;
	uint8_t again[VRPC_HEADER_SIZE];
	const uint8_t *payload = pkt + VRPC_HEADER_SIZE;
	size_t size = len - VRPC_HEADER_SIZE;

	ASSERT(vrpc_header_decode(pkt, len, &h) == 0);
	ASSERT(h.len == len);
	vrpc_header_encode(&h, again);
	ASSERT(memcmp(again, pkt, VRPC_HEADER_SIZE) == 0);

	if (h.prog == VRPC_PROGRAM_KEEPALIVE)
		return;
	if (h.type == VRPC_REPLY) {
		if (h.status == VRPC_ERROR)
			error_reply(payload, size);
		else if (h.status == VRPC_OK)
			decode(reply_type(&h), payload, size);
	} else if (h.type == VRPC_STREAM) {
		/* Data is raw bytes; whatever ends a stream but OK is an
		 * error (vrpc.c's route_stream()). */
		if (h.status != VRPC_CONTINUE && h.status != VRPC_OK)
			error_reply(payload, size);
	} else if (h.type == VRPC_MESSAGE) {
		if (h.prog == VRPC_PROGRAM_REMOTE &&
		    h.proc == VRPC_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE)
			decode(T_LIFECYCLE, payload, size);
		else if (h.prog == VRPC_PROGRAM_QEMU &&
			 h.proc == VRPC_QEMU_PROC_DOMAIN_MONITOR_EVENT)
			decode(T_EVENT, payload, size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t len;
	int r;

	if (size < 1)
		return 0;
	if (data[0] < NTYPES) {
		if (data[0] == T_ERROR)
			error_reply(data + 1, size - 1);
		else
			decode(data[0], data + 1, size - 1);
		return 0;
	}
	data++, size--;
	while (size >= VRPC_LEN_SIZE) {
		r = vrpc_len_decode(data, &len);
		if (r < 0) {
			ASSERT(r == -EPROTO || r == -EMSGSIZE);
			break; /* the reader drops the connection */
		}
		ASSERT(len >= VRPC_HEADER_SIZE && len <= VRPC_LEN_MAX);
		if (len > size)
			break; /* the reader would wait for more */
		packet(data, len);
		data += len;
		size -= len;
	}
	return 0;
}
