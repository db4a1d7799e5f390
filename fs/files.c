/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The files of a domain directory: one table entry per kind of file, with
 * the function that makes its contents or runs what is written to it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "console.h"
#include "files.h"
#include "guest.h"
#include "kept.h"
#include "life.h"
#include "rich.h"
#include "snap.h"
#include "stats.h"
#include "tree.h"

/* Takes ownership of text and makes it the file's contents. */
static int contents(char *text, char **ret, size_t *ret_len)
{
	if (!text)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}

static int line(char **ret, size_t *ret_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int line(char **ret, size_t *ret_len, const char *fmt, ...)
{
	va_list ap;
	char *text;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (r < 0)
		return -ENOMEM;
	return contents(text, ret, ret_len);
}

static int read_state(struct dom *d, char **ret, size_t *ret_len,
		      char **ret_error)
{
	enum hv_state s;
	int r = dom_state(d, &s, ret_error);

	if (r < 0)
		return r;
	return line(ret, ret_len, "%s\n", hv_state_name(s) ?: "nostate");
}

static int read_version(struct dom *d, char **ret, size_t *ret_len,
			char **ret_error)
{
	char *v = NULL;
	int r = dom_version(d, &v, ret_error);

	if (r < 0)
		return r;
	r = line(ret, ret_len, "%s\n", v);
	free(v);
	return r;
}

static int read_name(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	return line(ret, ret_len, "%s\n", d->hv_name);
}

static int read_uuid(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error)
{
	char *u = NULL;
	int r = dom_uuid(d, &u, ret_error);

	if (r < 0)
		return r;
	r = line(ret, ret_len, "%s\n", u);
	free(u);
	return r;
}

static bool state_known(struct dom *d)
{
	enum hv_state s;

	return dom_state_cached(d, &s);
}

static bool always(struct dom *d)
{
	(void)d;
	return true;
}

static int read_id(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error)
{
	struct hv_domain_info info;
	int r = hv_lookup(dom_conn(d), d->hv_name, &info, ret_error);

	if (r < 0)
		return r;
	if (info.id < 0)
		return -ENODATA;
	return line(ret, ret_len, "%d\n", info.id);
}

static int read_xml(struct dom *d, char **ret, size_t *ret_len,
		    char **ret_error)
{
	char *xml = NULL;
	int r = hv_xml(dom_conn(d), d->hv_name, &xml, ret_error);

	if (r < 0)
		return r;
	return contents(xml, ret, ret_len);
}

static bool is_libvirt(struct dom *d);

static int read_control(struct dom *d, char **ret, size_t *ret_len,
			char **ret_error)
{
	unsigned verbs = hv_verbs(dom_conn(d), d->hv_name);
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return -ENOMEM;
	for (unsigned v = 0; v < HV_VERB_COUNT; v++)
		if (verbs & HV_VERB_BIT(v))
			fprintf(f, "%s\n", hv_verb_name(v));
	if (verbs && is_libvirt(d))
		fputs("undefine\n", f);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}

/*
 * Verbs whose call may outlast -o timeout (libvirt's destroy waits for QEMU
 * to die, start for it to come up) have until VERB_SLOW_MS to show their
 * effect. See "control" in docs/fs-layout.md.
 */
#define VERB_SLOW_MS 30000
#define VERB_POLL_MS 50

static void clear_error(char **ret_error)
{
	if (ret_error) {
		free(*ret_error);
		*ret_error = NULL;
	}
}

static int verb_deadline_ms(enum hv_verb verb)
{
	int t = hvfs_opts.timeout_ms;

	if (verb == HV_VERB_START || verb == HV_VERB_DESTROY)
		return t > VERB_SLOW_MS ? t : VERB_SLOW_MS;
	return t;
}

/* Whether state s shows that verb happened; never for verbs whose effect
 * is up to the guest (powerdown, shutdown, reboot, wakeup) or invisible
 * (reset). */
static bool verb_shows(enum hv_verb verb, enum hv_state s)
{
	switch (verb) {
	case HV_VERB_START:
		return s != HV_STATE_SHUTOFF && s != HV_STATE_NOSTATE;
	case HV_VERB_DESTROY:
		return s == HV_STATE_SHUTOFF;
	case HV_VERB_PAUSE:
		return s == HV_STATE_PAUSED;
	case HV_VERB_RESUME:
		return s == HV_STATE_RUNNING;
	default:
		return false;
	}
}

/*
 * Watches d's state until it shows verb's effect (0) or deadline_ms passes
 * (-ETIMEDOUT). A domain that left the tree shows a destroy.
 */
static int await_effect(struct dom *d, enum hv_verb verb, int64_t deadline_ms)
{
	for (;;) {
		enum hv_state s;
		struct dom *still;
		/* Evented: what events say, never an answer from a QEMU on its
		 * way out that would run ahead of its last events. */
		int r = source_evented(d->src) ?
			(dom_state_cached(d, &s) ? 0 : -EAGAIN) :
			dom_state(d, &s, NULL);

		if (r == 0 && verb_shows(verb, s))
			return 0;
		if (verb == HV_VERB_DESTROY) {
			still = tree_find_slot(d->slot);
			dom_unref(still);
			if (!still || r == -ENOENT)
				return 0;
		}
		if (hvfs_now_ms() + VERB_POLL_MS > deadline_ms)
			return -ETIMEDOUT;
		usleep(VERB_POLL_MS * 1000);
	}
}

/*
 * A destroy the peer answered: returns once the domain reads shutoff and a
 * listing made after that says whether it stays (a persistent libvirt
 * domain, a QMP socket that stays) or has left (a transient domain, a
 * QEMU that removed its socket), so that a read right after the write
 * gives the same answer every time: `shutoff`, or ENOENT. Not later than
 * deadline_ms: the destroy succeeded in any case.
 */
static int destroy_settle(struct dom *d, int64_t deadline_ms)
{
	if (await_effect(d, HV_VERB_DESTROY, deadline_ms) == 0)
		tree_relist(d, deadline_ms);
	else
		tree_state_unsure(d);
	return 0;
}

/*
 * The call ran out of time, but the peer may have acted (libvirt's destroy
 * goes on after we stop waiting): a verb whose effect shows in time
 * succeeds; else ETIMEDOUT, with an error line that says the outcome is
 * unknown.
 */
static int verb_timed_out(struct dom *d, enum hv_verb verb, int64_t start_ms,
			  char **ret_error)
{
	int64_t deadline = start_ms + verb_deadline_ms(verb);
	bool visible = false;

	for (unsigned s = 0; s < HV_STATE_COUNT; s++)
		visible = visible || verb_shows(verb, s);
	if (visible && await_effect(d, verb, deadline) == 0) {
		clear_error(ret_error);
		return verb == HV_VERB_DESTROY ? destroy_settle(d, deadline) : 0;
	}
	tree_state_unsure(d);
	clear_error(ret_error);
	return hv_error(ret_error, -ETIMEDOUT, "no answer within %g s, and %s: "
			"the outcome is unknown", hvfs_opts.timeout_ms / 1000.0,
			visible ? "the state does not show it" :
				  "no state shows this verb");
}

static int write_control(struct dom *d, const char *buf, size_t len,
			 char **ret_reply, size_t *ret_reply_len,
			 char **ret_error)
{
	int64_t start_ms = hvfs_now_ms();
	enum hv_verb verb;
	int r;

	if (life_is_undefine(buf, len))
		return life_undefine(d, ret_error);
	r = hv_verb_parse(buf, len, &verb);

	if (r < 0) {
		char shown[64];
		size_t n = 0;

		/* Show the rejected input, made printable and short, without
		 * the newline echo adds. */
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		for (size_t i = 0; i < len && n + 5 < sizeof(shown); i++) {
			unsigned char c = buf[i];

			if (c >= 0x20 && c < 0x7f && c != '\\')
				shown[n++] = c;
			else
				n += sprintf(shown + n, "\\x%02x", c);
		}
		shown[n] = '\0';
		return hv_error(ret_error, r, "unknown verb \"%s\"", shown);
	}
	r = hv_control(dom_conn(d), d->hv_name, verb, ret_error);
	if (r == -ETIMEDOUT)
		return verb_timed_out(d, verb, start_ms, ret_error);
	/* A QEMU may close its monitor before its answer to quit is out. */
	if (r == -ENOTCONN && verb == HV_VERB_DESTROY &&
	    source_evented(d->src) &&
	    await_effect(d, verb, start_ms + verb_deadline_ms(verb)) == 0) {
		clear_error(ret_error);
		r = 0;
	}
	if (r == 0 && verb == HV_VERB_DESTROY)
		return destroy_settle(d, start_ms + verb_deadline_ms(verb));
	/* Even a failed verb may have done something. A read that follows
	 * must not answer from before it: after one that worked, the state is
	 * asked now (its event may have come already), so that its size and
	 * time show it. */
	tree_state_unsure(d);
	if (r == 0 && source_evented(d->src)) {
		enum hv_state s;

		if (dom_state(d, &s, NULL) == 0)
			tree_inval_attrs(d);
	}
	return r;
}

static int read_error(struct dom *d, char **ret, size_t *ret_len,
		      char **ret_error)
{
	return contents(dom_error(d), ret, ret_len);
}

static bool is_libvirt(struct dom *d)
{
	return dom_is_libvirt(d);
}

static bool never(struct dom *d)
{
	(void)d;
	return false;
}

const struct file_type file_types[FK_COUNT] = {
	[FK_DIR] = { .mode = 0555 },
	[FK_STATE] = { .name = "state", .mode = 0444, .read = read_state,
		       .known = state_known },
	[FK_VERSION] = { .name = "version", .mode = 0444, .read = read_version,
			 .known = dom_version_cached },
	[FK_NAME] = { .name = "name", .mode = 0444, .read = read_name,
		      .known = always },
	[FK_UUID] = { .name = "uuid", .mode = 0444, .read = read_uuid,
		      .known = dom_uuid_cached },
	[FK_ID] = { .name = "id", .mode = 0444, .present = is_libvirt,
		    .read = read_id },
	[FK_XML] = { .name = "xml", .mode = 0644, .present = is_libvirt,
		     .read = read_xml, .write = life_write_xml, .whole = true },
	[FK_CONTROL] = { .name = "control", .mode = 0200, .read = read_control,
			 .write = write_control },
	[FK_ERROR] = { .name = "error", .mode = 0444, .read = read_error },
	[FK_EVENTS] = { .name = "events", .mode = 0444, .stream = true },
	[FK_QMP] = { .name = "qmp", .mode = 0600, .write = rich_write_qmp,
		     .exchange = true },
	[FK_CPUS] = { .name = "cpus", .mode = 0444, .read = rich_read_cpus },
	[FK_MEMORY] = { .name = "memory", .mode = 0644,
			.read = rich_read_memory, .write = rich_write_memory },
	/* What the console shows, and what any query says (over a hundred
	 * commands, more with every QEMU: VNC clients, chardev paths, ...):
	 * root's, and the ctlgroup's. */
	[FK_SCREEN] = { .name = "screen.png", .mode = 0400,
			.read = rich_read_screen },
	[FK_QUERY_DIR] = { .name = "query", .mode = 0500, .dir = true },
	[FK_BLOCK_DIR] = { .name = "block", .mode = 0555, .dir = true },
	[FK_QUERY] = { .name = "query", .mode = 0400, .family = true,
		       .read_arg = rich_read_query },
	[FK_BLOCK_DEV] = { .name = "block", .mode = 0555, .family = true,
			   .dir = true },
	[FK_BLOCK_INFO] = { .name = "block-info", .mode = 0444,
			    .family = true, .read_arg = rich_read_block_info },
	[FK_BLOCK_STATS] = { .name = "block-stats", .mode = 0444,
			     .family = true,
			     .read_arg = rich_read_block_stats },
	/* guest/: every domain has it; without an agent its files fail with
	 * ENODATA. Each read but state's runs a command in the guest: root's
	 * and the ctlgroup's, as libvirt gives agent calls only to read-write
	 * clients. */
	[FK_GUEST_DIR] = { .name = "guest", .mode = 0555, .dir = true },
#define GUEST(k, n, m, ...) [k] = { .name = n, .mode = m,                   \
				    .parent = FK_GUEST_DIR, __VA_ARGS__ }
	GUEST(FK_GUEST_STATE, "state", 0444, .read = guest_read_state),
	GUEST(FK_GUEST_HOSTNAME, "hostname", 0400,
	      .read = guest_read_hostname),
	GUEST(FK_GUEST_OS, "os", 0400, .read = guest_read_os),
	GUEST(FK_GUEST_INTERFACES, "interfaces", 0400,
	      .read = guest_read_interfaces),
	GUEST(FK_GUEST_ADDRESSES, "addresses", 0400,
	      .read = guest_read_addresses),
	GUEST(FK_GUEST_USERS, "users", 0400, .read = guest_read_users),
	GUEST(FK_GUEST_FILESYSTEMS, "filesystems", 0400,
	      .read = guest_read_filesystems),
	GUEST(FK_GUEST_TIME, "time", 0400, .read = guest_read_time),
	GUEST(FK_GUEST_EXEC, "exec", 0600, .write = guest_write_exec,
	      .exchange = true),
	GUEST(FK_GUEST_AGENT, "agent", 0600, .write = guest_write_agent,
	      .exchange = true),
	GUEST(FK_GUEST_CONTROL, "control", 0200, .read = guest_read_control,
	      .write = guest_write_control),
#undef GUEST
	/* What `virsh domstats` shows a read-only client. */
	[FK_STATS] = { .name = "stats", .mode = 0444, .read = stats_read_dom },
	[FK_METRICS_DIR] = { .name = ".metrics", .mode = 0555, .dir = true,
			     .top = true },
	[FK_METRICS] = { .name = "hvfs.prom", .mode = 0444, .top = true },
	[FK_AUTOSTART] = { .name = "autostart", .mode = 0644,
			   .present = is_libvirt, .read = life_read_autostart,
			   .write = life_write_autostart },
	[FK_VCPUS] = { .name = "vcpus", .mode = 0644, .read = life_read_vcpus,
		       .write = life_write_vcpus },
	/* snapshots/ (snap.c): mkdir in it takes a snapshot; rmdir never
	 * deletes one (docs/design.md). */
	[FK_SNAP_DIR] = { .name = "snapshots", .mode = 0755, .dir = true,
			  .makes = true },
	[FK_SNAP_CURRENT] = { .name = ".current", .mode = 0444,
			      .parent = FK_SNAP_DIR, .present = is_libvirt,
			      .read = snap_read_current },
	[FK_SNAP_TAKE] = { .name = ".take", .mode = 0200,
			   .parent = FK_SNAP_DIR, .read = snap_read_take,
			   .write = snap_write_take, .whole = true },
	[FK_SNAP] = { .name = "snapshot", .mode = 0555, .family = true,
		      .dir = true },
	[FK_SNAP_XML] = { .name = "snapshot-xml", .mode = 0444, .family = true,
			  .read_arg = snap_read_xml },
	[FK_SNAP_INFO] = { .name = "snapshot-info", .mode = 0444,
			   .family = true, .read_arg = snap_read_info },
	[FK_SNAP_CREATED] = { .name = "snapshot-created", .mode = 0444,
			      .family = true, .read_arg = snap_read_created },
	[FK_SNAP_STATE] = { .name = "snapshot-state", .mode = 0444,
			    .family = true, .read_arg = snap_read_state },
	[FK_SNAP_PARENT] = { .name = "snapshot-parent", .mode = 0444,
			     .family = true, .read_arg = snap_read_parent },
	[FK_SNAP_CONTROL] = { .name = "snapshot-control", .mode = 0200,
			      .family = true, .read_arg = snap_read_control,
			      .write_arg = snap_write_control },
	/* Above the domains (make.c, top.c): never in a domain's directory;
	 * written through ops.c, which collects the XML. */
	/* The serial console: what the guest prints (logins, secrets) and
	 * what it is typed: root's, and the ctlgroup's. */
	[FK_CONSOLE] = { .name = "console", .mode = 0600, .stream = true,
			 .write = console_write },
	[FK_DEFINE] = { .name = ".define", .mode = 0200, .present = never },
	[FK_CREATE] = { .name = ".create", .mode = 0200, .present = never },
};

/* The kind of the file called name in the directory of kind parent. */
static int kind_in(struct dom *d, unsigned parent, const char *name)
{
	for (unsigned k = 1; k < FK_COUNT; k++) {
		const struct file_type *t = &file_types[k];

		if (!t->family && !t->top && t->parent == parent &&
		    strcmp(t->name, name) == 0)
			return !t->present || t->present(d) ? (int)k : -ENOENT;
	}
	return -ENOENT;
}

/* Whether a directory of this kind holds fixed-name files. */
static bool fixed_dir(unsigned kind)
{
	return kind == FK_DIR || kind == FK_GUEST_DIR;
}

int file_kind_by_name(struct dom *d, const char *name)
{
	return kind_in(d, FK_DIR, name);
}

bool file_ctlgroup(enum file_kind kind)
{
	return hvfs_opts.have_ctlgroup &&
	       (file_kind_writable(kind) || file_types[kind].makes ||
		!(file_types[kind].mode & 0007));
}

mode_t file_mode(enum file_kind kind)
{
	mode_t m = file_types[kind].mode;

	if (file_ctlgroup(kind))
		m |= (m & 0700) >> 3;
	return m;
}

int files_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		  size_t *ret_n)
{
	struct entry *e = NULL, *more = NULL;
	size_t n = 0, n_more = 0;
	int r = 0;

	if (!fixed_dir(ino_kind(dir)) && ino_kind(dir) != FK_SNAP_DIR) {
		if (snap_owns(ino_kind(dir)))
			return snap_entries(d, dir, ret, ret_n);
		return rich_entries(d, dir, ret, ret_n);
	}
	for (unsigned k = 1; r == 0 && k < FK_COUNT; k++) {
		if (file_types[k].family || file_types[k].top ||
		    file_types[k].parent != ino_kind(dir) ||
		    kind_in(d, ino_kind(dir), file_types[k].name) < 0)
			continue;
		r = entries_add(&e, &n, file_types[k].name, kept_ino(d, k),
				file_types[k].dir);
	}
	/* snapshots/: its fixed files, then a directory per snapshot. */
	if (r == 0 && ino_kind(dir) == FK_SNAP_DIR)
		r = snap_entries(d, dir, &more, &n_more);
	for (size_t i = 0; r == 0 && i < n_more; i++)
		r = entries_add(&e, &n, more[i].name, more[i].ino, more[i].dir);
	entries_free(more, n_more);
	return entries_give(e, n, r, ret, ret_n);
}

int files_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		 fuse_ino_t *ret)
{
	unsigned kind = ino_kind(dir);
	int k;

	if (!file_kind_is_dir(kind))
		return -ENOTDIR;
	if (kind == FK_SNAP_DIR && kind_in(d, kind, name) < 0)
		return snap_lookup(d, dir, name, ret);
	if (snap_owns(kind) && kind != FK_SNAP_DIR)
		return snap_lookup(d, dir, name, ret);
	if (!fixed_dir(kind) && kind != FK_SNAP_DIR)
		return rich_lookup(d, dir, name, ret);
	k = kind_in(d, kind, name);
	if (k < 0)
		return k;
	*ret = kept_ino(d, (unsigned)k);
	return 0;
}

int files_check(struct dom *d, fuse_ino_t ino, char **ret_arg)
{
	unsigned kind = ino_kind(ino);

	if (kind >= FK_COUNT)
		return -ENOENT;
	if (file_types[kind].family)
		return snap_owns(kind) ? snap_check(d, ino, ret_arg)
				       : rich_check(d, ino, ret_arg);
	if (kind != FK_DIR && file_types[kind].name &&
	    kind_in(d, file_types[kind].parent, file_types[kind].name) < 0)
		return -ENOENT;
	if (ret_arg)
		*ret_arg = NULL;
	return 0;
}

int files_mkdir(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret, char **ret_error)
{
	if (ino_kind(dir) != FK_SNAP_DIR)
		return -EPERM;
	return snap_mkdir(d, name, ret, ret_error);
}
