/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The hypervisor abstraction: one API over every way hvfs reaches VMs.
 *
 * A struct hv_conn is one open source of domains, served by a driver:
 *   "qemu:///system", "qemu+unix:///system?socket=PATH", "test+unix:///default",
 *   "qemu+tcp://HOST[:PORT]/system"           libvirt driver (RPC, no libvirt.so)
 *   "qmp-dir:DIR"                              QMP driver: every socket DIR/NAME.qmp
 *   "qmp:NAME=unix:PATH", "qmp:NAME=tcp:H:P"   QMP driver: one monitor
 *
 * Domains are addressed by name. Every call is bounded by the connection's
 * timeout. All functions are safe to call from several threads at once on
 * the same connection, except hv_close() (no other call may be running or
 * follow) and hv_set_debug_log() (before any connection). A call blocks the
 * calling thread until the peer answers or the deadline passes; lib/ starts
 * its own threads (one reader per connection or monitor), where event
 * handlers run.
 *
 * Errors are negative errno values. A driver that lacks an operation returns
 * -EOPNOTSUPP. Where a function takes `char **ret_error` (may be NULL), a
 * failure stores there a malloc'd message for humans: the peer's own text
 * when the peer refused (QEMU's "desc", libvirt's message).
 *
 * Strings returned through non-const pointers are malloc'd and owned by the
 * caller; const pointers are borrowed from the connection.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HV_NAME_MAX 255
#define HV_UUID_STRLEN 36

/* libvirt's numbering, so both drivers speak one vocabulary. */
enum hv_state {
	HV_STATE_NOSTATE = 0,
	HV_STATE_RUNNING = 1,
	HV_STATE_BLOCKED = 2,
	HV_STATE_PAUSED = 3,
	HV_STATE_SHUTDOWN = 4, /* shutting down */
	HV_STATE_SHUTOFF = 5,
	HV_STATE_CRASHED = 6,
	HV_STATE_PMSUSPENDED = 7,
	HV_STATE_COUNT
};

/* "running", "paused", ...: a static string; NULL for an out-of-range
 * value. */
const char *hv_state_name(enum hv_state s);

enum hv_verb {
	HV_VERB_START,
	HV_VERB_POWERDOWN, /* ACPI power button */
	HV_VERB_SHUTDOWN,  /* ask the guest to shut down, by whatever means */
	HV_VERB_REBOOT,
	HV_VERB_RESET,     /* hard reset */
	HV_VERB_PAUSE,
	HV_VERB_RESUME,
	HV_VERB_DESTROY,   /* end the QEMU process now */
	HV_VERB_WAKEUP,
	HV_VERB_COUNT
};

#define HV_VERB_BIT(v) (1u << (v))

/* "powerdown", ...: a static string; NULL for an out-of-range value. */
const char *hv_verb_name(enum hv_verb v);

/*
 * Parses what was written to a control file: one verb, optionally followed
 * by one newline (a "\r\n" is accepted too). Anything else (empty input,
 * two lines, unknown word, spaces, NUL bytes) is -EINVAL.
 */
int hv_verb_parse(const char *buf, size_t len, enum hv_verb *ret);

struct hv_domain_info {
	char name[HV_NAME_MAX + 1];
	char uuid[HV_UUID_STRLEN + 1]; /* "" when the driver has none */
	int id;                        /* -1 when not running or not known */
	enum hv_state state;
};

/* What an event says. */
enum hv_event_kind {
	HV_EVENT_DEFINED,   /* a domain appeared */
	HV_EVENT_UNDEFINED, /* a domain is gone */
	HV_EVENT_STATE,     /* the state changed: see hv_event.state */
	HV_EVENT_HYPERVISOR,/* any other event from the hypervisor (QMP) */
	HV_EVENT_LOST,      /* the connection to the peer was lost; states unknown */
};

struct hv_event {
	enum hv_event_kind kind;
	const char *domain;    /* NULL for HV_EVENT_LOST of a whole connection */
	enum hv_state state;   /* HV_EVENT_STATE: the new state */
	const char *name;      /* the peer's event name ("STOP", "lifecycle") */
	const char *data_json; /* JSON text of the event's data, or NULL */
	int64_t seconds;       /* when it happened (peer's clock, epoch) */
	int64_t micros;
};

/*
 * Event handler: runs on a driver's thread; the event and its strings are
 * borrowed for the call. It must not call back into the same hv_conn and
 * must return quickly.
 */
typedef void (*hv_event_fn)(void *userdata, const struct hv_event *ev);

/*
 * Stores a printf-formatted message in *ret_error (freeing what was there;
 * on ENOMEM the old message stays) when ret_error is not NULL, and returns
 * err, so that
 * `return hv_error(ret_error, -EINVAL, "...")` works.
 */
int hv_error(char **ret_error, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Where lib/ sends its debug messages: failures it worked around, e.g. a
 * libvirt daemon that refuses QEMU monitor events. The default (NULL) drops
 * them. Set it before opening connections; fn may run on any thread.
 */
typedef void (*hv_log_fn)(const char *msg);
void hv_set_debug_log(hv_log_fn fn);

struct hv_options {
	int timeout_ms; /* deadline of every call into a peer; <= 0: 5000 */
};

struct hv_conn;

/*
 * Opens a connection for `uri` (see the top of this file). For libvirt this
 * connects and authenticates now; for QMP monitors it only checks the
 * address (monitors are reached when first used). Returns 0 and *ret, or a
 * negative errno: -EINVAL for a URI no driver takes; libvirt:
 * -ECONNREFUSED (no daemon), -EACCES (refused), -ETIMEDOUT, -EPROTO. opts
 * may be NULL (defaults). *ret belongs to the caller until hv_close().
 */
int hv_open(const char *uri, const struct hv_options *opts,
	    struct hv_conn **ret, char **ret_error);

/*
 * Closes and frees: ends the connection's threads and cancels its
 * subscription. Accepts NULL; returns NULL. No other thread may be using c,
 * and an event handler must not call it.
 */
struct hv_conn *hv_close(struct hv_conn *c);

/* The driver's name: "libvirt" or "qmp". A static string. */
const char *hv_driver_name(const struct hv_conn *c);

/* The name of the driver that would take `uri` (no I/O), or NULL. Static. */
const char *hv_uri_driver(const char *uri);

/* The URI the connection was opened with. Borrowed until hv_close(). */
const char *hv_uri(const struct hv_conn *c);

/*
 * Every domain of the connection, running or not, in a malloc'd array
 * (free() it), in no particular order. Returns 0, *ret (NULL when *ret_n is 0)
 * and *ret_n; on failure a negative errno (-ETIMEDOUT, -ENOTCONN, ...) and
 * *ret, *ret_n untouched.
 */
int hv_list_domains(struct hv_conn *c, struct hv_domain_info **ret,
		    size_t *ret_n, char **ret_error);

/* One domain by name, into *ret (caller's memory). -ENOENT when there is
 * no such domain. */
int hv_lookup(struct hv_conn *c, const char *name, struct hv_domain_info *ret,
	      char **ret_error);

/* The domain's state, asked of the peer now (QMP: query-status; a socket
 * nobody answers is HV_STATE_SHUTOFF). -ENOENT: no such domain. */
int hv_state(struct hv_conn *c, const char *name, enum hv_state *ret,
	     char **ret_error);

/* The domain's QEMU version, "MAJOR.MINOR.MICRO", in *ret (malloc'd, the
 * caller frees it). -ENODATA when the domain is not running. */
int hv_version(struct hv_conn *c, const char *name, char **ret,
	       char **ret_error);

/* The domain's XML description in *ret (malloc'd, the caller frees it).
 * libvirt only: -EOPNOTSUPP from the QMP driver. */
int hv_xml(struct hv_conn *c, const char *name, char **ret, char **ret_error);

/* The set of verbs this domain's driver accepts, as HV_VERB_BIT()s; 0 when
 * it has no control at all. No I/O. */
unsigned hv_verbs(struct hv_conn *c, const char *name);

/*
 * Runs a verb and returns when the peer has answered. A verb outside
 * hv_verbs() is -EOPNOTSUPP and nothing is sent.
 */
int hv_control(struct hv_conn *c, const char *name, enum hv_verb verb,
	       char **ret_error);

/*
 * Raw QMP: `command_json` is one command object as text; *ret_reply gets the
 * reply object as text ({"return": ...} or {"error": ...}). See
 * qmp_execute_json() for the contract.
 */
int hv_qmp(struct hv_conn *c, const char *name, const char *command_json,
	   char **ret_reply, char **ret_error);

/*
 * One QMP command by name, with `args_json` (a JSON object's text) or NULL
 * for none. Returns 0 and the JSON text of its "return" value in *ret_json
 * (may be NULL to discard it). A QMP error reply is its class's errno
 * (CommandNotFound -EOPNOTSUPP, DeviceNotFound -ENOENT, DeviceNotActive
 * -ENODEV, others -EIO) with QEMU's "desc" in *ret_error. Works on both
 * drivers (libvirt: monitor passthrough; a domain not running: -ENODATA).
 */
int hv_qmp_command(struct hv_conn *c, const char *name, const char *command,
		   const char *args_json, char **ret_json, char **ret_error);

/* The errno hv_qmp_command() gives for a QMP error class ("GenericError"). */
int hv_qmp_error_errno(const char *error_class);

/* The largest screenshot hv_screenshot() accepts. */
#define HV_SCREENSHOT_MAX (64u << 20)

/*
 * A fresh screenshot of the domain's first console as PNG (*ret, malloc'd,
 * *ret_len bytes). -ENODATA when the VM has no display (no console), or is
 * not running; -EFBIG beyond HV_SCREENSHOT_MAX.
 */
int hv_screenshot(struct hv_conn *c, const char *name, char **ret,
		  size_t *ret_len, char **ret_error);

/*
 * Sets the balloon target of a running domain to `bytes` (libvirt: the
 * domain's live current memory, rounded down to KiB). -EOPNOTSUPP when the
 * VM has no balloon device.
 */
int hv_set_memory(struct hv_conn *c, const char *name, uint64_t bytes,
		  char **ret_error);

/*
 * Subscribes fn to every domain's events, until hv_close(). fn runs on
 * one of the connection's threads (see hv_event_fn), never on the caller's.
 * At most one subscriber per connection (a second: -EBUSY). Returns
 * -EOPNOTSUPP when the driver cannot deliver events (the caller must then
 * re-read).
 */
int hv_subscribe(struct hv_conn *c, hv_event_fn fn, void *userdata);

/* ---- statistics ---- */

/* The type of a statistic's value: libvirt's typed parameter types. */
enum hv_stat_type {
	HV_STAT_INT = 1,     /* v.i */
	HV_STAT_UINT = 2,    /* v.ui */
	HV_STAT_LLONG = 3,   /* v.l */
	HV_STAT_ULLONG = 4,  /* v.ul */
	HV_STAT_DOUBLE = 5,  /* v.d */
	HV_STAT_BOOLEAN = 6, /* v.b */
	HV_STAT_STRING = 7,  /* v.s */
};

/* The longest key (libvirt's VIR_TYPED_PARAM_FIELD_LENGTH less its NUL). */
#define HV_STAT_KEY_MAX 79

/* One counter: key and value as `virsh domstats` shows them. */
struct hv_stat {
	const char *key; /* "cpu.time", "block.0.rd.bytes": printable ASCII,
			  * no space */
	enum hv_stat_type type;
	union {
		int32_t i;
		uint32_t ui;
		int64_t l;
		uint64_t ul;
		double d;
		bool b;
		const char *s; /* any bytes but NUL (a path may hold a '\n') */
	} v;
};

/* One domain's counters. */
struct hv_stats {
	char name[HV_NAME_MAX + 1];
	/* 0, or the negative errno why some or all of this domain's counters
	 * are missing (QMP: -ETIMEDOUT for a QEMU that did not answer). */
	int error;
	size_t n;
	struct hv_stat *stats; /* n entries, in the driver's order */
};

/*
 * Every domain's counters, in one call where the driver can (libvirt:
 * CONNECT_GET_ALL_DOMAIN_STATS for every stats group, with NOWAIT so that a
 * domain busy in a job gives what it can without a wait). Keys are
 * libvirt's (`state.state`, `cpu.time`, `balloon.current`, `vcpu.0.time`,
 * `net.0.rx.bytes`, `block.0.rd.bytes`, ...); the QMP driver gives the same
 * keys where QEMU can tell (see lib/hv-qmp.c and docs/design.md), and leaves
 * out a key it cannot (absent, never 0).
 *
 * Returns 0, a malloc'd array in *ret (NULL when *ret_n is 0; free it with
 * hv_stats_free()) and *ret_n; on failure a negative errno and *ret,
 * *ret_n untouched. A domain that fails alone (QMP: a hung QEMU) does not
 * fail the call: its entry says why in .error, within the connection's
 * timeout for the whole call. The order of domains is unspecified.
 */
int hv_stats_all(struct hv_conn *c, struct hv_stats **ret, size_t *ret_n,
		 char **ret_error);

/*
 * One domain's counters, as one entry of hv_stats_all() would give them:
 * *ret (free it with hv_stats_free(*ret, 1)). -ENOENT: no such domain. A
 * QEMU that did not answer is -ETIMEDOUT here.
 */
int hv_stats(struct hv_conn *c, const char *name, struct hv_stats **ret,
	     char **ret_error);

/* Frees what hv_stats_all() or hv_stats() gave: n entries, their counters,
 * keys and strings. Accepts NULL; returns NULL. */
struct hv_stats *hv_stats_free(struct hv_stats *v, size_t n);

/* A counter's value as `virsh domstats` prints it (%d, %u, %lld, %llu, %g,
 * 1/0, the string), NUL-terminated in buf; returns the length it needs,
 * like snprintf (negative for an unknown type). */
int hv_stat_format(const struct hv_stat *s, char *buf, size_t size);

/* The counter named key in one domain's counters; NULL if absent. */
const struct hv_stat *hv_stats_find(const struct hv_stats *st,
				    const char *key);
