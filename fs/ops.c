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

#include "console.h"
#include "events.h"
#include "files.h"
#include "kept.h"
#include "make.h"
#include "ops.h"
#include "source.h"
#include "top.h"
#include "tree.h"

/*
 * Every open file and directory is on one list, so that whatever the kernel
 * did not release before the session ended (an unmount, SIGTERM, before its
 * RELEASE or RELEASEDIR came) is freed at the session's end (op_destroy).
 */
struct open_node {
	struct open_node *prev, *next; /* under open_lock */
	bool dir;                      /* a struct dirhandle, else a handle */
};

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_node open_list = { &open_list, &open_list, false };

static void open_track(struct open_node *n, bool dir)
{
	n->dir = dir;
	pthread_mutex_lock(&open_lock);
	n->next = &open_list;
	n->prev = open_list.prev;
	open_list.prev->next = n;
	open_list.prev = n;
	pthread_mutex_unlock(&open_lock);
}

static void open_untrack(struct open_node *n)
{
	pthread_mutex_lock(&open_lock);
	n->prev->next = n->next;
	n->next->prev = n->prev;
	pthread_mutex_unlock(&open_lock);
}

/* An open file: the domain it belongs to and the snapshot of its contents. */
struct handle {
	struct open_node node;       /* first: the list's view of it */
	struct dom *dom;             /* NULL for the files above domains */
	fuse_ino_t ino;
	enum file_kind kind;
	struct stream *stream;       /* events files */
	struct console_reader *con;  /* console, opened for reading */
	uint64_t seen;               /* state: dom_state_gen() at the last read */
	bool kept;                   /* a kept file's value (kept.h), fixed */
	pthread_mutex_t lock;
	char *buf;
	size_t len;
	bool filled;
	bool fixed;                  /* contents made at open, never again */
	bool ran;                    /* control: this open file ran its verb */
	/* A file that collects (.define, .create, xml): what was written, and
	 * the errno a write failed with (FLUSH then runs nothing). */
	char *in;
	size_t in_len;
	int failed;
	bool as_file;                /* atomic: a stream read as a file */
	/* A stream's follower (see op_getattr), on the followers list. */
	pid_t follower;              /* under followers_lock */
	struct handle *next_follower;
	/* Where buf starts in the file: 0, until a write; then where the
	 * write ended, so a read after a write gets the contents from their
	 * start: an exchange file's reply, or a value file's contents made
	 * afresh. A read before base (a seek back) starts them over there. */
	off_t base;
	char *arg;                   /* what a family file's sub names */
};

/* An open directory: the entries it had when opened. */
struct dirhandle {
	struct open_node node;       /* first: the list's view of it */
	struct entry *e;
	size_t n;
};

static time_t mount_time;

static pthread_mutex_t followers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct handle *followers;

/* The levels above the domains (tree.c): the root and host directories. */
static bool is_top(fuse_ino_t ino)
{
	return ino_slot(ino) == 0;
}

/* .define and .create: writes collect the XML, FLUSH runs it (make.c). */
static bool is_maker(fuse_ino_t ino)
{
	return is_top(ino) &&
	       (ino_kind(ino) == FK_DEFINE || ino_kind(ino) == FK_CREATE);
}

/* Files whose writes are collected and run at close: the makers and the
 * table's `whole` files. */
static bool collects(fuse_ino_t ino)
{
	return is_maker(ino) ||
	       (!is_top(ino) && ino_kind(ino) < FK_COUNT &&
		file_types[ino_kind(ino)].whole);
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

static void set_mtime(struct stat *st, int64_t us)
{
	st->st_mtim.tv_sec = us / 1000000;
	st->st_mtim.tv_nsec = us % 1000000 * 1000;
}

/*
 * The size of a file whose contents events keep true (file_types[].known)
 * while its facts are cached: so ls -l, wc -c, tar and rsync see them.
 * Other files show 0 (made at each read, they would cost a peer's answer
 * at every stat()).
 */
static off_t known_size(fuse_ino_t ino, struct dom *d)
{
	const struct file_type *t = &file_types[ino_kind(ino)];
	char *buf = NULL, *err = NULL;
	size_t len = 0;

	if (kept_is(ino)) {
		if (kept_read(ino, &buf, &len) < 0)
			len = 0;
	} else if (!d || !t->known || !t->read || !source_evented(d->src) ||
		   !t->known(d) || t->read(d, &buf, &len, &err) < 0) {
		len = 0;
	}
	free(buf);
	free(err);
	return (off_t)len;
}

/* d: the domain ino belongs to, or NULL above the domains. */
static void fill_attr(fuse_ino_t ino, struct dom *d, struct stat *st)
{
	unsigned kind = ino_kind(ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = mount_time;
	if (ino != FUSE_ROOT_ID && file_ctlgroup(kind))
		st->st_gid = hvfs_opts.ctlgroup;
	if (ino == FUSE_ROOT_ID || file_kind_is_dir(kind)) {
		st->st_mode = S_IFDIR | (ino == FUSE_ROOT_ID ? 0555
							     : file_mode(kind));
		st->st_nlink = 2;
		/* A domain's directory: when it was last defined. */
		if (kind == FK_DIR && d)
			set_mtime(st, dom_defined_us(d));
		return;
	}
	st->st_mode = S_IFREG | file_mode(kind);
	st->st_nlink = 1;
	st->st_size = known_size(ino, d);
	/* state: when it last changed, as the peer's event said. */
	if (kind == FK_STATE && d && dom_state_time_us(d) > 0)
		set_mtime(st, dom_state_time_us(d));
	/* tail -f looks for a change of size or mtime (see op_read). */
	if (file_types[kind].stream && events_last_us())
		set_mtime(st, events_last_us());
}

/*
 * A stream's attributes are never cached: its mtime moves with every event,
 * and an lseek(SEEK_END) then asks us with the open file (see op_getattr).
 * A kept file's are kept long: its size never changes, and a change of
 * its mtime is told (tree_inval_attrs()).
 */
static double attr_timeout(fuse_ino_t ino)
{
	if (kept_is(ino))
		return HVFS_KEPT_TIMEOUT;
	return file_types[ino_kind(ino)].stream ? 0 : HVFS_ATTR_TIMEOUT;
}

/*
 * Kept files' entries are kept long: a change of value drops them. With
 * -o kernel_cache, so are domains' directories: a domain's leaving drops
 * its entry (tree.c), and a new name was never looked up.
 */
static double entry_timeout(fuse_ino_t ino)
{
	if (kept_is(ino) || (hvfs_opts.kernel_cache && !is_top(ino) &&
			     ino_kind(ino) == FK_DIR))
		return HVFS_KEPT_TIMEOUT;
	return HVFS_ENTRY_TIMEOUT;
}

/* d: the domain ino belongs to, or NULL. */
static void reply_entry(fuse_req_t req, fuse_ino_t ino, struct dom *d)
{
	struct fuse_entry_param e = {
		.ino = ino,
		.attr_timeout = attr_timeout(ino),
		.entry_timeout = entry_timeout(ino),
	};

	fill_attr(ino, d, &e.attr);
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

	if (is_top(parent)) {
		fuse_ino_t ino;

		k = top_lookup(parent, name, &ino);
		if (k < 0) {
			reply_err(req, k);
			return;
		}
		d = is_top(ino) ? NULL : tree_find_slot(ino_slot(ino));
		reply_entry(req, ino, d);
		dom_unref(d);
		return;
	}
	if (!file_kind_is_dir(ino_kind(parent)) || !(d = dom_of(req, parent))) {
		if (!file_kind_is_dir(ino_kind(parent)))
			reply_err(req, ENOTDIR);
		return;
	}
	{
		fuse_ino_t ino;

		/* The domain's files, and below them query/, block/. */
		k = files_lookup(d, parent, name, &ino);
		if (k < 0)
			reply_err(req, -k);
		else
			reply_entry(req, ino, d);
	}
	dom_unref(d);
}

/*
 * How `tail -f` follows an events file. Only lseek(SEEK_END, SEEK_DATA,
 * SEEK_HOLE) asks for a stream's attributes with an open file (fi): its
 * reader looks for the end, as tail does. That open file then reads as a
 * file: what is queued, then end-of-file instead of waiting. And to the
 * process (thread) that asked, the stream's size is the count of event bytes
 * published so far, which grows with every event: tail on a network file
 * system such as FUSE reads as many new bytes as the size grew, when the
 * size or mtime changed. To everyone else the size stays 0, so that tar and
 * rsync, which trust it, copy an empty file and never wait.
 */
static bool follows(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	pid_t pid = fuse_req_ctx(req)->pid;
	bool found = false;

	pthread_mutex_lock(&followers_lock);
	if (fi) {
		struct handle *h = (struct handle *)(uintptr_t)fi->fh;

		__atomic_store_n(&h->as_file, true, __ATOMIC_RELAXED);
		if (!h->follower) {
			h->next_follower = followers;
			followers = h;
		}
		h->follower = pid;
		found = true;
	}
	for (struct handle *h = followers; h && !found; h = h->next_follower)
		found = h->follower == pid && h->ino == ino;
	pthread_mutex_unlock(&followers_lock);
	return found;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;
	struct dom *d = NULL;

	if (is_top(ino)) {
		if (!top_exists(ino)) {
			reply_err(req, ENOENT);
			return;
		}
	} else {
		int r;

		if (!(d = dom_of(req, ino)))
			return;
		r = files_check(d, ino, NULL); /* a sub that no longer exists */
		if (r < 0) {
			dom_unref(d);
			reply_err(req, r);
			return;
		}
	}
	fill_attr(ino, d, &st);
	if (file_types[ino_kind(ino)].stream && follows(req, ino, fi))
		st.st_size = ino_kind(ino) == FK_CONSOLE && d ? console_size(d)
							 : events_published_bytes();
	fuse_reply_attr(req, &st, attr_timeout(ino));
	dom_unref(d);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct stat st;
	struct dom *d = NULL;

	if (ino == FUSE_ROOT_ID || file_kind_is_dir(ino_kind(ino))) {
		reply_err(req, EPERM);
		return;
	}
	if (is_top(ino) && !is_maker(ino)) {
		reply_err(req, top_exists(ino) ? EACCES : ENOENT);
		return;
	}
	if (is_top(ino) && !top_exists(ino)) {
		reply_err(req, ENOENT);
		return;
	}
	if (!is_top(ino) && !(d = dom_of(req, ino)))
		return;
	/*
	 * `echo verb > control` opens with O_TRUNC, which arrives here as a
	 * size change: accept it on files one may write, and nothing else.
	 */
	if (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
		       FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
		       FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME)) {
		reply_err(req, EPERM); /* chmod, chown: modes are the tree's */
		dom_unref(d);
		return;
	}
	if (!file_kind_writable(ino_kind(ino)) && !is_maker(ino)) {
		reply_err(req, EACCES);
		dom_unref(d);
		return;
	}
	fill_attr(ino, d, &st);
	fuse_reply_attr(req, &st, HVFS_ATTR_TIMEOUT);
	dom_unref(d);
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
	if (is_top(ino)) {
		r = top_entries(ino, &h->e, &h->n);
	} else {
		if (!(d = dom_of(req, ino))) {
			free(h);
			return;
		}
		/* The domain's files, or query/, block/, block/NAME/. */
		r = files_entries(d, ino, &h->e, &h->n);
		dom_unref(d);
	}
	if (r < 0) {
		entries_free(h->e, h->n);
		free(h);
		reply_err(req, r);
		return;
	}
	open_track(&h->node, true);
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

static void dirhandle_free(struct dirhandle *h)
{
	open_untrack(&h->node);
	entries_free(h->e, h->n);
	free(h);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	dirhandle_free((struct dirhandle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	unsigned kind = ino_kind(ino);
	int acc = fi->flags & O_ACCMODE;
	const struct file_type *t = &file_types[kind];
	struct handle *h;
	struct dom *d = NULL;
	char *arg = NULL;

	if (ino == FUSE_ROOT_ID || file_kind_is_dir(kind)) {
		reply_err(req, EISDIR);
		return;
	}
	if (is_top(ino) && !top_exists(ino)) {
		reply_err(req, ENOENT);
		return;
	}
	if (!is_top(ino) && !(d = dom_of(req, ino)))
		return;
	if (is_maker(ino) ? acc == O_RDONLY
			  : (acc != O_RDONLY && !file_kind_writable(kind)) ||
			    (acc != O_WRONLY && !t->read && !t->read_arg &&
			     !t->stream && !t->exchange && !t->top)) {
		dom_unref(d);
		reply_err(req, EACCES);
		return;
	}
	if (d) {
		/* query/NAME, block/NAME/...: NAME must still exist. */
		int r = files_check(d, ino, &arg);

		if (r < 0) {
			dom_unref(d);
			reply_err(req, r);
			return;
		}
	}
	h = calloc(1, sizeof(*h));
	if (h && kind == FK_CONSOLE) {
		/* Held from now on; EBUSY while another client holds it. */
		char *err = NULL;
		int r = console_open(d, !(fi->flags & O_NOFOLLOW),
				     acc == O_WRONLY ? NULL : &h->con, &err);

		if (r < 0) {
			dom_set_error(d, "open console", r, err);
			free(err);
			free(h);
			dom_unref(d);
			reply_err(req, r);
			return;
		}
	} else if (!h || (t->stream &&
			  !(h->stream = stream_open(d, top_host(ino))))) {
		free(h);
		free(arg);
		dom_unref(d);
		reply_err(req, ENOMEM);
		return;
	}
	h->dom = d;
	h->ino = ino;
	h->kind = kind;
	h->arg = arg;
	/* qmp: reads give the reply to this open file's last write. */
	h->fixed = t->exchange;
	if (is_top(ino) && (kind == FK_ERROR || kind == FK_METRICS)) {
		int r = top_read(ino, &h->buf, &h->len);

		if (r < 0) {
			free(h);
			reply_err(req, r);
			return;
		}
		h->filled = h->fixed = true;
	}
	/*
	 * A kept file: the value its inode stands for, which the kernel may
	 * keep; a poll() then tells when the domain's value is another. A
	 * name the kernel resolved before a change can still give the old
	 * value's inode: ESTALE makes the kernel's open look the name up
	 * again, once, and open what it names now.
	 */
	h->kept = kept_is(ino);
	if (h->kept && !kept_current(d, ino)) {
		free(h);
		dom_unref(d);
		reply_err(req, ESTALE);
		return;
	}
	if (h->kept) {
		int r = kept_read(ino, &h->buf, &h->len);

		if (r < 0) {
			free(h);
			dom_unref(d);
			reply_err(req, r);
			return;
		}
		h->seen = dom_state_gen(d);
		h->filled = h->fixed = true;
	}
	/* A maker has nothing to read (O_RDWR reads end at once). */
	h->fixed = h->fixed || is_maker(ino);
	pthread_mutex_init(&h->lock, NULL);
	fi->fh = (uintptr_t)h;
	fi->direct_io = !h->kept;
	fi->keep_cache = h->kept;
	/* Only files that act at close need the kernel's FLUSH: spare every
	 * other close() that round trip. */
	fi->noflush = !collects(ino);
	/* A stream opened with O_NOFOLLOW is being walked by a copy (cp -r,
	 * grep -r, rsync): it gets what is queued, then end-of-file. Streams
	 * are seekable, as tail -c +1 wants; their reads ignore the offset. */
	h->as_file = t->stream && (fi->flags & O_NOFOLLOW);
	open_track(&h->node, false);
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	const struct file_type *t = &file_types[h->kind];
	char *out = NULL;
	size_t n = 0;

	if (h->stream) {
		stream_read(req, h->stream, size, fi->flags,
			    __atomic_load_n(&h->as_file, __ATOMIC_RELAXED));
		return;
	}
	if (h->kind == FK_CONSOLE) {
		if (h->con)
			console_read(req, h->con, size, off, fi->flags,
				     __atomic_load_n(&h->as_file,
						     __ATOMIC_RELAXED));
		else
			reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (off < h->base)
		h->base = off;
	if (!h->fixed && (off == h->base || !h->filled)) {
		char *buf = NULL, *err = NULL;
		size_t len = 0;
		/* A fact this read learns changes the size stat() shows. */
		bool known = t->known && h->dom && t->known(h->dom);
		int r;

		/* Taken before reading: a change after it wakes poll(). */
		if (h->kind == FK_STATE)
			h->seen = dom_state_gen(h->dom);
		else if (h->kind == FK_GUEST_STATE)
			h->seen = dom_agent_gen(h->dom);
		r = t->read_arg ? t->read_arg(h->dom, h->arg, &buf, &len, &err)
				: t->read(h->dom, &buf, &len, &err);
		if (r == 0 && t->known && h->dom && !known &&
		    t->known(h->dom) && source_evented(h->dom->src))
			tree_inval_attrs(h->dom);

		if (r < 0) {
			pthread_mutex_unlock(&h->lock);
			if (r != -ENODATA) {
				char *op = NULL;

				if (asprintf(&op, "read %s%s%s", t->name,
					     h->arg ? " " : "",
					     h->arg ? h->arg : "") >= 0)
					dom_set_error(h->dom, op, r, err);
				free(op);
			}
			free(err);
			reply_err(req, r);
			return;
		}
		free(err); /* words of a try that was retried, if any */
		free(h->buf);
		h->buf = buf;
		h->len = len;
		h->filled = true;
	}
	off -= h->base;
	/*
	 * Reply with a copy, after unlocking: once the reply is out, the
	 * reader may close the file and RELEASE free h on another thread
	 * before this one could touch h->lock again (found by test_load).
	 */
	if ((size_t)off < h->len) {
		n = size < h->len - off ? size : h->len - off;
		out = malloc(n ? n : 1);
		if (out)
			memcpy(out, h->buf + off, n);
	}
	pthread_mutex_unlock(&h->lock);
	if (n && !out)
		reply_err(req, ENOMEM);
	else
		fuse_reply_buf(req, out, n);
	free(out);
}

/*
 * A collecting file takes one document per open, written in order from
 * offset 0 (cp, a shell redirection), at most MAKE_XML_MAX bytes: EFBIG
 * beyond, EINVAL for a write elsewhere or after it ran.
 */
static void collect_write(fuse_req_t req, struct handle *h, const char *buf,
			  size_t size, off_t off)
{
	int r = 0;

	pthread_mutex_lock(&h->lock);
	if (h->ran || off != (off_t)h->in_len)
		r = EINVAL;
	else if (size > MAKE_XML_MAX - h->in_len)
		r = EFBIG;
	else if (size && !h->failed) {
		char *p = realloc(h->in, h->in_len + size);

		if (!p) {
			r = ENOMEM;
		} else {
			memcpy(p + h->in_len, buf, size);
			h->in = p;
			h->in_len += size;
		}
	}
	if (r && !h->failed && !h->ran)
		h->failed = r;
	pthread_mutex_unlock(&h->lock);
	if (r)
		reply_err(req, r);
	else
		fuse_reply_write(req, size);
}

/*
 * Every close() of an open file: a collecting file runs what it collected,
 * once, and close() returns the refusal (cp and cat report it).
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	const struct file_type *t = &file_types[ino_kind(ino)];
	char *in = NULL, *err = NULL, *name = NULL;
	size_t len = 0;
	int r, failed;

	if (!collects(ino)) {
		fuse_reply_err(req, 0);
		return;
	}
	pthread_mutex_lock(&h->lock);
	failed = h->ran ? 0 : h->failed;
	if ((h->in_len || failed) && !h->ran) {
		in = h->in;
		len = h->in_len;
		h->ran = true;
	}
	pthread_mutex_unlock(&h->lock);
	if (!in && !failed) {
		fuse_reply_err(req, 0);
		return;
	}
	/* in stays h's (freed with it); no write changes it any more. */
	if (failed)
		/* Part of it is missing: nothing of it is run. */
		r = hv_error(&err, -failed, "a write failed: nothing was run");
	else if (h->dom)
		r = t->write(h->dom, in, len, NULL, NULL, &err);
	else
		r = make_domain(host_of_level(ino), ino_kind(ino) == FK_CREATE,
				in, len, &name, &err);
	hvfs_log(LOG_NOTICE, "%s%suid %u pid %u wrote %s (%zu bytes): %s%s%s",
		 h->dom ? h->dom->name : "", h->dom ? ": " : "",
		 (unsigned)ctx->uid, (unsigned)ctx->pid, t->name, len,
		 r < 0 ? strerror(-r) : "ok", name ? ", domain " : "",
		 name ? name : "");
	if (r < 0 && h->dom)
		dom_set_error(h->dom, t->name, r, err);
	free(name);
	free(err);
	if (r < 0)
		reply_err(req, r);
	else
		fuse_reply_err(req, 0);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	const struct file_type *t = &file_types[h->kind];
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char *err = NULL, *op = NULL, *reply = NULL;
	size_t reply_len = 0;
	int r, shown = 0;

	if (collects(ino)) {
		collect_write(req, h, buf, size, off);
		return;
	}
	/*
	 * Offsets mean nothing to a command file: each write is one command
	 * (an exchange file's offset only says where its reply starts). A
	 * control file takes one verb per open: bash's `echo -e 'a\nb'`
	 * writes line by line, and two lines are not a verb.
	 */
	pthread_mutex_lock(&h->lock);
	if ((h->kind == FK_CONTROL || h->kind == FK_SNAP_CONTROL) && h->ran)
		r = hv_error(&err, -EINVAL, "one verb per open: this open file "
			     "already ran one; nothing more is run");
	else
		r = 0;
	h->ran = true;
	pthread_mutex_unlock(&h->lock);
	if (r == 0 && t->write_arg)
		r = t->write_arg(h->dom, h->arg, buf, size, &reply, &reply_len,
				 &err);
	else if (r == 0)
		r = t->write(h->dom, buf, size, &reply, &reply_len, &err);
	if (r == 0) {
		pthread_mutex_lock(&h->lock);
		h->base = off + (off_t)size;
		if (t->exchange) {
			free(h->buf);
			h->buf = reply;
			h->len = reply_len;
			reply = NULL;
		}
		h->filled = t->exchange;
		pthread_mutex_unlock(&h->lock);
	}
	free(reply);
	/* The first line, at most 64 bytes (buf is not NUL-terminated); of
	 * what is typed on a console (a password?) only its size. */
	while ((size_t)shown < size && shown < 64 && buf[shown] != '\n')
		shown++;
	if (h->kind == FK_CONSOLE ?
		    asprintf(&op, "%s (%zu bytes)", t->name, size) < 0 :
		    asprintf(&op, "%s%s%s %.*s", t->name, h->arg ? " " : "",
			     h->arg ? h->arg : "", shown, buf) < 0)
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

static void handle_free(struct handle *h)
{
	open_untrack(&h->node);
	if (h->stream)
		stream_release(h->stream);
	if (h->con)
		console_release(h->con);
	pthread_mutex_lock(&followers_lock);
	for (struct handle **p = &followers; h->follower && *p;
	     p = &(*p)->next_follower) {
		if (*p == h) {
			*p = h->next_follower;
			break;
		}
	}
	pthread_mutex_unlock(&followers_lock);
	dom_unref(h->dom);
	pthread_mutex_destroy(&h->lock);
	free(h->buf);
	free(h->in);
	free(h->arg);
	free(h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	handle_free((struct handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* The session ends: what the kernel never released is freed now. */
static void op_destroy(void *userdata)
{
	unsigned files = 0, dirs = 0;

	for (;;) {
		struct open_node *n;

		pthread_mutex_lock(&open_lock);
		n = open_list.next == &open_list ? NULL : open_list.next;
		pthread_mutex_unlock(&open_lock);
		if (!n)
			break;
		if (n->dir) {
			dirhandle_free((struct dirhandle *)n);
			dirs++;
		} else {
			handle_free((struct handle *)n);
			files++;
		}
	}
	if (files || dirs)
		hvfs_log(LOG_INFO, "session ended with %u files and %u "
			 "directories open: freed", files, dirs);
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
	if (h->con) {
		fuse_reply_poll(req, console_poll(h->con, ph));
		return;
	}
	if (h->kind == FK_STATE || h->kind == FK_GUEST_STATE) {
		bool agent = h->kind == FK_GUEST_STATE;

		pthread_mutex_lock(&h->lock);
		if (h->kept && !kept_current(h->dom, ino)) {
			/* This open file's value is no longer the state. */
			revents |= POLLPRI;
			if (ph)
				fuse_pollhandle_destroy(ph);
		} else if (h->filled &&
			   (agent ? dom_poll_agent(h->dom, h->seen, ph) :
				    dom_poll_state(h->dom, h->seen, ph))) {
			revents |= POLLPRI;
		} else if (!h->filled && ph) {
			fuse_pollhandle_destroy(ph);
		}
		pthread_mutex_unlock(&h->lock);
		fuse_reply_poll(req, revents);
		return;
	}
	if (ph)
		fuse_pollhandle_destroy(ph);
	if (file_kind_writable(h->kind))
		revents |= POLLOUT | POLLWRNORM;
	fuse_reply_poll(req, revents);
}

/*
 * The names in the tree are the hypervisors' to make: nothing may be
 * created, removed, renamed or linked. EPERM as sysfs and /proc answer;
 * creating a file is EACCES, as there (the directories are 0555). Without
 * these FUSE would say ENOSYS, "Function not implemented".
 */
static void op_forbid_name(fuse_req_t req)
{
	reply_err(req, EPERM);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	op_forbid_name(req);
}

/*
 * mkdir makes something only where the table says so (snapshots/: takes a
 * snapshot, and returns once it exists); elsewhere EPERM as above.
 */
static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char *err = NULL, *op = NULL;
	fuse_ino_t ino = 0;
	struct dom *d;
	int r;

	if (is_top(parent) || ino_kind(parent) >= FK_COUNT ||
	    !file_types[ino_kind(parent)].makes) {
		op_forbid_name(req);
		return;
	}
	if (!(d = dom_of(req, parent)))
		return;
	r = files_mkdir(d, parent, name, &ino, &err);
	if (asprintf(&op, "mkdir %s/%s", file_types[ino_kind(parent)].name,
		     name) < 0)
		op = NULL;
	hvfs_log(LOG_NOTICE, "%s: uid %u pid %u %s: %s", d->name,
		 (unsigned)ctx->uid, (unsigned)ctx->pid, op ? op : "mkdir",
		 r < 0 ? strerror(-r) : "ok");
	if (r < 0) {
		dom_set_error(d, op ? op : "mkdir", r, err);
		reply_err(req, r);
	} else {
		reply_entry(req, ino, d);
	}
	dom_unref(d);
	free(op);
	free(err);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	op_forbid_name(req);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	op_forbid_name(req);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	op_forbid_name(req);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	op_forbid_name(req);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	reply_err(req, EACCES);
}

/* No extended attributes to set (reading them stays ENOSYS, which the
 * kernel turns into EOPNOTSUPP once and remembers). */
static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	reply_err(req, EOPNOTSUPP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	reply_err(req, EOPNOTSUPP);
}

const struct fuse_lowlevel_ops hvfs_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.poll = op_poll,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_unlink,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.create = op_create,
	.setxattr = op_setxattr,
	.removexattr = op_removexattr,
};
