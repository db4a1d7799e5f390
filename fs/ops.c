/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The FUSE low-level operations. Every generated file is direct_io: its
 * contents are made when a read at offset 0 arrives and served by offset
 * from that per-open snapshot afterwards, so `cat` always sees one
 * consistent, current answer.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hvfs.h"

/* An open file: the domain it belongs to and the snapshot of its contents. */
struct handle {
	struct dom *dom;             /* NULL for the mount's .events */
	enum file_kind kind;
	struct stream *stream;       /* events files */
	uint64_t seen;               /* state: dom_state_gen() at the last read */
	pthread_mutex_t lock;
	char *buf;
	size_t len;
	bool filled;
};

/* An open directory: the entries it had when opened. */
struct dirhandle {
	struct entry *e;
	size_t n;
};

static time_t mount_time;

#define ROOT_EVENTS_INO ino_make(0, FK_EVENTS, 0)

/* The mount's own files at the root level (not in a domain). */
static bool is_root_file(fuse_ino_t ino)
{
	return ino == ROOT_EVENTS_INO;
}

static int reply_err(fuse_req_t req, int err)
{
	/* Only 1..511 may reach the kernel. */
	if (err < 0)
		err = -err;
	if (err <= 0 || err > 511)
		err = EIO;
	return fuse_reply_err(req, err);
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	unsigned kind = ino_kind(ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = mount_time;
	if (ino == FUSE_ROOT_ID || kind == FK_DIR) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return;
	}
	st->st_mode = S_IFREG | file_mode(kind);
	st->st_nlink = 1;
	if (file_types[kind].write && hvfs_opts.have_ctlgroup)
		st->st_gid = hvfs_opts.ctlgroup;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e = {
		.ino = ino,
		.attr_timeout = HVFS_ATTR_TIMEOUT,
		.entry_timeout = HVFS_ENTRY_TIMEOUT,
	};

	fill_attr(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

/*
 * The domain an inode belongs to, or NULL with errno-style reply sent.
 * The root level has no domain.
 */
static struct dom *dom_of(fuse_req_t req, fuse_ino_t ino)
{
	struct dom *d = tree_find_slot(ino_slot(ino));

	if (!d || ino_kind(ino) >= FK_COUNT) {
		dom_unref(d);
		reply_err(req, ENOENT);
		return NULL;
	}
	return d;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	mount_time = time(NULL);
	/* Generated files change size at every read: no kernel cache. */
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dom *d;
	int k;

	if (parent == FUSE_ROOT_ID) {
		if (strcmp(name, HVFS_ROOT_EVENTS) == 0) {
			reply_entry(req, ROOT_EVENTS_INO);
			return;
		}
		d = tree_find_name(name);
		if (!d && tree_refresh(true) == 0) {
			/* A source without events: perhaps it appeared since. */
			d = tree_find_name(name);
		}
		if (!d) {
			reply_err(req, ENOENT);
			return;
		}
		reply_entry(req, ino_make(d->slot, FK_DIR, 0));
		dom_unref(d);
		return;
	}
	if (ino_kind(parent) != FK_DIR || !(d = dom_of(req, parent))) {
		if (ino_kind(parent) != FK_DIR)
			reply_err(req, ENOTDIR);
		return;
	}
	k = file_kind_by_name(d, name);
	if (k < 0)
		reply_err(req, -k);
	else
		reply_entry(req, ino_make(d->slot, k, 0));
	dom_unref(d);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;

	if (ino != FUSE_ROOT_ID && !is_root_file(ino)) {
		struct dom *d = dom_of(req, ino);

		if (!d)
			return;
		dom_unref(d);
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, HVFS_ATTR_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct stat st;
	struct dom *d;

	if (ino == FUSE_ROOT_ID || ino_kind(ino) == FK_DIR) {
		reply_err(req, EPERM);
		return;
	}
	if (is_root_file(ino)) {
		reply_err(req, EACCES);
		return;
	}
	if (!(d = dom_of(req, ino)))
		return;
	dom_unref(d);
	/*
	 * `echo verb > control` opens with O_TRUNC, which arrives here as a
	 * size change: accept it on files one may write, and nothing else.
	 */
	if ((to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
			FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
			FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) ||
	    !file_types[ino_kind(ino)].write) {
		reply_err(req, EACCES);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, HVFS_ATTR_TIMEOUT);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct dirhandle *h = calloc(1, sizeof(*h));
	struct dom *d = NULL;
	int r = 0;

	if (!h) {
		reply_err(req, ENOMEM);
		return;
	}
	if (ino == FUSE_ROOT_ID) {
		tree_refresh(true);
		r = tree_entries(&h->e, &h->n);
		if (r == 0) {
			/* The mount's own files, after the domains. */
			struct entry *n = reallocarray(h->e, h->n + 1,
						       sizeof(*n));

			if (n)
				h->e = n;
			if (!n || !(n[h->n].name = strdup(HVFS_ROOT_EVENTS)))
				r = -ENOMEM;
			else {
				n[h->n].dir = false;
				n[h->n++].ino = ROOT_EVENTS_INO;
			}
		}
	} else {
		if (!(d = dom_of(req, ino))) {
			free(h);
			return;
		}
		h->e = calloc(FK_COUNT, sizeof(*h->e));
		if (!h->e)
			r = -ENOMEM;
		for (unsigned k = 1; !r && k < FK_COUNT; k++) {
			struct entry *e = &h->e[h->n];

			if (file_kind_by_name(d, file_types[k].name) < 0)
				continue;
			e->ino = ino_make(d->slot, k, 0);
			e->name = strdup(file_types[k].name);
			if (!e->name)
				r = -ENOMEM;
			else
				h->n++;
		}
		dom_unref(d);
	}
	if (r < 0) {
		entries_free(h->e, h->n);
		free(h);
		reply_err(req, r);
		return;
	}
	fi->fh = (uintptr_t)h;
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct dirhandle *h = (struct dirhandle *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	size_t used = 0;

	if (!buf) {
		reply_err(req, ENOMEM);
		return;
	}
	/* Offsets: 0 ".", 1 "..", then 2 + index into the entries. */
	for (off_t i = off; i < (off_t)h->n + 2; i++) {
		struct stat st = { .st_mode = S_IFDIR };
		const char *name;
		size_t n;

		if (i == 0) {
			name = ".";
			st.st_ino = ino;
		} else if (i == 1) {
			name = "..";
			st.st_ino = FUSE_ROOT_ID;
		} else {
			name = h->e[i - 2].name;
			st.st_ino = h->e[i - 2].ino;
			st.st_mode = h->e[i - 2].dir ? S_IFDIR : S_IFREG;
		}
		n = fuse_add_direntry(req, buf + used, size - used, name, &st,
				      i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct dirhandle *h = (struct dirhandle *)(uintptr_t)fi->fh;

	entries_free(h->e, h->n);
	free(h);
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	unsigned kind = ino_kind(ino);
	int acc = fi->flags & O_ACCMODE;
	const struct file_type *t = &file_types[kind];
	struct handle *h;
	struct dom *d = NULL;

	if (ino == FUSE_ROOT_ID || kind == FK_DIR) {
		reply_err(req, EISDIR);
		return;
	}
	if (!is_root_file(ino) && !(d = dom_of(req, ino)))
		return;
	if ((acc != O_RDONLY && !t->write) ||
	    (acc != O_WRONLY && !t->read && !t->stream)) {
		dom_unref(d);
		reply_err(req, EACCES);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h || (t->stream && !(h->stream = stream_open(d)))) {
		free(h);
		dom_unref(d);
		reply_err(req, ENOMEM);
		return;
	}
	h->dom = d;
	h->kind = kind;
	pthread_mutex_init(&h->lock, NULL);
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	fi->nonseekable = t->stream;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	const struct file_type *t = &file_types[h->kind];

	if (h->stream) {
		stream_read(req, h->stream, size, fi->flags);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (off == 0 || !h->filled) {
		char *buf = NULL, *err = NULL;
		size_t len = 0;
		int r;

		/* Taken before reading: a change after it wakes poll(). */
		if (h->kind == FK_STATE)
			h->seen = dom_state_gen(h->dom);
		r = t->read(h->dom, &buf, &len, &err);

		if (r < 0) {
			pthread_mutex_unlock(&h->lock);
			if (r != -ENODATA) {
				char *op = NULL;

				if (asprintf(&op, "read %s", t->name) >= 0)
					dom_set_error(h->dom, op, r, err);
				free(op);
			}
			free(err);
			reply_err(req, r);
			return;
		}
		free(h->buf);
		h->buf = buf;
		h->len = len;
		h->filled = true;
	}
	if ((size_t)off >= h->len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, h->buf + off,
			       size < h->len - off ? size : h->len - off);
	pthread_mutex_unlock(&h->lock);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	const struct file_type *t = &file_types[h->kind];
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char *err = NULL, *op = NULL;
	int r;

	/* Offsets mean nothing to a command file: each write is one command. */
	r = t->write(h->dom, buf, size, &err);
	if (asprintf(&op, "%s %.*s", t->name,
		     (int)strcspn(buf, "\n") > 64 ? 64 : (int)strcspn(buf, "\n"),
		     buf) < 0)
		op = NULL;
	hvfs_log(LOG_NOTICE, "%s: uid %u pid %u wrote %s: %s", h->dom->name,
		 (unsigned)ctx->uid, (unsigned)ctx->pid, op ? op : t->name,
		 r < 0 ? strerror(-r) : "ok");
	if (r < 0) {
		dom_set_error(h->dom, op ? op : t->name, r, err);
		reply_err(req, r);
	} else {
		fuse_reply_write(req, size);
	}
	free(op);
	free(err);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	if (h->stream)
		stream_release(h->stream);
	dom_unref(h->dom);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h);
	fuse_reply_err(req, 0);
}

/*
 * poll(): events files are readable when a line is queued. A state file is
 * always readable, and adds POLLPRI once the state changed since this open
 * file last read it at offset 0 (then lseek to 0 and read again, as with
 * sysfs attributes). Other files are always ready.
 */
static void op_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		    struct fuse_pollhandle *ph)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	unsigned revents = POLLIN | POLLRDNORM;

	if (h->stream) {
		fuse_reply_poll(req, stream_poll(h->stream, ph));
		return;
	}
	if (h->kind == FK_STATE) {
		pthread_mutex_lock(&h->lock);
		if (h->filled && dom_poll_state(h->dom, h->seen, ph))
			revents |= POLLPRI;
		else if (!h->filled && ph)
			fuse_pollhandle_destroy(ph);
		pthread_mutex_unlock(&h->lock);
		fuse_reply_poll(req, revents);
		return;
	}
	if (ph)
		fuse_pollhandle_destroy(ph);
	if (file_types[h->kind].write)
		revents |= POLLOUT | POLLWRNORM;
	fuse_reply_poll(req, revents);
}

const struct fuse_lowlevel_ops hvfs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.release = op_release,
	.poll = op_poll,
};
