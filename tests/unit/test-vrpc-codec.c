/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt RPC codec against literal packets, annotated field by field.
 * The error, lifecycle and monitor-event packets are the live ones recorded
 * in docs/protocols.md (sections 1.8, 3.3, 3.4).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vrpc-codec.h"
#include "../check.h"


#define BE32(v) (uint8_t)((uint32_t)(v) >> 24), (uint8_t)((uint32_t)(v) >> 16), \
		(uint8_t)((uint32_t)(v) >> 8), (uint8_t)(v)

#define UUID_TEST 0x66, 0x95, 0xeb, 0x01, 0xf6, 0xa4, 0x83, 0x04, \
		  0x79, 0xaa, 0x97, 0xf2, 0x50, 0x2e, 0x19, 0x3f
#define UUID_B 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, \
	       0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00

/* CALL CONNECT_OPEN("qemu:///system", flags 0), serial 2. */
static const uint8_t connect_open_call[] = {
	BE32(56),         /* length: 28 + 28 */
	BE32(0x20008086), /* prog REMOTE */
	BE32(1),          /* vers */
	BE32(1),          /* proc CONNECT_OPEN */
	BE32(0),          /* type CALL */
	BE32(2),          /* serial */
	BE32(0),          /* status OK */
	BE32(1),          /* name: present */
	BE32(14),         /* name: length */
	'q', 'e', 'm', 'u', ':', '/', '/', '/', 's', 'y', 's', 't', 'e', 'm',
	0, 0,             /* pad to 16 */
	BE32(0),          /* flags */
};

/* REPLY to CONNECT_LIST_ALL_DOMAINS, serial 5: two domains. */
static const uint8_t list_reply[] = {
	BE32(92),         /* length: 28 + 64 */
	BE32(0x20008086), /* prog REMOTE */
	BE32(1),          /* vers */
	BE32(273),        /* proc CONNECT_LIST_ALL_DOMAINS */
	BE32(1),          /* type REPLY */
	BE32(5),          /* serial */
	BE32(0),          /* status OK */
	BE32(2),          /* domains: count */
	BE32(1), 'a', 0, 0, 0, /* [0].name "a" + 3 pad */
	UUID_TEST,        /* [0].uuid */
	BE32(1),          /* [0].id */
	BE32(3), 'w', 'e', 'b', 0, /* [1].name "web" + 1 pad */
	UUID_B,           /* [1].uuid */
	BE32(-1),         /* [1].id: inactive */
	BE32(2),          /* ret */
};

/* The live ERROR reply to DOMAIN_LOOKUP_BY_NAME("no-such-domain-xyz"). */
static const uint8_t error_reply[] = {
	BE32(0xe0),       /* length 224 */
	BE32(0x20008086), /* prog REMOTE */
	BE32(1),          /* vers */
	BE32(0x17),       /* proc 23 DOMAIN_LOOKUP_BY_NAME */
	BE32(1),          /* type REPLY */
	BE32(0x13),       /* serial 19 */
	BE32(1),          /* status ERROR */
	BE32(0x2a),       /* code 42: no domain */
	BE32(0x0a),       /* domain 10: QEMU */
	BE32(1), BE32(0x43), /* message: present, 67 bytes + 1 pad */
	'D', 'o', 'm', 'a', 'i', 'n', ' ', 'n', 'o', 't', ' ', 'f', 'o', 'u',
	'n', 'd', ':', ' ', 'n', 'o', ' ', 'd', 'o', 'm', 'a', 'i', 'n', ' ',
	'w', 'i', 't', 'h', ' ', 'm', 'a', 't', 'c', 'h', 'i', 'n', 'g', ' ',
	'n', 'a', 'm', 'e', ' ', '\'', 'n', 'o', '-', 's', 'u', 'c', 'h', '-',
	'd', 'o', 'm', 'a', 'i', 'n', '-', 'x', 'y', 'z', '\'', 0,
	BE32(2),          /* level: error */
	BE32(0),          /* dom: absent */
	BE32(1), BE32(0x14), /* str1: present, 20 bytes */
	'D', 'o', 'm', 'a', 'i', 'n', ' ', 'n', 'o', 't', ' ', 'f', 'o', 'u',
	'n', 'd', ':', ' ', '%', 's',
	BE32(1), BE32(0x31), /* str2: present, 49 bytes + 3 pad */
	'n', 'o', ' ', 'd', 'o', 'm', 'a', 'i', 'n', ' ', 'w', 'i', 't', 'h',
	' ', 'm', 'a', 't', 'c', 'h', 'i', 'n', 'g', ' ', 'n', 'a', 'm', 'e',
	' ', '\'', 'n', 'o', '-', 's', 'u', 'c', 'h', '-', 'd', 'o', 'm', 'a',
	'i', 'n', '-', 'x', 'y', 'z', '\'', 0, 0, 0,
	BE32(0),          /* str3: absent */
	BE32(-1),         /* int1 */
	BE32(-1),         /* int2 */
	BE32(0),          /* net: absent */
};

/* The live lifecycle MESSAGE: domain "test" SUSPENDED/PAUSED, callback 0. */
static const uint8_t lifecycle_msg[] = {
	BE32(0x44),       /* length 68 */
	BE32(0x20008086), /* prog REMOTE */
	BE32(1),          /* vers */
	BE32(0x13e),      /* proc 318 DOMAIN_EVENT_CALLBACK_LIFECYCLE */
	BE32(2),          /* type MESSAGE */
	BE32(1),          /* serial: 1, as libvirtd 9.0 sends it */
	BE32(0),          /* status OK */
	BE32(0),          /* callbackID */
	BE32(4), 't', 'e', 's', 't', /* dom.name */
	UUID_TEST,        /* dom.uuid */
	BE32(1),          /* dom.id */
	BE32(3),          /* event SUSPENDED */
	BE32(0),          /* detail PAUSED */
};

/* The live QEMU monitor event MESSAGE: STOP, no details. */
static const uint8_t monitor_msg[] = {
	BE32(0x5c),       /* length 92 */
	BE32(0x20008087), /* prog QEMU */
	BE32(1),          /* vers */
	BE32(6),          /* proc DOMAIN_MONITOR_EVENT */
	BE32(2),          /* type MESSAGE */
	BE32(1),          /* serial */
	BE32(0),          /* status OK */
	BE32(0x51c),      /* callbackID 1308 */
	BE32(9), 'p', 'r', 'o', 'b', 'e', '-', 't', 'm', 'p', 0, 0, 0,
	UUID_B,           /* dom.uuid */
	BE32(0x69),       /* dom.id 105 */
	BE32(4), 'S', 'T', 'O', 'P', /* event */
	BE32(0), BE32(0x6b05b3a0), /* seconds (hyper) */
	BE32(0x0003aa61), /* micros 240225 */
	BE32(0),          /* details: absent */
};

/* Payload of a monitor event whose details are present. */
static const uint8_t monitor_payload_details[] = {
	BE32(7),          /* callbackID */
	BE32(1), 'x', 0, 0, 0, /* dom.name */
	UUID_B,           /* dom.uuid */
	BE32(3),          /* dom.id */
	BE32(8), 'S', 'H', 'U', 'T', 'D', 'O', 'W', 'N', /* event */
	BE32(0), BE32(1700000000), /* seconds */
	BE32(5),          /* micros */
	BE32(1), BE32(14), /* details: present, 14 bytes + 2 pad */
	'{', '"', 'g', 'u', 'e', 's', 't', '"', ':', 't', 'r', 'u', 'e', '}',
	0, 0,
};

static void test_connect_open_encode(void)
{
	vrpc_nonnull_string name = "qemu:///system";
	vrpc_connect_open_args a = { .name = &name, .flags = 0 };
	uint8_t *buf = NULL;
	size_t size = 0;

	CHECK(vrpc_call_encode(VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_OPEN, 2,
			       VRPC_XDR(xdr_vrpc_connect_open_args), &a, &buf,
			       &size) == 0);
	CHECK(size == sizeof(connect_open_call));
	CHECK(buf && !memcmp(buf, connect_open_call, sizeof(connect_open_call)));
	free(buf);

	/* A void CALL is the bare header. */
	buf = NULL;
	CHECK(vrpc_call_encode(VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_LIST, 0,
			       NULL, NULL, &buf, &size) == 0);
	CHECK(size == 28 && buf[3] == 28 && buf[15] == 66);
	free(buf);

	/* A string over VRPC_STRING_MAX does not encode. */
	char *big = malloc(VRPC_STRING_MAX + 2);
	vrpc_domain_lookup_by_name_args la = { .name = big };

	memset(big, 'x', VRPC_STRING_MAX + 1);
	big[VRPC_STRING_MAX + 1] = '\0';
	buf = NULL;
	CHECK(vrpc_call_encode(VRPC_PROGRAM_REMOTE,
			       VRPC_PROC_DOMAIN_LOOKUP_BY_NAME, 1,
			       VRPC_XDR(xdr_vrpc_domain_lookup_by_name_args),
			       &la, &buf, &size) == -EINVAL);
	CHECK(buf == NULL);
	/* One byte less is the largest string there is. */
	big[VRPC_STRING_MAX] = '\0';
	CHECK(vrpc_call_encode(VRPC_PROGRAM_REMOTE,
			       VRPC_PROC_DOMAIN_LOOKUP_BY_NAME, 1,
			       VRPC_XDR(xdr_vrpc_domain_lookup_by_name_args),
			       &la, &buf, &size) == 0);
	CHECK(size == 28 + 4 + VRPC_STRING_MAX);
	free(buf);
	free(big);
}

static void test_header(void)
{
	struct vrpc_header h;

	CHECK(vrpc_header_decode(list_reply, sizeof(list_reply), &h) == 0);
	CHECK(h.len == 92 && h.prog == VRPC_PROGRAM_REMOTE && h.vers == 1);
	CHECK(h.proc == 273 && h.type == VRPC_REPLY && h.serial == 5);
	CHECK(h.status == VRPC_OK);
	CHECK(vrpc_header_decode(list_reply, 27, &h) == -EPROTO);

	uint8_t out[28];

	vrpc_header_encode(&h, out);
	CHECK(!memcmp(out, list_reply, 28));
}

static void test_len_limits(void)
{
	const uint8_t l27[] = { BE32(27) }, l28[] = { BE32(28) },
		      l0[] = { BE32(0) }, lmax[] = { BE32(4 + 33554432) },
		      lmax1[] = { BE32(4 + 33554432 + 1) },
		      lhuge[] = { BE32(0xffffffff) };
	uint32_t len = 1234;

	CHECK(vrpc_len_decode(l27, &len) == -EPROTO && len == 1234);
	CHECK(vrpc_len_decode(l0, &len) == -EPROTO && len == 1234);
	CHECK(vrpc_len_decode(l28, &len) == 0 && len == 28);
	CHECK(vrpc_len_decode(lmax, &len) == 0 && len == 33554436);
	len = 1234;
	CHECK(vrpc_len_decode(lmax1, &len) == -EMSGSIZE && len == 1234);
	CHECK(vrpc_len_decode(lhuge, &len) == -EMSGSIZE && len == 1234);
	CHECK(VRPC_LEN_MAX == 33554436u && VRPC_STRING_MAX == 4194304);

	/* A header whose length word lies is refused as a whole. */
	uint8_t hdr[28];
	struct vrpc_header h;

	memcpy(hdr, list_reply, 28);
	memcpy(hdr, l27, 4);
	CHECK(vrpc_header_decode(hdr, 28, &h) == -EPROTO);
	memcpy(hdr, lmax1, 4);
	CHECK(vrpc_header_decode(hdr, 28, &h) == -EMSGSIZE);
}

static void test_list_reply(void)
{
	vrpc_connect_list_all_domains_ret r;
	static const uint8_t uuid_b[16] = { UUID_B };
	const uint8_t *pl = list_reply + 28;
	size_t n = sizeof(list_reply) - 28;

	memset(&r, 0, sizeof(r));
	CHECK(vrpc_payload_decode(pl, n,
				  VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
				  &r) == 0);
	CHECK(r.domains.domains_len == 2 && r.ret == 2);
	if (r.domains.domains_len == 2) {
		CHECK(!strcmp(r.domains.domains_val[0].name, "a"));
		CHECK(r.domains.domains_val[0].id == 1);
		CHECK(r.domains.domains_val[0].uuid[0] == 0x66);
		CHECK(!strcmp(r.domains.domains_val[1].name, "web"));
		CHECK(r.domains.domains_val[1].id == -1);
		CHECK(!memcmp(r.domains.domains_val[1].uuid, uuid_b, 16));
	}

	/* Encoding it back gives the same bytes. */
	struct vrpc_header h;
	uint8_t *buf = NULL;
	size_t size = 0;

	vrpc_header_decode(list_reply, sizeof(list_reply), &h);
	CHECK(vrpc_packet_encode(&h, VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
				 &r, &buf, &size) == 0);
	CHECK(size == sizeof(list_reply) && !memcmp(buf, list_reply, size));
	free(buf);
	xdr_free(VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret), &r);

	/* Every truncation fails, and leaves nothing allocated. */
	for (size_t i = 0; i < n; i++) {
		memset(&r, 0, sizeof(r));
		CHECK(vrpc_payload_decode(pl, i,
			VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
			&r) == -EPROTO);
		CHECK(r.domains.domains_val == NULL);
	}
	/* Trailing bytes are refused too. */
	uint8_t longer[sizeof(list_reply) + 4] = { 0 };

	memcpy(longer, pl, n);
	memset(&r, 0, sizeof(r));
	CHECK(vrpc_payload_decode(longer, n + 4,
		VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret), &r) == -EPROTO);
}

static void test_lying_lengths(void)
{
	vrpc_connect_list_all_domains_ret r;
	vrpc_domain_get_xml_desc_ret x;
	uint8_t buf[sizeof(list_reply) - 28];
	const size_t off_name0 = 4;   /* domains[0].name length */
	const size_t off_count = 0;   /* domains count */
	static const uint32_t lies[] = { 0xffffffff, 0x80000000, 4194305,
					 4194304, 1000, 5 };

	for (size_t i = 0; i < sizeof(lies) / sizeof(*lies); i++) {
		const uint8_t l[] = { BE32(lies[i]) };

		memcpy(buf, list_reply + 28, sizeof(buf));
		memcpy(buf + off_name0, l, 4);
		memset(&r, 0, sizeof(r));
		CHECK(vrpc_payload_decode(buf, sizeof(buf),
			VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
			&r) == -EPROTO);
		CHECK(r.domains.domains_val == NULL);
	}
	/* Array counts: over the limit, and within it but not backed. */
	static const uint32_t counts[] = { 0xffffffff, 16385, 16384, 3 };

	for (size_t i = 0; i < sizeof(counts) / sizeof(*counts); i++) {
		const uint8_t l[] = { BE32(counts[i]) };

		memcpy(buf, list_reply + 28, sizeof(buf));
		memcpy(buf + off_count, l, 4);
		memset(&r, 0, sizeof(r));
		CHECK(vrpc_payload_decode(buf, sizeof(buf),
			VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
			&r) == -EPROTO);
		CHECK(r.domains.domains_val == NULL);
	}
	/* A string that claims more than the limit, with the bytes absent. */
	const uint8_t big[] = { BE32(4194305), 'a', 'b', 'c', 'd' };

	memset(&x, 0, sizeof(x));
	CHECK(vrpc_payload_decode(big, sizeof(big),
		VRPC_XDR(xdr_vrpc_domain_get_xml_desc_ret), &x) == -EPROTO);
	CHECK(x.xml == NULL);
	/* Non-zero padding is not our business (libvirt does not check). */
}

static void test_error_reply(void)
{
	struct vrpc_header h;
	char *msg = NULL;
	int code = 0;

	CHECK(vrpc_header_decode(error_reply, sizeof(error_reply), &h) == 0);
	CHECK(h.len == sizeof(error_reply) && h.status == VRPC_ERROR);
	CHECK(h.serial == 19 && h.proc == 23);
	CHECK(vrpc_error_decode(error_reply + 28, sizeof(error_reply) - 28,
				&code, &msg) == 0);
	CHECK(code == 42);
	CHECK(msg && !strcmp(msg, "Domain not found: no domain with matching "
				  "name 'no-such-domain-xyz'"));
	CHECK(code == VRPC_ERR_NO_DOMAIN);
	CHECK(vrpc_errno(h.prog, h.proc, code) == -ENOENT);
	free(msg);

	/* The full structure. */
	vrpc_error e;

	memset(&e, 0, sizeof(e));
	CHECK(vrpc_payload_decode(error_reply + 28, sizeof(error_reply) - 28,
				  VRPC_XDR(xdr_vrpc_error), &e) == 0);
	CHECK(e.domain == 10 && e.level == 2 && !e.dom && !e.net);
	CHECK(e.str1 && !strcmp(*e.str1, "Domain not found: %s"));
	CHECK(e.str2 && strlen(*e.str2) == 49 && !e.str3);
	CHECK(e.int1 == -1 && e.int2 == -1);
	xdr_free(VRPC_XDR(xdr_vrpc_error), &e);

	/* Truncated anywhere: -EPROTO, no output, nothing leaked. */
	for (size_t i = 0; i < sizeof(error_reply) - 28; i++) {
		msg = NULL;
		code = 77;
		CHECK(vrpc_error_decode(error_reply + 28, i, &code, &msg) ==
		      -EPROTO);
		CHECK(msg == NULL && code == 77);
	}

	/* No message: a made-up one that names the code. */
	const uint8_t bare[] = {
		BE32(55), BE32(10), BE32(0) /* message absent */, BE32(2),
		BE32(0), BE32(0), BE32(0), BE32(0), BE32(-1), BE32(-1), BE32(0),
	};

	CHECK(vrpc_error_decode(bare, sizeof(bare), &code, &msg) == 0);
	CHECK(code == 55 && msg && strstr(msg, "55"));
	free(msg);
}

static void test_lifecycle(void)
{
	vrpc_domain_event_callback_lifecycle_msg m;
	struct vrpc_header h;

	CHECK(vrpc_header_decode(lifecycle_msg, sizeof(lifecycle_msg), &h) == 0);
	CHECK(h.prog == VRPC_PROGRAM_REMOTE && h.type == VRPC_MESSAGE);
	CHECK(h.proc == VRPC_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE);
	memset(&m, 0, sizeof(m));
	CHECK(vrpc_payload_decode(lifecycle_msg + 28, sizeof(lifecycle_msg) - 28,
		VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg),
		&m) == 0);
	CHECK(m.callbackID == 0 && m.dom.name && !strcmp(m.dom.name, "test"));
	CHECK(m.dom.id == 1 && m.event == 3 && m.detail == 0);
	CHECK(m.dom.uuid[15] == 0x3f);

	struct vrpc_header hh = h;
	uint8_t *buf = NULL;
	size_t size = 0;

	CHECK(vrpc_packet_encode(&hh,
		VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg), &m,
		&buf, &size) == 0);
	CHECK(size == sizeof(lifecycle_msg) &&
	      !memcmp(buf, lifecycle_msg, size));
	free(buf);
	xdr_free(VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg), &m);

	for (size_t i = 0; i < sizeof(lifecycle_msg) - 28; i++) {
		memset(&m, 0, sizeof(m));
		CHECK(vrpc_payload_decode(lifecycle_msg + 28, i,
			VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg),
			&m) == -EPROTO);
		CHECK(m.dom.name == NULL);
	}
}

static void test_monitor_event(void)
{
	vrpc_qemu_domain_monitor_event_msg m;
	struct vrpc_header h;

	CHECK(vrpc_header_decode(monitor_msg, sizeof(monitor_msg), &h) == 0);
	CHECK(h.prog == VRPC_PROGRAM_QEMU && h.type == VRPC_MESSAGE);
	CHECK(h.proc == VRPC_QEMU_PROC_DOMAIN_MONITOR_EVENT);
	memset(&m, 0, sizeof(m));
	CHECK(vrpc_payload_decode(monitor_msg + 28, sizeof(monitor_msg) - 28,
		VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg), &m) == 0);
	CHECK(m.callbackID == 1308 && !strcmp(m.dom.name, "probe-tmp"));
	CHECK(m.dom.id == 105 && !strcmp(m.event, "STOP"));
	CHECK(m.seconds == 0x6b05b3a0 && m.micros == 240225);
	CHECK(m.details == NULL);
	xdr_free(VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg), &m);

	memset(&m, 0, sizeof(m));
	CHECK(vrpc_payload_decode(monitor_payload_details,
		sizeof(monitor_payload_details),
		VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg), &m) == 0);
	CHECK(!strcmp(m.event, "SHUTDOWN") && m.seconds == 1700000000);
	CHECK(m.details && !strcmp(*m.details, "{\"guest\":true}"));
	xdr_free(VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg), &m);

	for (size_t i = 0; i < sizeof(monitor_payload_details); i++) {
		memset(&m, 0, sizeof(m));
		CHECK(vrpc_payload_decode(monitor_payload_details, i,
			VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg),
			&m) == -EPROTO);
		CHECK(m.dom.name == NULL && m.event == NULL && !m.details);
	}
}

/* The numbers are libvirt's ABI (virterror.h). */
static void test_errno_map(void)
{
	const uint32_t R = VRPC_PROGRAM_REMOTE;
	const int32_t get = VRPC_PROC_DOMAIN_GET_XML_DESC;

	CHECK(VRPC_ERR_NO_SUPPORT == 3 && VRPC_ERR_INVALID_ARG == 8);
	CHECK(VRPC_ERR_RPC == 39 && VRPC_ERR_NO_DOMAIN == 42);
	CHECK(VRPC_ERR_AUTH_FAILED == 45 && VRPC_ERR_OPERATION_INVALID == 55);
	CHECK(VRPC_ERR_OPERATION_TIMEOUT == 68);
	CHECK(VRPC_ERR_ARGUMENT_UNSUPPORTED == 74);
	CHECK(VRPC_ERR_OPERATION_UNSUPPORTED == 84);
	CHECK(VRPC_ERR_ACCESS_DENIED == 88);

	CHECK(vrpc_errno(R, get, 42) == -ENOENT);
	CHECK(vrpc_errno(R, get, 55) == -EBUSY);
	CHECK(vrpc_errno(R, get, 8) == -EINVAL &&
	      vrpc_errno(R, get, 74) == -EINVAL);
	CHECK(vrpc_errno(R, get, 3) == -EOPNOTSUPP &&
	      vrpc_errno(R, get, 84) == -EOPNOTSUPP);
	CHECK(vrpc_errno(R, get, 45) == -EACCES &&
	      vrpc_errno(R, get, 88) == -EACCES);
	CHECK(vrpc_errno(R, get, 68) == -ETIMEDOUT);
	CHECK(vrpc_errno(R, get, 39) == -EPROTO);
	CHECK(vrpc_errno(R, get, 1) == -EIO && vrpc_errno(R, get, 9) == -EIO);
	CHECK(vrpc_errno(R, get, -5) == -EIO &&
	      vrpc_errno(R, get, 100000) == -EIO);
	/* A verb the state forbids is busy; a read of what only a running
	 * domain has finds nothing; the same numbers in another program are
	 * not those calls. */
	CHECK(vrpc_errno(R, VRPC_PROC_DOMAIN_SUSPEND, 55) == -EBUSY);
	CHECK(vrpc_errno(VRPC_PROGRAM_QEMU,
			 VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND, 55) == -ENODATA);
	CHECK(vrpc_errno(R, VRPC_PROC_DOMAIN_SCREENSHOT, 55) == -ENODATA);
	CHECK(vrpc_errno(R, VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND, 55) ==
	      -EBUSY);
	CHECK(vrpc_errno(VRPC_PROGRAM_QEMU, VRPC_PROC_DOMAIN_SCREENSHOT, 55) ==
	      -EBUSY);
	CHECK(vrpc_errno(VRPC_PROGRAM_QEMU,
			 VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND, 42) == -ENOENT);
	/* Whatever polkit answers is a refusal. */
	CHECK(vrpc_errno(R, VRPC_PROC_AUTH_POLKIT, 1) == -EACCES);
	CHECK(vrpc_errno(R, VRPC_PROC_AUTH_POLKIT, 45) == -EACCES);
	/* A domain's life and snapshots. */
	CHECK(vrpc_errno(R, get, 27) == -EINVAL &&
	      vrpc_errno(R, get, 35) == -EINVAL &&
	      vrpc_errno(R, get, 92) == -EINVAL &&
	      vrpc_errno(R, get, 71) == -EINVAL);
	CHECK(vrpc_errno(R, get, 28) == -EEXIST);
	CHECK(vrpc_errno(R, get, 72) == -ENOENT &&
	      vrpc_errno(R, get, 103) == -ENOENT);
	CHECK(vrpc_errno(R, get, 87) == -EBUSY &&
	      vrpc_errno(R, get, 67) == -EOPNOTSUPP);
}

/* Arbitrary bytes through every decoder: no crash, no leak (valgrind). */
static void test_garbage(void)
{
	static const xdrproc_t fns[] = {
		VRPC_XDR(xdr_vrpc_error),
		VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret),
		VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg),
		VRPC_XDR(xdr_vrpc_qemu_domain_monitor_event_msg),
		VRPC_XDR(xdr_vrpc_auth_list_ret),
		VRPC_XDR(xdr_vrpc_domain_get_xml_desc_ret),
	};
	union {
		vrpc_error e;
		vrpc_connect_list_all_domains_ret l;
		vrpc_domain_event_callback_lifecycle_msg lc;
		vrpc_qemu_domain_monitor_event_msg me;
		vrpc_auth_list_ret a;
		vrpc_domain_get_xml_desc_ret x;
	} u;
	uint8_t buf[96];
	uint32_t seed = 12345;

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = iter % sizeof(buf);

		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245 + 12345;
			/* Mostly small words, so that lengths and flags are
			 * sometimes plausible. */
			buf[i] = (seed >> 16) % 4 ? (seed >> 24) % 3 : seed >> 8;
		}
		for (size_t f = 0; f < sizeof(fns) / sizeof(*fns); f++) {
			memset(&u, 0, sizeof(u));
			if (vrpc_payload_decode(buf, n, fns[f], &u) == 0)
				xdr_free(fns[f], &u);
		}
	}
}

/* CALL CONNECT_GET_ALL_DOMAIN_STATS for every domain, serial 9. */
static const uint8_t stats_call[] = {
	BE32(40),         /* length: 28 + 12 */
	BE32(0x20008086), /* prog REMOTE */
	BE32(1),          /* vers */
	BE32(344),        /* proc CONNECT_GET_ALL_DOMAIN_STATS */
	BE32(0),          /* type CALL */
	BE32(9),          /* serial */
	BE32(0),          /* status OK */
	BE32(0),          /* doms: none, i.e. every domain */
	BE32(0),          /* stats: every group */
	BE32(0x20000000), /* flags: NOWAIT (1 << 29) */
};

/* Payload of a REPLY to CONNECT_GET_ALL_DOMAIN_STATS: three domains, the
 * first with one parameter of every type, the last with none. */
static const uint8_t stats_payload[] = {
	BE32(3),          /* retStats: count */
	/* [0] */
	BE32(1), 'a', 0, 0, 0, /* dom.name "a" */
	UUID_TEST,        /* dom.uuid */
	BE32(1),          /* dom.id */
	BE32(7),          /* params: count */
	BE32(11), 's', 't', 'a', 't', 'e', '.', 's', 't', 'a', 't', 'e', 0,
	BE32(1), BE32(1), /* INT 1 */
	BE32(12), 'v', 'c', 'p', 'u', '.', 'c', 'u', 'r', 'r', 'e', 'n', 't',
	BE32(2), BE32(0xfffffffe), /* UINT 4294967294 */
	BE32(7), 'x', '.', 'l', 'l', 'o', 'n', 'g', 0,
	BE32(3), BE32(-1), BE32(-5), /* LLONG -5 */
	BE32(8), 'c', 'p', 'u', '.', 't', 'i', 'm', 'e',
	BE32(4), BE32(1), BE32(2), /* ULLONG 4294967298 */
	BE32(8), 'x', '.', 'd', 'o', 'u', 'b', 'l', 'e',
	BE32(5), BE32(0x3ff80000), BE32(0), /* DOUBLE 1.5 */
	BE32(6), 'x', '.', 'b', 'o', 'o', 'l', 0, 0,
	BE32(6), BE32(1), /* BOOLEAN true */
	BE32(12), 'b', 'l', 'o', 'c', 'k', '.', '0', '.', 'n', 'a', 'm', 'e',
	BE32(7), BE32(3), 'v', 'd', 'a', 0, /* STRING "vda" */
	/* [1] */
	BE32(3), 'w', 'e', 'b', 0, /* dom.name "web" */
	UUID_B,           /* dom.uuid */
	BE32(-1),         /* dom.id: inactive */
	BE32(1),          /* params: count */
	BE32(11), 's', 't', 'a', 't', 'e', '.', 's', 't', 'a', 't', 'e', 0,
	BE32(1), BE32(5), /* INT 5: shut off */
	/* [2] */
	BE32(1), 'e', 0, 0, 0, /* dom.name "e" */
	UUID_B,           /* dom.uuid */
	BE32(2),          /* dom.id */
	BE32(0),          /* params: none */
};

/* Offsets into stats_payload of words the lying variants change. */
#define STATS_OFF_COUNT 0         /* retStats count */
#define STATS_OFF_PARAMS0 32      /* [0].params count */
#define STATS_OFF_TYPE0 52        /* [0].params[0] type */
#define STATS_OFF_FIELD0 36       /* [0].params[0] field length */

static void test_stats_call(void)
{
	vrpc_connect_get_all_domain_stats_args a = {
		.stats = VRPC_DOMAIN_STATS_ALL,
		.flags = VRPC_GET_ALL_DOMAINS_STATS_NOWAIT,
	};
	uint8_t *buf = NULL;
	size_t size = 0;

	CHECK(VRPC_GET_ALL_DOMAINS_STATS_NOWAIT == 1u << 29);
	CHECK(vrpc_call_encode(VRPC_PROGRAM_REMOTE,
			       VRPC_PROC_CONNECT_GET_ALL_DOMAIN_STATS, 9,
			       VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_args),
			       &a, &buf, &size) == 0);
	CHECK(size == sizeof(stats_call));
	CHECK(buf && !memcmp(buf, stats_call, sizeof(stats_call)));
	free(buf);
}

static int decode_stats(const uint8_t *p, size_t size,
			vrpc_connect_get_all_domain_stats_ret *ret)
{
	memset(ret, 0, sizeof(*ret));
	return vrpc_payload_decode(p, size,
		VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_ret), ret);
}

static void free_stats(vrpc_connect_get_all_domain_stats_ret *ret)
{
	xdr_free(VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_ret),
		 (char *)ret);
}

static void test_stats_reply(void)
{
	vrpc_connect_get_all_domain_stats_ret r;
	const vrpc_domain_stats_record *d;
	const vrpc_typed_param *p;

	REQUIRE(decode_stats(stats_payload, sizeof(stats_payload), &r) == 0);
	REQUIRE(r.retStats.retStats_len == 3);
	d = &r.retStats.retStats_val[0];
	CHECK(!strcmp(d->dom.name, "a") && d->dom.id == 1);
	REQUIRE(d->params.params_len == 7);
	p = d->params.params_val;
	CHECK(!strcmp(p[0].field, "state.state") &&
	      p[0].value.type == VRPC_TYPED_PARAM_INT &&
	      p[0].value.vrpc_typed_param_value_u.i == 1);
	CHECK(!strcmp(p[1].field, "vcpu.current") &&
	      p[1].value.type == VRPC_TYPED_PARAM_UINT &&
	      p[1].value.vrpc_typed_param_value_u.ui == 4294967294u);
	CHECK(!strcmp(p[2].field, "x.llong") &&
	      p[2].value.type == VRPC_TYPED_PARAM_LLONG &&
	      p[2].value.vrpc_typed_param_value_u.l == -5);
	CHECK(!strcmp(p[3].field, "cpu.time") &&
	      p[3].value.type == VRPC_TYPED_PARAM_ULLONG &&
	      p[3].value.vrpc_typed_param_value_u.ul == 4294967298ull);
	CHECK(!strcmp(p[4].field, "x.double") &&
	      p[4].value.type == VRPC_TYPED_PARAM_DOUBLE &&
	      p[4].value.vrpc_typed_param_value_u.d == 1.5);
	CHECK(!strcmp(p[5].field, "x.bool") &&
	      p[5].value.type == VRPC_TYPED_PARAM_BOOLEAN &&
	      p[5].value.vrpc_typed_param_value_u.b == 1);
	CHECK(!strcmp(p[6].field, "block.0.name") &&
	      p[6].value.type == VRPC_TYPED_PARAM_STRING &&
	      !strcmp(p[6].value.vrpc_typed_param_value_u.s, "vda"));
	d = &r.retStats.retStats_val[1];
	CHECK(!strcmp(d->dom.name, "web") && d->dom.id == -1);
	CHECK(d->params.params_len == 1 &&
	      d->params.params_val[0].value.vrpc_typed_param_value_u.i == 5);
	d = &r.retStats.retStats_val[2];
	CHECK(!strcmp(d->dom.name, "e") && d->params.params_len == 0);

	/* It encodes back to the same bytes. */
	uint8_t *buf = NULL;
	size_t size = 0;
	const struct vrpc_header h = { .prog = VRPC_PROGRAM_REMOTE, .vers = 1,
				       .proc = 344, .type = VRPC_REPLY };

	CHECK(vrpc_packet_encode(&h,
		VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_ret), &r, &buf,
		&size) == 0);
	CHECK(size == 28 + sizeof(stats_payload) &&
	      !memcmp(buf + 28, stats_payload, sizeof(stats_payload)));
	free(buf);
	free_stats(&r);
}

/* A copy of stats_payload with the word at off replaced. */
static void lie(uint8_t *copy, size_t off, uint32_t v)
{
	memcpy(copy, stats_payload, sizeof(stats_payload));
	copy[off] = v >> 24;
	copy[off + 1] = v >> 16;
	copy[off + 2] = v >> 8;
	copy[off + 3] = v;
}

static bool refused(const uint8_t *p, size_t size)
{
	vrpc_connect_get_all_domain_stats_ret r;
	bool ok = decode_stats(p, size, &r) == -EPROTO &&
		  r.retStats.retStats_val == NULL;

	free_stats(&r);
	return ok;
}

static void test_stats_lying(void)
{
	uint8_t b[sizeof(stats_payload)];

	/* The offsets the variants use point where they say. */
	CHECK(stats_payload[STATS_OFF_COUNT + 3] == 3);
	CHECK(stats_payload[STATS_OFF_PARAMS0 + 3] == 7);
	CHECK(stats_payload[STATS_OFF_FIELD0 + 3] == 11);
	CHECK(stats_payload[STATS_OFF_TYPE0 + 3] == 1);

	/* Every prefix is refused, and so is a trailing byte. */
	bool all = true;

	for (size_t n = 0; n < sizeof(stats_payload); n++)
		all &= refused(stats_payload, n);
	CHECK(all);
	uint8_t longer[sizeof(stats_payload) + 4] = { 0 };

	memcpy(longer, stats_payload, sizeof(stats_payload));
	CHECK(refused(longer, sizeof(longer)));

	/* More domains than VRPC_DOMAIN_LIST_MAX, or than sent. */
	lie(b, STATS_OFF_COUNT, VRPC_DOMAIN_LIST_MAX + 1);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_COUNT, 4);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_COUNT, 0xffffffff);
	CHECK(refused(b, sizeof(b)));
	/* Too many parameters: over VRPC_DOMAIN_STATS_PARAMS_MAX, or more
	 * than sent (the largest count allowed, then one more than sent). */
	CHECK(VRPC_DOMAIN_STATS_PARAMS_MAX == 262144);
	lie(b, STATS_OFF_PARAMS0, VRPC_DOMAIN_STATS_PARAMS_MAX + 1);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_PARAMS0, VRPC_DOMAIN_STATS_PARAMS_MAX);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_PARAMS0, 8);
	CHECK(refused(b, sizeof(b)));
	/* A field longer than the bytes left, or than VRPC_STRING_MAX. */
	lie(b, STATS_OFF_FIELD0, 0x7fffffff);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_FIELD0, VRPC_STRING_MAX + 1);
	CHECK(refused(b, sizeof(b)));
	/* A type outside the union: none, and one past STRING. */
	lie(b, STATS_OFF_TYPE0, 0);
	CHECK(refused(b, sizeof(b)));
	lie(b, STATS_OFF_TYPE0, 8);
	CHECK(refused(b, sizeof(b)));
	/* A type that changes the value's size misreads the rest. */
	lie(b, STATS_OFF_TYPE0, VRPC_TYPED_PARAM_ULLONG);
	CHECK(refused(b, sizeof(b)));
}

int main(void)
{
	test_connect_open_encode();
	test_header();
	test_len_limits();
	test_list_reply();
	test_lying_lengths();
	test_error_reply();
	test_lifecycle();
	test_monitor_event();
	test_errno_map();
	test_garbage();
	test_stats_call();
	test_stats_reply();
	test_stats_lying();
	return check_finish("test-vrpc-codec");
}
