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
 * *ret, *ret_n untouched. Each state is as the listing saw it (libvirt: a
 * few bulk calls, whatever the number of domains; a domain that changed
 * during them may read as before): a subscriber's events after the call
 * began are newer.
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

/*
 * The exchange of a `qmp` file: what a user wrote (buf, len bytes) must be
 * one JSON object with a string "execute" member, white space around it
 * allowed (else -EINVAL saying what is wrong; nothing is sent; any "id" is
 * replaced by the driver's own). Returns 0 also when QEMU refused: the
 * exchange worked. Fills *ret (release it with hv_qmp_reply_release()).
 */
struct hv_qmp_reply {
	char *text;    /* the reply object as JSON text and "\n" */
	char *command; /* the "execute" member */
	int refusal;   /* 0, or QEMU's refusal as hv_qmp_command() maps it */
	char *desc;    /* with a refusal: QEMU's "desc" */
};
int hv_qmp_exchange(struct hv_conn *c, const char *name, const char *buf,
		    size_t len, struct hv_qmp_reply *ret, char **ret_error);
/* Frees what r holds and zeroes it. */
void hv_qmp_reply_release(struct hv_qmp_reply *r);

/*
 * What QEMU's answers mean, over either driver (built on hv_qmp()). Where
 * a function gives JSON text, it is QEMU's own JSON as files show it:
 * indented by two spaces, `"key": value`, then "\n" (*ret malloc'd, *ret_len
 * bytes). A domain that is not running is -ENODATA on libvirt; on the QMP
 * driver a QEMU that is gone is -ECONNREFUSED.
 */

/* Frees an array of n malloc'd names, as the functions below give. */
void hv_names_free(char **names, size_t n);

/*
 * The query-* commands this domain's QEMU offers that run without arguments
 * (every member of their argument type optional), from query-qmp-schema:
 * their names without "query-", sorted by strcmp(), in *ret (*ret_n names).
 */
int hv_query_list(struct hv_conn *c, const char *name, char ***ret,
		  size_t *ret_n, char **ret_error);

/* Runs query-WHAT without arguments: its "return" as JSON text. An error
 * reply of any class is -ENODATA (QEMU's answer about this VM or host:
 * no such device, no such feature), with QEMU's "desc" in *ret_error. */
int hv_query(struct hv_conn *c, const char *name, const char *what,
	     char **ret, size_t *ret_len, char **ret_error);

/*
 * The block devices of query-block, by name, in its order: an element's
 * "device" (a -drive id); else its qdev id (ID of /machine/peripheral/ID/...,
 * or the whole qdev); else its node name. Elements without a name, and the
 * later ones of a name met twice, are left out.
 */
int hv_block_devices(struct hv_conn *c, const char *name, char ***ret,
		     size_t *ret_n, char **ret_error);
/* The query-block (info) or query-blockstats (stats) element of the block
 * device called device (as hv_block_devices() names it), as JSON text;
 * -ENOENT when there is none. */
int hv_block_info(struct hv_conn *c, const char *name, const char *device,
		  char **ret, size_t *ret_len, char **ret_error);
int hv_block_stats(struct hv_conn *c, const char *name, const char *device,
		   char **ret, size_t *ret_len, char **ret_error);

/* A vCPU of query-cpus-fast: its index and the host thread running it. */
struct hv_vcpu_thread {
	int64_t index;
	int64_t thread_id;
};
/* The vCPUs (elements without both members are left out), in *ret
 * (malloc'd, *ret_n of them). */
int hv_vcpu_threads(struct hv_conn *c, const char *name,
		    struct hv_vcpu_thread **ret, size_t *ret_n,
		    char **ret_error);

/* The guest's memory in bytes: the balloon's "actual" size with a balloon
 * device, else base-memory + plugged-memory of query-memory-size-summary.
 * hv_set_memory() sets the balloon's target. */
int hv_memory(struct hv_conn *c, const char *name, uint64_t *ret,
	      char **ret_error);

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

/* ---- the serial console ----
 *
 * A domain's first console (libvirt: DOMAIN_OPEN_CONSOLE, never with its
 * FORCE flag, so a user's `virsh console` is never taken away; QMP driver:
 * the chardev socket found beside the monitor (qmp-dir: DIR/NAME.serial;
 * qmp:NAME=unix:PATH.qmp: PATH.serial), a QEMU `-serial
 * unix:PATH,server=on,wait=off` or `-chardev socket,...`).
 *
 * What the guest writes goes to fn as it comes, on one of lib/'s threads:
 * err 0 and len > 0 with data (borrowed for the call), then once len 0 at
 * the end, with err 0 when the peer ended it (the domain stopped, the
 * socket closed), the peer's errno otherwise, and msg the peer's message
 * (or NULL). fn must return quickly and must not call into c; none runs
 * after hv_console_close() returned.
 *
 * hv_console_open(): -ENODATA when the domain is not running or has no
 * console (no socket), -EBUSY when another client holds libvirt's console
 * (libvirt's message in *ret_error), -ENOENT for no such domain. At most
 * one console per domain and connection at a time. A QEMU chardev socket
 * serves one client: another client's connection waits in its backlog
 * (the QMP driver cannot tell EBUSY).
 */
struct hv_console;
typedef void (*hv_console_fn)(void *userdata, const char *data, size_t len,
			      int err, const char *msg);
int hv_console_open(struct hv_conn *c, const char *name, hv_console_fn fn,
		    void *userdata, struct hv_console **ret,
		    char **ret_error);
/* Sends len bytes to the guest's serial input, within the connection's
 * timeout (-ETIMEDOUT). -EPIPE once the console ended. */
int hv_console_write(struct hv_console *con, const char *buf, size_t len,
		     char **ret_error);
/* Closes (libvirt: aborts the stream, freeing the console for others).
 * Accepts NULL; returns NULL. */
struct hv_console *hv_console_close(struct hv_console *con);

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
 * CONNECT_GET_ALL_DOMAIN_STATS for the groups state, cpu-total, balloon,
 * vcpu, interface, block, perf and memory (not iothread, dirtyrate, vm:
 * more monitor commands per domain), with NOWAIT so that a domain busy in
 * a job gives what it can without a wait). Keys are
 * libvirt's (`state.state`, `cpu.time`, `balloon.current`, `vcpu.0.time`,
 * `net.0.rx.bytes`, `block.0.rd.bytes`, ...); the QMP driver gives the same
 * keys where QEMU can tell (see lib/hv-qmp.c and docs/design.md), and leaves
 * out a key it cannot (absent, never 0).
 *
 * Returns 0, a malloc'd array in *ret (NULL when *ret_n is 0; free it with
 * hv_stats_free()) and *ret_n; on failure a negative errno and *ret,
 * *ret_n untouched. A domain that fails alone (QMP: a hung QEMU) does not
 * fail the call: its entry says why in .error, within the connection's
 * timeout for the whole call. libvirt's one call has
 * HV_STATS_ALL_TIMEOUT_FACTOR times the connection's timeout (libvirtd
 * asks the QEMUs one after another: `virsh domstats` of 300 domains on a
 * loaded 2-core host took 42 s; 60 s at the default timeout, as long as a
 * silent peer's keepalive). The order of domains is unspecified.
 */
#define HV_STATS_ALL_TIMEOUT_FACTOR 12
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

/* ---- the guest agent (QEMU guest agent, org.qemu.guest_agent.0) ----
 *
 * libvirt: through libvirtd's agent calls (its QEMU_DOMAIN_AGENT_COMMAND,
 * which synchronises with the agent itself). QMP driver: the agent socket
 * found beside the monitor (qmp-dir: DIR/NAME.qga; qmp:NAME=unix:PATH.qmp:
 * PATH.qga), spoken to directly (lib/qga.c; docs/design.md "Guest agent").
 *
 * Errors common to these calls: -ENODATA when the domain has no agent (no
 * channel or socket; libvirt: also an agent that is not connected now),
 * -ETIMEDOUT when it did not answer within the deadline (the QMP driver
 * then fails later calls at once until the agent shows life again, or for
 * at most 10 s), -ENOENT for no such domain, and for an error the agent
 * itself sent, its class's errno (as hv_qmp_command()) with its "desc" in
 * *ret_error. A wedged agent never delays anything but calls to that
 * agent.
 *
 * Agent events come through hv_subscribe() as HV_EVENT_HYPERVISOR with
 * name "agent-lifecycle" and data {"state":"connected"} or
 * {"state":"disconnected"} (libvirt: its agent lifecycle event; QMP driver:
 * QEMU's VSERPORT_CHANGE of the port named org.qemu.guest_agent.0, which
 * needs a qdev id=, once hv_agent_state() has asked that domain).
 */

/* The largest output hv_agent_exec() returns: stdout and stderr each, after
 * base64 decoding (the agent's reply must also fit QMP_LINE_MAX, 8 MiB). */
#define HV_AGENT_EXEC_OUTPUT_MAX (2u << 20)

/*
 * Raw passthrough: `command_json` is one agent command object as text
 * ({"execute":"guest-info"}); *ret_reply gets the reply object as text
 * ({"return": ...} or {"error": ...}); an error reply is not a failure
 * here. timeout_ms <= 0: the connection's timeout; larger values are
 * capped to it.
 */
int hv_agent_command(struct hv_conn *c, const char *name,
		     const char *command_json, int timeout_ms,
		     char **ret_reply, char **ret_error);

/*
 * Whether the agent is connected now: *ret true or false (libvirt: the
 * channel's state in the live XML, kept by libvirtd; QMP driver: whether
 * the agent answers a guest-ping now, false at once while it is known
 * unresponsive). -ENODATA: the domain has no agent channel or socket.
 */
int hv_agent_state(struct hv_conn *c, const char *name, bool *ret,
		   char **ret_error);

/* What hv_agent_info() reads; formats in docs/design.md "Guest agent". */
enum hv_agent_info {
	HV_AGENT_HOSTNAME,   /* "NAME\n" (guest-get-host-name) */
	HV_AGENT_OS,         /* JSON of guest-get-osinfo's return, + "\n" */
	HV_AGENT_INTERFACES, /* JSON of guest-network-get-interfaces */
	HV_AGENT_ADDRESSES,  /* "IFACE ADDR/PREFIX\n" per address */
	HV_AGENT_USERS,      /* JSON of guest-get-users */
	HV_AGENT_FILESYSTEMS,/* JSON of guest-get-fsinfo */
	HV_AGENT_TIME,       /* "SECONDS.NANOSECONDS\n" (guest-get-time) */
	HV_AGENT_INFO_COUNT
};

/* The info's short name ("hostname", "addresses", ...), as the guest/
 * files are named; NULL for an out-of-range value. Static. */
const char *hv_agent_info_name(enum hv_agent_info what);

/*
 * Reads one of the above as text in *ret (malloc'd, NUL-terminated, ends
 * with "\n"), identical on both drivers. -EPROTO when the agent's answer
 * has not the documented shape.
 */
int hv_agent_info(struct hv_conn *c, const char *name,
		  enum hv_agent_info what, char **ret, char **ret_error);

/* What hv_agent_exec() gives. */
struct hv_agent_exec_result {
	int exit_code;  /* the exit status; -1 when ended by a signal */
	int signal;     /* the signal that ended it, or 0 */
	char *out;      /* stdout, out_len bytes (+ a NUL), malloc'd */
	size_t out_len;
	char *err;      /* stderr, err_len bytes (+ a NUL), malloc'd */
	size_t err_len;
};

/*
 * Runs argv[0] with argv (NULL-terminated; argv[0] is the path, looked up
 * in the guest's PATH) inside the guest (guest-exec with captured output,
 * then guest-exec-status polled until it exited), feeding it `input`
 * (input_len bytes, may be NULL) on stdin. Returns 0 and *ret (free with
 * hv_agent_exec_release()) once the process exited within timeout_ms (<= 0:
 * the connection's timeout; the whole run may take longer than one
 * call's). -ETIMEDOUT when it did not exit in time (it keeps running in
 * the guest), -EFBIG when its output is over HV_AGENT_EXEC_OUTPUT_MAX or
 * the agent truncated it.
 */
int hv_agent_exec(struct hv_conn *c, const char *name,
		  const char *const *argv, const char *input,
		  size_t input_len, int timeout_ms,
		  struct hv_agent_exec_result *ret, char **ret_error);

/* Frees what hv_agent_exec() gave and zeroes it. Accepts NULL. */
void hv_agent_exec_release(struct hv_agent_exec_result *r);

/*
 * Freezes (freeze true) or thaws the guest's file systems; *ret_count (may
 * be NULL) gets how many the agent froze or thawed. libvirt: DOMAIN_FSFREEZE
 * / DOMAIN_FSTHAW; QMP driver: guest-fsfreeze-freeze / -thaw.
 */
int hv_agent_fsfreeze(struct hv_conn *c, const char *name, bool freeze,
		      int *ret_count, char **ret_error);

/* ---- a domain's life: define, redefine, undefine, autostart, vCPUs ----
 *
 * libvirt only, except the vCPUs (both drivers); the QMP driver has no
 * definitions and answers -EOPNOTSUPP. A refusal by libvirt comes with
 * libvirt's own message in *ret_error and leaves everything as it was:
 * -EINVAL for XML that is malformed or fails libvirt's schema (the calls
 * ask libvirt to validate), -EEXIST for a name or uuid some other domain
 * has, -EBUSY where the domain's state forbids the operation (libvirt's
 * "operation invalid"), -ENOENT for no such domain.
 */

/*
 * Defines a new persistent domain from `xml` (virsh define, validated). A
 * domain with the XML's name or uuid that exists already is -EEXIST, even
 * one with both the same (that would be a redefinition: hv_redefine()). Of
 * two threads of one connection defining the same name at once, one wins
 * and the other gets -EEXIST; against another client of libvirtd, libvirt's
 * own rule holds (the same name and uuid redefine). On success the new
 * domain's name in *ret_name (malloc'd; ret_name may be NULL).
 */
int hv_define(struct hv_conn *c, const char *xml, char **ret_name,
	      char **ret_error);

/*
 * Creates and starts a transient domain from `xml` (virsh create,
 * validated); it is gone when it stops. -EEXIST: another domain has the
 * name or uuid; -EBUSY: that domain is running. *ret_name as hv_define().
 */
int hv_create(struct hv_conn *c, const char *xml, char **ret_name,
	      char **ret_error);

/*
 * Replaces the definition of domain `name` with a complete new `xml`
 * (virsh edit without the editor). The XML's <name> must be `name` and its
 * <uuid> the domain's: else -EINVAL with a message saying which, and
 * nothing is sent. A running domain keeps running as it is; the new
 * definition applies from its next start.
 */
int hv_redefine(struct hv_conn *c, const char *name, const char *xml,
		char **ret_error);

/*
 * Undefines domain `name`, with what goes with its definition (see
 * docs/design.md, "Undefine"): the UEFI variable store libvirt made for it
 * (<nvram>), libvirt's metadata of its snapshots and checkpoints (the
 * snapshots inside qcow2 images stay there) and its TPM state, as libvirt
 * does by default. Disks are never touched. A managed save image is
 * -EBUSY: it holds the guest's memory, the one thing undefine would lose
 * that the guest has not written to its disks (`virsh managedsave-remove`,
 * or start the domain). A running persistent domain becomes transient and
 * is gone when it stops; a transient one is -EBUSY.
 */
int hv_undefine(struct hv_conn *c, const char *name, char **ret_error);

/* Whether the domain starts when libvirtd does, in *ret. */
int hv_autostart(struct hv_conn *c, const char *name, bool *ret,
		 char **ret_error);

/* Sets it. A transient domain: -EBUSY (libvirt refuses). */
int hv_set_autostart(struct hv_conn *c, const char *name, bool on,
		     char **ret_error);

struct hv_vcpus {
	unsigned current; /* vCPUs the running domain has now (shut off:
			   * those it starts with) */
	unsigned maximum; /* the most it can have (libvirt: <vcpu>'s value;
			   * QMP: the machine's max-cpus) */
};

/* The domain's vCPU counts. */
int hv_vcpus(struct hv_conn *c, const char *name, struct hv_vcpus *ret,
	     char **ret_error);

/*
 * Sets the number of vCPUs of the running domain to n, by hot-plug (libvirt:
 * DOMAIN_SET_VCPUS_FLAGS, live; QMP: device_add of the CPUs that
 * query-hotpluggable-cpus offers). n outside 1..maximum: -EINVAL. Fewer
 * than now: libvirt unplugs; over QMP, -EOPNOTSUPP (an unplug needs the
 * guest's cooperation, which device_del does not wait for). A machine that
 * cannot hot-plug CPUs: -EOPNOTSUPP. Not running: -EBUSY (libvirt) or
 * -ECONNREFUSED (QMP).
 */
int hv_set_vcpus(struct hv_conn *c, const char *name, unsigned n,
		 char **ret_error);

/* ---- snapshots ----
 *
 * libvirt: its snapshots (internal, external, whatever the domain's disks
 * allow). QMP: QEMU's internal snapshots (savevm), in the domain's qcow2
 * images, made, loaded and deleted by snapshot-save / snapshot-load /
 * snapshot-delete jobs (QEMU >= 6.0) followed to their end. A snapshot is
 * named by a string of 1..HV_NAME_MAX bytes, printable, without '/': any
 * other name is -EINVAL. No such snapshot: -ENOENT.
 */

#define HV_SNAPSHOT_STATE_MAX 31

struct hv_snapshot {
	char name[HV_NAME_MAX + 1];
	char parent[HV_NAME_MAX + 1]; /* "" for a root or when unknown (QMP) */
	int64_t created;              /* epoch seconds */
	/* The domain state captured, libvirt's word ("running", "shutoff",
	 * "disk-snapshot", ...); QMP: "running" when it holds the VM's
	 * memory, "" when not. */
	char state[HV_SNAPSHOT_STATE_MAX + 1];
	bool current;                 /* the domain's current snapshot */
	uint64_t vm_state_size;       /* QMP: bytes of memory saved; libvirt 0 */
};

/*
 * Every snapshot of the domain, in a malloc'd array (free() it; NULL when
 * *ret_n is 0), parents before their children (libvirt), or in the order of
 * the images (QMP).
 */
int hv_snapshots(struct hv_conn *c, const char *name,
		 struct hv_snapshot **ret, size_t *ret_n, char **ret_error);

/* libvirt's XML of one snapshot in *ret (malloc'd). QMP: -EOPNOTSUPP. */
int hv_snapshot_xml(struct hv_conn *c, const char *name, const char *snap,
		    char **ret, char **ret_error);

enum hv_snapshot_flags {
	/* The disks only, not the memory (libvirt's DISK_ONLY: an external
	 * snapshot, new overlay files beside the images). QMP: -EOPNOTSUPP,
	 * its internal snapshots always hold the memory. */
	HV_SNAPSHOT_DISK_ONLY = 1u << 0,
};

/*
 * Takes snapshot `snap` of the domain, with an optional description (NULL:
 * none; QMP ignores it), and returns when it is complete. A name that
 * exists: -EEXIST. libvirt: a running domain's snapshot holds its memory
 * unless HV_SNAPSHOT_DISK_ONLY; the snapshot becomes the current one. QMP:
 * every writable qcow2 image gets it and its VM state goes to the first
 * one; an image that is not qcow2: -EOPNOTSUPP with QEMU's message.
 */
int hv_snapshot_create(struct hv_conn *c, const char *name, const char *snap,
		       const char *description, unsigned flags,
		       char **ret_error);

/* Reverts the domain to the snapshot: disks and, where it holds it,
 * memory and run state. */
int hv_snapshot_revert(struct hv_conn *c, const char *name, const char *snap,
		       char **ret_error);

/* Deletes the snapshot alone (libvirt: its children move to its parent). */
int hv_snapshot_delete(struct hv_conn *c, const char *name, const char *snap,
		       char **ret_error);

/* The name of the current snapshot in *ret (malloc'd); -ENOENT when there
 * is none. QMP: -EOPNOTSUPP (QEMU has no such notion). */
int hv_snapshot_current(struct hv_conn *c, const char *name, char **ret,
			char **ret_error);

/* The name of the snapshot's parent in *ret (malloc'd); -ENOENT when it
 * is a root (or no such snapshot: then the message says which). QMP:
 * -EOPNOTSUPP. */
int hv_snapshot_parent(struct hv_conn *c, const char *name, const char *snap,
		       char **ret, char **ret_error);
