/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A domain's snapshots/: what hv.h's snapshot calls say, as directories and
 * files. Reading never changes anything; only mkdir, .take and a verb
 * written to a snapshot's control do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"
#include "rich.h"
#include "snap.h"
#include "tree.h"

/*
 * Taking a snapshot writes the memory out and deleting one may rewrite the
 * images: the peer may finish after -o timeout ran out. As control's start
 * and destroy, they then have until max(-o timeout, SLOW_MS) to show their
 * effect (docs/fs-layout.md, "snapshots/").
 */
#define SLOW_MS 30000
#define POLL_MS 100

bool snap_owns(unsigned kind)
{
	return kind == FK_SNAP_DIR ||
	       (kind >= FK_SNAP && kind <= FK_SNAP_CONTROL);
}

/* A QMP domain that is not running has no monitor to ask: no snapshots
 * to show rather than a failure (as block/). */
static bool shut_off(struct dom *d)
{
	enum hv_state s;

	return !dom_is_libvirt(d) && dom_state_cached(d, &s) &&
	       s == HV_STATE_SHUTOFF;
}

static int list(struct dom *d, struct hv_snapshot **ret, size_t *ret_n,
		char **ret_error)
{
	int r = hv_snapshots(dom_conn(d), d->hv_name, ret, ret_n, ret_error);

	if (r < 0 && shut_off(d)) {
		*ret = NULL;
		*ret_n = 0;
		r = 0;
	}
	return r;
}

/* The snapshot called snap (the driver's name) in *ret; -ENOENT if none. */
static int find(struct dom *d, const char *snap, struct hv_snapshot *ret,
		char **ret_error)
{
	struct hv_snapshot *s = NULL;
	size_t n = 0;
	int r = list(d, &s, &n, ret_error);

	for (size_t i = 0; r == 0; i++) {
		if (i == n) {
			r = hv_error(ret_error, -ENOENT, "%s: no snapshot '%s'",
				     d->hv_name, snap);
			break;
		}
		if (strcmp(s[i].name, snap) == 0) {
			*ret = s[i];
			break;
		}
	}
	free(s);
	return r;
}

/*
 * Whether snapshot snap exists: 0 or -ENOENT (or why the peer could not
 * say). libvirt: one call for its XML, not the whole listing (which costs
 * a call per snapshot), as every lookup, stat and open asks this.
 */
static int exists(struct dom *d, const char *snap)
{
	struct hv_snapshot s;
	char *xml = NULL;
	int r;

	if (!dom_is_libvirt(d))
		return find(d, snap, &s, NULL);
	r = hv_snapshot_xml(dom_conn(d), d->hv_name, snap, &xml, NULL);
	free(xml);
	return r == -EINVAL ? -ENOENT : r; /* no name a snapshot can have */
}

/* The files of snapshots/NAME/, by kind, with the driver that has each. */
static const struct {
	const char *name;
	unsigned kind;
	int libvirt; /* 1: libvirt only, 0: QMP only, -1: both */
} files[] = {
	{ "xml", FK_SNAP_XML, 1 },
	{ "info", FK_SNAP_INFO, 0 },
	{ "created", FK_SNAP_CREATED, -1 },
	{ "state", FK_SNAP_STATE, -1 },
	{ "parent", FK_SNAP_PARENT, -1 },
	{ "control", FK_SNAP_CONTROL, -1 },
};

#define N_FILES (sizeof(files) / sizeof(files[0]))

static bool file_present(struct dom *d, size_t i)
{
	return files[i].libvirt < 0 || files[i].libvirt == dom_is_libvirt(d);
}

static int kind_index(unsigned kind)
{
	for (size_t i = 0; i < N_FILES; i++)
		if (files[i].kind == kind)
			return (int)i;
	return -1;
}

static int dir_entries(struct dom *d, struct entry **e, size_t *n)
{
	struct hv_snapshot *s = NULL;
	size_t ns = 0;
	char *err = NULL;
	int r = list(d, &s, &ns, &err);

	if (r < 0 && r != -ENOMEM)
		dom_set_error(d, "list snapshots", r, err);
	free(err);
	for (size_t i = 0; r == 0 && i < ns; i++) {
		char *shown = name_escape(s[i].name);
		int sub = shown ? rich_intern(d, s[i].name) : -ENOMEM;

		if (sub == -ENOSPC) {
			free(shown);
			continue;
		}
		r = sub < 0 ? sub
			    : entries_add(e, n, shown,
					  ino_make(d->slot, FK_SNAP, sub),
					  true);
		free(shown);
	}
	free(s);
	return r;
}

int snap_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n)
{
	struct entry *e = NULL;
	size_t n = 0;
	int r = 0;

	switch (ino_kind(dir)) {
	case FK_SNAP_DIR:
		r = dir_entries(d, &e, &n);
		break;
	case FK_SNAP:
		r = snap_check(d, dir, NULL);
		for (size_t i = 0; r == 0 && i < N_FILES; i++)
			if (file_present(d, i))
				r = entries_add(&e, &n, files[i].name,
						ino_make(d->slot, files[i].kind,
							 ino_sub(dir)),
						false);
		break;
	default:
		r = -ENOTDIR;
	}
	return entries_give(e, n, r, ret, ret_n);
}

int snap_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret)
{
	char *snap, *shown;
	int r, sub;

	if (ino_kind(dir) == FK_SNAP) {
		r = snap_check(d, dir, NULL);
		for (size_t i = 0; r == 0; i++) {
			if (i == N_FILES)
				return -ENOENT;
			if (strcmp(files[i].name, name) == 0 &&
			    file_present(d, i)) {
				*ret = ino_make(d->slot, files[i].kind,
						ino_sub(dir));
				break;
			}
		}
		return r;
	}
	if (ino_kind(dir) != FK_SNAP_DIR)
		return -ENOTDIR;
	/* One snapshot, not the listing: ls -l looks up every name. */
	snap = name_unescape(name);
	shown = snap ? name_escape(snap) : NULL;
	if (!shown)
		r = -ENOMEM;
	else if (strcmp(shown, name) != 0)
		r = -ENOENT; /* not a name as listings show one */
	else
		r = exists(d, snap);
	if (r == 0) {
		sub = rich_intern(d, snap);
		if (sub < 0)
			r = sub == -ENOSPC ? -ENOENT : sub;
		else
			*ret = ino_make(d->slot, FK_SNAP, (unsigned)sub);
	}
	free(snap);
	free(shown);
	return r;
}

int snap_check(struct dom *d, fuse_ino_t ino, char **ret_arg)
{
	unsigned kind = ino_kind(ino);
	char *name;
	int i = kind_index(kind);
	int r;

	if (kind != FK_SNAP && (i < 0 || !file_present(d, (size_t)i)))
		return -ENOENT;
	name = rich_sub_name(d, ino_sub(ino));
	if (!name)
		return -ENOENT;
	r = exists(d, name);
	if (r < 0 || !ret_arg)
		free(name);
	else
		*ret_arg = name;
	return r;
}

/*
 * The call for snap ran out of time, begun at start_ms: 0 once snap exists
 * (exists) or is gone (!exists), else -ETIMEDOUT saying the outcome is
 * unknown.
 */
static int timed_out(struct dom *d, const char *snap, bool exists,
		     int64_t start_ms, char **ret_error)
{
	int t = hvfs_opts.timeout_ms;
	int64_t deadline = start_ms + (t > SLOW_MS ? t : SLOW_MS);

	if (ret_error) {
		free(*ret_error);
		*ret_error = NULL;
	}
	for (;;) {
		struct hv_snapshot s;
		int r = find(d, snap, &s, NULL);

		if (exists ? r == 0 : r == -ENOENT)
			return 0;
		if (hvfs_now_ms() + POLL_MS > deadline)
			break;
		usleep(POLL_MS * 1000);
	}
	return hv_error(ret_error, -ETIMEDOUT, "no answer within %g s, and "
			"snapshot '%s' is %s: the outcome is unknown",
			t / 1000.0, snap, exists ? "not there" : "still there");
}

/* Takes snapshot `name` (as the tree shows it); its inode in *ret. */
static int take(struct dom *d, const char *name, const char *description,
		unsigned flags, fuse_ino_t *ret, char **ret_error)
{
	char *snap = name_unescape(name), *shown = NULL;
	int64_t start_ms = hvfs_now_ms();
	int r, sub;

	if (!snap || !(shown = name_escape(snap))) {
		free(snap);
		return -ENOMEM;
	}
	if (strcmp(shown, name) != 0)
		r = hv_error(ret_error, -EINVAL, "'%s' is not a name as the "
			     "tree shows one (that would be '%s')", name,
			     shown);
	else
		r = hv_snapshot_create(dom_conn(d), d->hv_name, snap,
				       description, flags, ret_error);
	if (r == -ETIMEDOUT)
		r = timed_out(d, snap, true, start_ms, ret_error);
	/* Taking a snapshot may pause the domain for a while. */
	tree_state_unsure(d);
	if (r == 0) {
		sub = rich_intern(d, snap);
		if (sub < 0)
			r = hv_error(ret_error, sub, "snapshot '%s' was taken, "
				     "but the tree cannot show it", snap);
		else
			*ret = ino_make(d->slot, FK_SNAP, (unsigned)sub);
	}
	free(snap);
	free(shown);
	return r;
}

int snap_mkdir(struct dom *d, const char *name, fuse_ino_t *ret,
	       char **ret_error)
{
	return take(d, name, NULL, 0, ret, ret_error);
}

int snap_write_take(struct dom *d, const char *buf, size_t len,
		    char **ret_reply, size_t *ret_reply_len, char **ret_error)
{
	char *text, *line, *save = NULL, *name = NULL, *description = NULL;
	unsigned flags = 0;
	fuse_ino_t ino;
	int r = 0;

	if (len > SNAP_TAKE_MAX)
		return hv_error(ret_error, -EFBIG, ".take takes at most %u "
				"bytes", SNAP_TAKE_MAX);
	if (memchr(buf, '\0', len))
		return hv_error(ret_error, -EINVAL, "a NUL byte in .take");
	if (!(text = strndup(buf, len)))
		return -ENOMEM;
	for (line = strtok_r(text, "\n", &save); line && r == 0;
	     line = strtok_r(NULL, "\n", &save)) {
		if (!name)
			name = line;
		else if (strcmp(line, "disk-only") == 0)
			flags |= HV_SNAPSHOT_DISK_ONLY;
		else if (strncmp(line, "description ", 12) == 0 && line[12])
			description = line + 12;
		else
			r = hv_error(ret_error, -EINVAL, "'%.64s': .take takes "
				     "a name, then lines 'description TEXT' "
				     "and 'disk-only'", line);
	}
	if (r == 0 && !name)
		r = hv_error(ret_error, -EINVAL, ".take takes a snapshot's "
			     "name on its first line");
	if (r == 0)
		r = take(d, name, description, flags, &ino, ret_error);
	free(text);
	return r;
}

int snap_read_take(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error)
{
	static const char words[] = "description\ndisk-only\n";
	char *text = strdup(words);

	if (!text)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(words);
	return 0;
}

/* Takes ownership of text (NULL: -ENOMEM) as the file's contents. */
static int contents(char *text, int len, char **ret, size_t *ret_len)
{
	if (!text || len < 0)
		return -ENOMEM;
	*ret = text;
	*ret_len = (size_t)len;
	return 0;
}

int snap_read_current(struct dom *d, char **ret, size_t *ret_len,
		      char **ret_error)
{
	char *cur = NULL, *text;
	int r = hv_snapshot_current(dom_conn(d), d->hv_name, &cur, ret_error);

	if (r == -ENOENT) {
		free(*ret_error);
		*ret_error = NULL;
		return contents(strdup(""), 0, ret, ret_len);
	}
	if (r < 0)
		return r;
	r = asprintf(&text, "%s\n", cur);
	free(cur);
	return contents(r < 0 ? NULL : text, r, ret, ret_len);
}

int snap_read_xml(struct dom *d, const char *arg, char **ret, size_t *ret_len,
		  char **ret_error)
{
	char *xml = NULL;
	int r = hv_snapshot_xml(dom_conn(d), d->hv_name, arg, &xml, ret_error);

	if (r < 0)
		return r;
	return contents(xml, (int)strlen(xml), ret, ret_len);
}

/* The file of snapshot arg of this kind, from its listing. */
static int read_field(struct dom *d, const char *arg, unsigned kind,
		      char **ret, size_t *ret_len, char **ret_error)
{
	struct hv_snapshot s;
	char *text = NULL;
	int r = find(d, arg, &s, ret_error);

	if (r < 0)
		return r;
	switch (kind) {
	case FK_SNAP_INFO:
		r = asprintf(&text, "name %s\ncreated %lld\n"
			     "vm-state-size %llu\n", s.name,
			     (long long)s.created,
			     (unsigned long long)s.vm_state_size);
		break;
	case FK_SNAP_CREATED:
		r = asprintf(&text, "%lld\n", (long long)s.created);
		break;
	case FK_SNAP_STATE:
		if (!s.state[0]) /* QMP: a snapshot without the VM's memory */
			return -ENODATA;
		r = asprintf(&text, "%s\n", s.state);
		break;
	default: /* FK_SNAP_PARENT: empty for a root */
		r = asprintf(&text, s.parent[0] ? "%s\n" : "%s", s.parent);
	}
	return contents(r < 0 ? NULL : text, r, ret, ret_len);
}

int snap_read_info(struct dom *d, const char *arg, char **ret,
		   size_t *ret_len, char **ret_error)
{
	return read_field(d, arg, FK_SNAP_INFO, ret, ret_len, ret_error);
}

int snap_read_created(struct dom *d, const char *arg, char **ret,
		      size_t *ret_len, char **ret_error)
{
	return read_field(d, arg, FK_SNAP_CREATED, ret, ret_len, ret_error);
}

int snap_read_state(struct dom *d, const char *arg, char **ret,
		    size_t *ret_len, char **ret_error)
{
	return read_field(d, arg, FK_SNAP_STATE, ret, ret_len, ret_error);
}

int snap_read_parent(struct dom *d, const char *arg, char **ret,
		     size_t *ret_len, char **ret_error)
{
	return read_field(d, arg, FK_SNAP_PARENT, ret, ret_len, ret_error);
}

int snap_read_control(struct dom *d, const char *arg, char **ret,
		      size_t *ret_len, char **ret_error)
{
	static const char verbs[] = "revert\ndelete\n";

	return contents(strdup(verbs), (int)strlen(verbs), ret, ret_len);
}

/* Whether buf (one line, its newline optional) is word. */
static bool is_verb(const char *buf, size_t len, const char *word)
{
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	return len == strlen(word) && memcmp(buf, word, len) == 0;
}

int snap_write_control(struct dom *d, const char *arg, const char *buf,
		       size_t len, char **ret_reply, size_t *ret_reply_len,
		       char **ret_error)
{
	int64_t start_ms = hvfs_now_ms();
	char *shown;
	int r;

	if (is_verb(buf, len, "revert")) {
		r = hv_snapshot_revert(dom_conn(d), d->hv_name, arg,
				       ret_error);
		/* The domain's state is the snapshot's now (or unknown). */
		tree_state_unsure(d);
		return r;
	}
	if (is_verb(buf, len, "delete")) {
		r = hv_snapshot_delete(dom_conn(d), d->hv_name, arg,
				       ret_error);
		if (r == -ETIMEDOUT)
			r = timed_out(d, arg, false, start_ms, ret_error);
		if (r < 0)
			return r;
		/* Gone: the kernel must not keep the directory's name. */
		shown = name_escape(arg);
		if (shown)
			tree_forget_entry(ino_make(d->slot, FK_SNAP_DIR, 0),
					  shown);
		free(shown);
		return 0;
	}
	return hv_error(ret_error, -EINVAL, "unknown verb: a snapshot's "
			"control takes revert or delete");
}
