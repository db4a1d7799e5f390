/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * floorfs: the floor of the hvfs benchmark. It serves, from memory, a
 * two-level tree read once at start from a snapshot directory
 * (SNAPSHOT/<domain>/<file>), with the FUSE settings hvfs uses: low-level
 * API, direct_io on every open, entry and attribute timeouts of 0.5 s, no
 * negative caching, size 0 on every file, and a multi-threaded loop built
 * by hand (at most 128 threads, 8 idle, clone_fd). No FUSE view of the
 * same tree can answer faster than this; bench/run compares hvfs to it.
 * With -c, the cached floor (what hvfs's kept files can reach): true sizes,
 * keep_cache on open, entry and attribute timeouts of an hour, no flush.
 *
 * usage: floorfs [-d] [-c] SNAPSHOT MOUNTPOINT   (always in the foreground)
 */
#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_MAX_THREADS 128
#define FLOOR_IDLE_THREADS 8
#define FLOOR_TIMEOUT 0.5
#define FLOOR_CACHED_TIMEOUT 3600.0
#define FLOOR_MAX_FILES 255
#define FLOOR_FILE_MAX (1 << 20)

/*
 * ino = (domain index + 1) << 8 | (file index + 1); the domain's directory
 * has file index -1, so its low byte is 0. The root is FUSE_ROOT_ID (1).
 */
struct ffile {
	char *name;
	mode_t mode;
	char *data;
	size_t len;
};

struct fdom {
	char *name;
	struct ffile *files;
	size_t n_files;
};

/* Built before the session starts; read-only afterwards. */
static struct fdom *doms;
static size_t n_doms;
static time_t mount_time;
static bool cached;          /* -c */
static double timeout = FLOOR_TIMEOUT;

static int cmp_dom(const void *a, const void *b)
{
	return strcmp(((const struct fdom *)a)->name,
		      ((const struct fdom *)b)->name);
}

static int read_file(int dirfd, const char *name, struct ffile *ret)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size > FLOOR_FILE_MAX) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc(st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < (size_t)st.st_size &&
	       (n = read(fd, buf + len, st.st_size - len)) > 0)
		len += n;
	close(fd);
	if (n < 0) {
		free(buf);
		return -EIO;
	}
	ret->name = strdup(name);
	ret->mode = st.st_mode & 07777;
	ret->data = buf;
	ret->len = len;
	return ret->name ? 0 : -ENOMEM;
}

static int load_dom(int rootfd, const char *name, struct fdom *ret)
{
	int fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *dir;
	struct dirent *de;
	int r = 0;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	ret->name = strdup(name);
	ret->files = calloc(FLOOR_MAX_FILES, sizeof(*ret->files));
	if (!ret->name || !ret->files)
		r = -ENOMEM;
	while (!r && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		if (ret->n_files == FLOOR_MAX_FILES) {
			r = -E2BIG;
			break;
		}
		r = read_file(dirfd(dir), de->d_name,
			      &ret->files[ret->n_files]);
		if (!r)
			ret->n_files++;
	}
	closedir(dir);
	if (!r && ret->n_files) {
		struct ffile *f = reallocarray(ret->files, ret->n_files,
					       sizeof(*f));

		if (f)
			ret->files = f;
	}
	return r;
}

static int load(const char *path)
{
	DIR *dir = opendir(path);
	struct dirent *de;
	size_t cap = 0;
	int r = 0;

	if (!dir)
		return -errno;
	while (!r && (de = readdir(dir))) {
		if (de->d_name[0] == '.' || de->d_type != DT_DIR)
			continue;
		if (n_doms == cap) {
			struct fdom *n;

			cap = cap ? 2 * cap : 256;
			n = reallocarray(doms, cap, sizeof(*n));
			if (!n) {
				r = -ENOMEM;
				break;
			}
			doms = n;
		}
		memset(&doms[n_doms], 0, sizeof(doms[n_doms]));
		r = load_dom(dirfd(dir), de->d_name, &doms[n_doms]);
		if (!r)
			n_doms++;
	}
	closedir(dir);
	if (!r)
		qsort(doms, n_doms, sizeof(*doms), cmp_dom);
	return r;
}

static fuse_ino_t ino_of(size_t dom, long file)
{
	return (fuse_ino_t)(dom + 1) << 8 | (fuse_ino_t)(file + 1);
}

/* The domain of an inode, or NULL; *ret_file is -1 for its directory. */
static struct fdom *node(fuse_ino_t ino, long *ret_file)
{
	size_t d = (ino >> 8) - 1;
	long f = (long)(ino & 0xff) - 1;

	if (ino < 256 || d >= n_doms || (f >= 0 && (size_t)f >= doms[d].n_files))
		return NULL;
	*ret_file = f;
	return &doms[d];
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	long f = -1;
	struct fdom *d = ino == FUSE_ROOT_ID ? NULL : node(ino, &f);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = mount_time;
	if (!d || f < 0) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return;
	}
	/* Like hvfs's generated files: size 0, read with direct_io; or
	 * like its kept files (-c): the true size. */
	st->st_mode = S_IFREG | d->files[f].mode;
	st->st_nlink = 1;
	if (cached)
		st->st_size = (off_t)d->files[f].len;
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e = {
		.ino = ino,
		.attr_timeout = timeout,
		.entry_timeout = timeout,
	};

	fill_attr(ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	mount_time = time(NULL);
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fdom key = { .name = (char *)name }, *d;
	long f;

	if (parent == FUSE_ROOT_ID) {
		d = bsearch(&key, doms, n_doms, sizeof(*doms), cmp_dom);
		if (!d) {
			fuse_reply_err(req, ENOENT);
			return;
		}
		reply_entry(req, ino_of(d - doms, -1));
		return;
	}
	d = node(parent, &f);
	if (!d || f >= 0) {
		fuse_reply_err(req, d ? ENOTDIR : ENOENT);
		return;
	}
	for (size_t i = 0; i < d->n_files; i++) {
		if (strcmp(d->files[i].name, name) == 0) {
			reply_entry(req, ino_of(d - doms, i));
			return;
		}
	}
	fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct stat st;
	long f;

	if (ino != FUSE_ROOT_ID && !node(ino, &f)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, timeout);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	long f = -1;

	if (ino != FUSE_ROOT_ID && (!node(ino, &f) || f >= 0)) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fdom *d = NULL;
	size_t n, used = 0;
	char *buf = malloc(size);
	long f;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (ino != FUSE_ROOT_ID)
		d = node(ino, &f);
	n = d ? d->n_files : n_doms;
	/* Offsets: 0 ".", 1 "..", then 2 + index. */
	for (off_t i = off; i < (off_t)n + 2; i++) {
		struct stat st = { .st_mode = S_IFDIR };
		const char *name;
		size_t sz;

		if (i < 2) {
			name = i == 0 ? "." : "..";
			st.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
		} else if (d) {
			name = d->files[i - 2].name;
			st.st_ino = ino_of(d - doms, i - 2);
			st.st_mode = S_IFREG;
		} else {
			name = doms[i - 2].name;
			st.st_ino = ino_of(i - 2, -1);
		}
		sz = fuse_add_direntry(req, buf + used, size - used, name, &st,
				       i + 1);
		if (sz > size - used)
			break;
		used += sz;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	struct fdom *d;
	long f;

	d = ino == FUSE_ROOT_ID ? NULL : node(ino, &f);
	if (!d || f < 0) {
		fuse_reply_err(req, d || ino == FUSE_ROOT_ID ? EISDIR : ENOENT);
		return;
	}
	if (acc != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fi->fh = ino;
	if (cached)
		fi->keep_cache = 1;
	else
		fi->direct_io = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	long f;
	struct fdom *d = node(fi->fh, &f);
	const struct ffile *file = &d->files[f];

	if ((size_t)off >= file->len)
		fuse_reply_buf(req, NULL, 0);
	else
		fuse_reply_buf(req, file->data + off,
			       size < file->len - off ? size : file->len - off);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops floor_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.release = op_release,
};

int main(int argc, char **argv)
{
	struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *loop;
	struct fuse_session *se;
	int r, ret = 1, a = 1;
	bool debug = false;

	for (; a < argc && argv[a][0] == '-'; a++) {
		if (strcmp(argv[a], "-d") == 0) {
			debug = true;
		} else if (strcmp(argv[a], "-c") == 0) {
			cached = true;
			timeout = FLOOR_CACHED_TIMEOUT;
		} else {
			break;
		}
	}
	if (argc - a != 2) {
		fprintf(stderr, "usage: floorfs [-d] [-c] SNAPSHOT MOUNTPOINT\n");
		return 2;
	}
	r = load(argv[a]);
	if (r < 0) {
		fprintf(stderr, "floorfs: %s: %s\n", argv[a], strerror(-r));
		return 1;
	}
	if (fuse_opt_add_arg(&fargs, argv[0]) < 0 ||
	    fuse_opt_add_arg(&fargs, "-ofsname=floorfs,subtype=floorfs") < 0 ||
	    (debug && fuse_opt_add_arg(&fargs, "-d") < 0))
		return 1;
	se = fuse_session_new(&fargs, &floor_ops, sizeof(floor_ops), NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) < 0)
		goto out_destroy;
	if (fuse_session_mount(se, argv[a + 1]) < 0)
		goto out_signals;
	loop = fuse_loop_cfg_create();
	if (loop) {
		fuse_loop_cfg_set_max_threads(loop, FLOOR_MAX_THREADS);
		fuse_loop_cfg_set_idle_threads(loop, FLOOR_IDLE_THREADS);
		fuse_loop_cfg_set_clone_fd(loop, 1);
		ret = fuse_session_loop_mt(se, loop) < 0 ? 1 : 0;
		fuse_loop_cfg_destroy(loop);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
out:
	fuse_opt_free_args(&fargs);
	return ret;
}
