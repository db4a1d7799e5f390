/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP driver: QEMU monitors reached directly, without libvirt.
 *
 *   qmp-dir:DIR          every UNIX socket DIR/NAME.qmp is the domain NAME;
 *                        a watcher thread follows DIR with inotify
 *   qmp:NAME=unix:PATH   one domain
 *   qmp:NAME=tcp:HOST:PORT
 *
 * The domain table lives in memory under c->lock and is what list_domains
 * and lookup answer from, without I/O. Each entry owns one struct qmp for its
 * whole life and is refcounted: a call in flight keeps its entry (and the
 * monitor connection) alive after the socket left the directory.
 *
 * RunState (query-status "status") to hv_state:
 *   running                                          RUNNING
 *   paused debug prelaunch inmigrate postmigrate
 *   finish-migrate restore-vm save-vm io-error
 *   watchdog colo internal-error                     PAUSED
 *   suspended                                        PMSUSPENDED
 *   shutdown                                         SHUTDOWN
 *   guest-panicked                                   CRASHED
 *   anything else                                    NOSTATE
 *   nobody listens (ECONNREFUSED, ENOENT)            SHUTOFF (not an error)
 *
 * Events to hv_state (besides the HV_EVENT_HYPERVISOR event itself), so
 * that the state always reads what query-status would answer:
 *   STOP PAUSED, RESUME RUNNING, SUSPEND PMSUSPENDED, WAKEUP RUNNING,
 *   SHUTDOWN SHUTDOWN, GUEST_PANICKED CRASHED;
 *   STOP after SHUTDOWN or GUEST_PANICKED: no change (QEMU stops the VM
 *   into that state: -no-shutdown, panic action pause);
 *   RESET: no change when RUNNING, else PAUSED (QEMU enters prelaunch).
 * A lost connection is HV_EVENT_LOST for that domain alone: QEMU may have
 * exited, or it broke the protocol and lives on. The watcher then asks at
 * once, and an exited QEMU becomes SHUTOFF (an HV_EVENT_STATE). The watcher
 * also says HV_EVENT_LOST when a domain whose state it knew fails to connect
 * for another reason than "nobody listens" (timeout, protocol).
 * A domain leaves (its socket is gone and its connection ended) with
 * HV_EVENT_STATE SHUTOFF, unless that was its last state, then
 * HV_EVENT_UNDEFINED.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv-driver.h"
#include "qga.h"
#include "qmp.h"
#include "sock.h"

#define WATCHER_STACK (256u << 10)
#define TICK_MS 250          /* watcher wake-up while subscribed */
#define RETRY_MAX_MS 8000    /* longest wait between connect attempts */
#define SUFFIX ".qmp"

struct hvq;

struct dom {
	struct dom *next;
	struct hvq *c;
	char *name;
	struct qmp *qmp;
	char *path;             /* the UNIX socket's path; NULL for TCP */
	/* Under c->lock: */
	unsigned refs;          /* the table holds one while !gone */
	bool gone;
	bool seen;              /* scan_dir() mark */
	char uuid[HV_UUID_STRLEN + 1]; /* "" until read on this connection */
	enum hv_state state;    /* last known; NOSTATE if never known */
	int64_t retry_at;       /* watcher: next connect attempt (ms) */
	int backoff_ms;
	/* The guest agent (section "guest agent" below): */
	struct qga *qga;        /* its socket's client; NULL for TCP */
	char *agent_port;       /* under c->lock: the port's qdev id once asked,
				 * "" when it has none */
	int agent_open;         /* under c->lock: VSERPORT_CHANGE said; -1 unknown */
};

struct hvq {
	pthread_mutex_t lock;
	struct dom *doms;       /* entries with !gone */
	int timeout_ms;
	char *dir;              /* qmp-dir only */
	int inotify_fd;         /* -1 without a directory */
	int wake_fd;            /* eventfd: subscribe() and close() */
	pthread_t watcher;
	bool watching;
	bool stop;
	hv_event_fn fn;         /* set once by subscribe() */
	void *userdata;
};

struct dom_vec {
	struct dom **v;
	size_t n, cap;
};

static const struct {
	const char *status;
	enum hv_state state;
} run_states[] = {
	{ "running", HV_STATE_RUNNING },
	{ "paused", HV_STATE_PAUSED },
	{ "debug", HV_STATE_PAUSED },
	{ "prelaunch", HV_STATE_PAUSED },
	{ "inmigrate", HV_STATE_PAUSED },
	{ "postmigrate", HV_STATE_PAUSED },
	{ "finish-migrate", HV_STATE_PAUSED },
	{ "restore-vm", HV_STATE_PAUSED },
	{ "save-vm", HV_STATE_PAUSED },
	{ "io-error", HV_STATE_PAUSED },
	{ "watchdog", HV_STATE_PAUSED },
	{ "colo", HV_STATE_PAUSED },
	{ "internal-error", HV_STATE_PAUSED },
	{ "suspended", HV_STATE_PMSUSPENDED },
	{ "shutdown", HV_STATE_SHUTDOWN },
	{ "guest-panicked", HV_STATE_CRASHED },
};

static const struct {
	const char *event;
	enum hv_state state;
} event_states[] = {
	{ "STOP", HV_STATE_PAUSED },
	{ "RESUME", HV_STATE_RUNNING },
	{ "SUSPEND", HV_STATE_PMSUSPENDED },
	{ "WAKEUP", HV_STATE_RUNNING },
	{ "SHUTDOWN", HV_STATE_SHUTDOWN },
	{ "GUEST_PANICKED", HV_STATE_CRASHED },
};

/* start and reboot have no QMP command; they stay NULL (start is not
 * offered; reboot goes through the guest agent, see qmp_verbs()). */
static const char *const verb_commands[HV_VERB_COUNT] = {
	[HV_VERB_POWERDOWN] = "system_powerdown",
	[HV_VERB_SHUTDOWN] = "system_powerdown",
	[HV_VERB_RESET] = "system_reset",
	[HV_VERB_PAUSE] = "stop",
	[HV_VERB_RESUME] = "cont",
	[HV_VERB_DESTROY] = "quit",
	[HV_VERB_WAKEUP] = "system_wakeup",
};

/* Forgets the words of a failure that turned out not to be one. */
static void drop_error(char **ret_error)
{
	if (ret_error) {
		free(*ret_error);
		*ret_error = NULL;
	}
}

static enum hv_state status_state(const char *status)
{
	for (size_t i = 0; i < sizeof(run_states) / sizeof(run_states[0]); i++)
		if (strcmp(run_states[i].status, status) == 0)
			return run_states[i].state;
	return HV_STATE_NOSTATE;
}

/* The state after `event` in state `old`; HV_STATE_COUNT when the event
 * changes nothing. */
static enum hv_state event_state(const char *event, enum hv_state old)
{
	if (!event)
		return HV_STATE_NOSTATE; /* connection lost: unknown */
	if (strcmp(event, "STOP") == 0 &&
	    (old == HV_STATE_SHUTDOWN || old == HV_STATE_CRASHED))
		return HV_STATE_COUNT;
	if (strcmp(event, "RESET") == 0)
		return old == HV_STATE_RUNNING || old == HV_STATE_NOSTATE ||
				       old == HV_STATE_PAUSED
			       ? HV_STATE_COUNT
			       : HV_STATE_PAUSED;
	for (size_t i = 0; i < sizeof(event_states) / sizeof(event_states[0]);
	     i++)
		if (strcmp(event_states[i].event, event) == 0)
			return event_states[i].state;
	return HV_STATE_COUNT;
}

/* Nobody listens at the socket: the QEMU process is not running. */
static bool qemu_gone(int r)
{
	return r == -ECONNREFUSED || r == -ENOENT;
}

/*
 * QEMU binds its socket a moment before it listens: a refusal from a socket
 * made less than STARTING_MS ago is a QEMU starting, not one gone.
 */
#define STARTING_MS 2000
#define STARTING_POLL_MS 20

static bool socket_is_new(const struct dom *d)
{
	struct timespec now;
	struct stat st;

	if (!d->path || stat(d->path, &st) < 0)
		return false;
	clock_gettime(CLOCK_REALTIME, &now);
	return (now.tv_sec - st.st_ctim.tv_sec) * 1000 +
		       (now.tv_nsec - st.st_ctim.tv_nsec) / 1000000 <
	       STARTING_MS;
}

static int vec_push(struct dom_vec *v, struct dom *d)
{
	struct dom **p;

	if (v->n == v->cap) {
		p = realloc(v->v, (v->cap ? v->cap * 2 : 16) * sizeof(*p));
		if (!p)
			return -ENOMEM;
		v->v = p;
		v->cap = v->cap ? v->cap * 2 : 16;
	}
	v->v[v->n++] = d;
	return 0;
}

static bool valid_name(const char *name, size_t len)
{
	return len > 0 && len <= HV_NAME_MAX && memchr(name, '/', len) == NULL &&
	       !(len == 1 && name[0] == '.') &&
	       !(len == 2 && name[0] == '.' && name[1] == '.');
}

/* Emits one event, lock not held. */
static void emit(hv_event_fn fn, void *userdata, enum hv_event_kind kind,
		 const char *domain, enum hv_state state)
{
	struct timespec t;
	struct hv_event ev = {
		.kind = kind,
		.domain = domain,
		.state = state,
	};

	clock_gettime(CLOCK_REALTIME, &t);
	ev.seconds = t.tv_sec;
	ev.micros = t.tv_nsec / 1000;
	fn(userdata, &ev);
}

static void wake(struct hvq *c);

static struct qga *agent_new(const char *qmp_path);
static void agent_port_event(struct dom *d, const char *data_json,
			     hv_event_fn fn, void *fn_userdata,
			     const struct hv_event *qev);

/* The monitor's reader thread: keeps the cached state, forwards events. */
static void on_qmp_event(void *userdata, const char *event,
			 const char *data_json, int64_t seconds, int64_t micros)
{
	struct dom *d = userdata;
	struct hvq *c = d->c;
	enum hv_state st;
	struct hv_event ev = {
		.domain = d->name,
		.name = event,
		.data_json = data_json,
		.seconds = seconds,
		.micros = micros,
	};
	hv_event_fn fn;
	void *fn_userdata;

	pthread_mutex_lock(&c->lock);
	st = event_state(event, d->state);
	if (!event) {
		d->uuid[0] = '\0'; /* the next QEMU may be another VM */
		d->agent_open = -1; /* its port's events were missed */
		/* Ask soon, but keep the backoff: a peer that breaks every
		 * connection it gets must not be retried in a tight loop. */
		if (d->retry_at < sock_now_ms())
			d->retry_at = sock_now_ms();
	}
	if (st != HV_STATE_COUNT)
		d->state = st;
	fn = d->gone ? NULL : c->fn;
	fn_userdata = c->userdata;
	pthread_mutex_unlock(&c->lock);
	if (!event) {
		/* Said before the watcher may remove the domain, so that its
		 * leaving comes last. */
		if (fn)
			emit(fn, fn_userdata, HV_EVENT_LOST, d->name,
			     HV_STATE_NOSTATE);
		wake(c);
		return;
	}
	if (event && strcmp(event, "VSERPORT_CHANGE") == 0)
		agent_port_event(d, data_json, fn, fn_userdata, &ev);
	if (!fn)
		return;
	ev.kind = HV_EVENT_HYPERVISOR;
	fn(fn_userdata, &ev);
	if (st != HV_STATE_COUNT) {
		ev.kind = HV_EVENT_STATE;
		ev.state = st;
		ev.data_json = NULL;
		fn(fn_userdata, &ev);
	}
}

static struct dom *dom_new(struct hvq *c, const char *name, size_t len,
			   const char *address)
{
	struct dom *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->c = c;
	d->refs = 1;
	d->state = HV_STATE_NOSTATE;
	d->name = strndup(name, len);
	if (strncmp(address, "unix:", 5) == 0)
		d->path = strdup(address + 5);
	d->agent_open = -1;
	if (!d->name || (strncmp(address, "unix:", 5) == 0 && !d->path) ||
	    (d->path && !(d->qga = agent_new(d->path))) ||
	    qmp_new(address, &d->qmp) < 0) {
		qga_free(d->qga);
		free(d->name);
		free(d->path);
		free(d);
		return NULL;
	}
	qmp_set_event_handler(d->qmp, on_qmp_event, d);
	return d;
}

static void dom_put(struct dom *d)
{
	struct hvq *c;
	bool last;

	if (!d)
		return;
	c = d->c;
	pthread_mutex_lock(&c->lock);
	last = --d->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	/* Outside the lock: qmp_free() joins a reader that may be in
	 * on_qmp_event(), which takes it. */
	qmp_free(d->qmp);
	qga_free(d->qga);
	free(d->agent_port);
	free(d->path);
	free(d->name);
	free(d);
}

static struct dom *find_locked(struct hvq *c, const char *name, size_t len)
{
	for (struct dom *d = c->doms; d; d = d->next)
		if (strlen(d->name) == len && memcmp(d->name, name, len) == 0)
			return d;
	return NULL;
}

static struct dom *dom_get(struct hvq *c, const char *name)
{
	struct dom *d;

	pthread_mutex_lock(&c->lock);
	d = find_locked(c, name, strlen(name));
	if (d)
		d->refs++;
	pthread_mutex_unlock(&c->lock);
	return d;
}

static int no_domain(const char *name, char **ret_error)
{
	return hv_error(ret_error, -ENOENT, "%s: no such domain", name);
}

/* A member of a JSON object given as text; NULL if absent. */
static char *json_member_string(const char *json, const char *key)
{
	json_object *o = json ? json_tokener_parse(json) : NULL;
	json_object *v;
	char *s = NULL;

	if (json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		s = strdup(json_object_get_string(v));
	json_object_put(o);
	return s;
}

/*
 * Asks QEMU for its state, and its UUID once per connection. Updates the
 * cache and returns 0 with the state, or a negative errno (-ETIMEDOUT for a
 * hung QEMU). A QEMU that is gone is HV_STATE_SHUTOFF.
 */
static int refresh(struct dom *d, enum hv_state *ret, char **ret_error)
{
	struct hvq *c = d->c;
	enum hv_state st = HV_STATE_SHUTOFF;
	char *json = NULL, *s;
	bool need_uuid;
	int r;

	r = qmp_execute(d->qmp, "query-status", NULL, c->timeout_ms, &json,
			ret_error);
	/* The connection broke under us (QEMU exiting?): one more try tells
	 * a fresh QEMU from a gone one. */
	if (r == -ENOTCONN) {
		drop_error(ret_error);
		r = qmp_execute(d->qmp, "query-status", NULL, c->timeout_ms,
				&json, ret_error);
	}
	for (int waited = 0; qemu_gone(r) && socket_is_new(d) &&
			     waited < STARTING_MS;
	     waited += STARTING_POLL_MS) {
		usleep(STARTING_POLL_MS * 1000);
		/* A try that works leaves no words of the one before. */
		drop_error(ret_error);
		r = qmp_execute(d->qmp, "query-status", NULL, c->timeout_ms,
				&json, ret_error);
	}
	if (qemu_gone(r)) {
		r = 0;
		drop_error(ret_error);
	} else if (r == 0) {
		s = json_member_string(json, "status");
		st = s ? status_state(s) : HV_STATE_NOSTATE;
		free(s);
		free(json);
		json = NULL;
		pthread_mutex_lock(&c->lock);
		need_uuid = d->uuid[0] == '\0';
		pthread_mutex_unlock(&c->lock);
		if (need_uuid && qmp_execute(d->qmp, "query-uuid", NULL,
					     c->timeout_ms, &json, NULL) == 0) {
			s = json_member_string(json, "UUID");
			pthread_mutex_lock(&c->lock);
			if (s && strlen(s) == HV_UUID_STRLEN)
				memcpy(d->uuid, s, HV_UUID_STRLEN + 1);
			pthread_mutex_unlock(&c->lock);
			free(s);
		}
	}
	free(json);
	if (r < 0)
		return r;
	pthread_mutex_lock(&c->lock);
	d->state = st;
	pthread_mutex_unlock(&c->lock);
	if (ret)
		*ret = st;
	return 0;
}

static void fill_info(struct dom *d, struct hv_domain_info *info)
{
	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", d->name);
	memcpy(info->uuid, d->uuid, sizeof(info->uuid));
	info->id = -1;
	info->state = d->state;
}

/* Adds a domain found at open time (no subscriber yet, so no event). */
static int add_locked(struct hvq *c, struct dom *d)
{
	if (!d)
		return -ENOMEM;
	d->next = c->doms;
	c->doms = d;
	return 0;
}

/*
 * Rereads DIR and brings the table in line: a socket that appeared is a new
 * domain, an entry without a socket leaves. Rescanning on every batch of
 * inotify events also covers a queue overflow and renames.
 */
static int scan_dir(struct hvq *c)
{
	struct dom_vec added = { 0 }, removed = { 0 };
	struct dom *d, **pp;
	struct dirent *de;
	struct stat st;
	hv_event_fn fn;
	void *userdata;
	char *address;
	DIR *dir;
	size_t len;
	int r = 0;

	dir = opendir(c->dir); /* O_CLOEXEC in glibc */
	pthread_mutex_lock(&c->lock);
	for (d = c->doms; d; d = d->next)
		d->seen = false;
	while (dir && r == 0 && (de = readdir(dir))) {
		len = strlen(de->d_name);
		if (len <= strlen(SUFFIX) ||
		    strcmp(de->d_name + len - strlen(SUFFIX), SUFFIX) != 0)
			continue;
		len -= strlen(SUFFIX);
		if (!valid_name(de->d_name, len))
			continue;
		if (de->d_type != DT_SOCK &&
		    (de->d_type != DT_UNKNOWN && de->d_type != DT_LNK))
			continue;
		if (de->d_type != DT_SOCK &&
		    (fstatat(dirfd(dir), de->d_name, &st, 0) < 0 ||
		     !S_ISSOCK(st.st_mode)))
			continue;
		d = find_locked(c, de->d_name, len);
		if (d) {
			d->seen = true;
			continue;
		}
		if (asprintf(&address, "unix:%s/%s", c->dir, de->d_name) < 0) {
			r = -ENOMEM;
			break;
		}
		d = dom_new(c, de->d_name, len, address);
		free(address);
		if (!d) {
			/* A path too long for sun_path is skipped too. */
			continue;
		}
		d->seen = true;
		d->refs++; /* for `added` */
		add_locked(c, d);
		if (vec_push(&added, d) < 0) {
			d->refs--;
			r = -ENOMEM;
		}
	}
	for (pp = &c->doms; r == 0 && (d = *pp);) {
		/*
		 * A QEMU removes its socket on the way out, a moment before its
		 * connection ends: it leaves when the connection does (the
		 * reader wakes us), so its last events (SHUTDOWN) come first.
		 */
		if (d->seen || qmp_is_connected(d->qmp)) {
			pp = &d->next;
			continue;
		}
		if (vec_push(&removed, d) < 0) {
			r = -ENOMEM;
			break;
		}
		*pp = d->next;
		d->gone = true; /* the table's ref moves to `removed` */
	}
	fn = c->fn;
	userdata = c->userdata;
	pthread_mutex_unlock(&c->lock);
	if (dir)
		closedir(dir);

	for (size_t i = 0; i < added.n; i++) {
		if (fn)
			emit(fn, userdata, HV_EVENT_DEFINED, added.v[i]->name,
			     HV_STATE_NOSTATE);
		dom_put(added.v[i]);
	}
	for (size_t i = 0; i < removed.n; i++) {
		bool was_off;

		/* Its QEMU is gone (connection ended, socket removed): its
		 * final state, then its leaving. */
		pthread_mutex_lock(&c->lock);
		was_off = removed.v[i]->state == HV_STATE_SHUTOFF;
		removed.v[i]->state = HV_STATE_SHUTOFF;
		pthread_mutex_unlock(&c->lock);
		if (fn && !was_off)
			emit(fn, userdata, HV_EVENT_STATE, removed.v[i]->name,
			     HV_STATE_SHUTOFF);
		if (fn)
			emit(fn, userdata, HV_EVENT_UNDEFINED,
			     removed.v[i]->name, HV_STATE_NOSTATE);
		dom_put(removed.v[i]);
	}
	free(added.v);
	free(removed.v);
	return r;
}

/*
 * While subscribed, keeps every monitor connected so that events flow:
 * domains without a connection are tried, with a growing pause between
 * attempts. A state learnt that way is an HV_EVENT_STATE.
 */
static void connect_pass(struct hvq *c)
{
	struct dom_vec todo = { 0 };
	enum hv_state old, st = HV_STATE_NOSTATE;
	hv_event_fn fn;
	void *userdata;
	int64_t now = sock_now_ms();
	bool stop, unsure;
	int r;

	pthread_mutex_lock(&c->lock);
	fn = c->fn;
	userdata = c->userdata;
	for (struct dom *d = c->doms; fn && d; d = d->next) {
		if (d->retry_at > now || qmp_is_connected(d->qmp))
			continue;
		if (vec_push(&todo, d) == 0)
			d->refs++;
	}
	pthread_mutex_unlock(&c->lock);

	for (size_t i = 0; i < todo.n; i++) {
		struct dom *d = todo.v[i];

		pthread_mutex_lock(&c->lock);
		stop = c->stop;
		old = d->state;
		pthread_mutex_unlock(&c->lock);
		r = stop ? -ECANCELED : refresh(d, &st, NULL);
		pthread_mutex_lock(&c->lock);
		if (r == 0 && qmp_is_connected(d->qmp)) {
			d->backoff_ms = 0;
		} else {
			d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : TICK_MS;
			if (d->backoff_ms > RETRY_MAX_MS)
				d->backoff_ms = RETRY_MAX_MS;
		}
		d->retry_at = sock_now_ms() + d->backoff_ms;
		/*
		 * Nobody listened before (shutoff), and now something listens
		 * but does not answer (a QEMU wedged at start, or not a QEMU):
		 * what we said is no longer known to be true.
		 */
		unsure = r < 0 && r != -ECANCELED &&
			 d->state != HV_STATE_NOSTATE;
		if (unsure)
			d->state = HV_STATE_NOSTATE;
		pthread_mutex_unlock(&c->lock);
		if (r == 0 && st != old)
			emit(fn, userdata, HV_EVENT_STATE, d->name, st);
		if (unsure)
			emit(fn, userdata, HV_EVENT_LOST, d->name,
			     HV_STATE_NOSTATE);
		dom_put(d);
	}
	free(todo.v);
}

static void drain(int fd)
{
	/* inotify needs room for one event with a name. */
	char buf[4096] __attribute__((aligned(8)));

	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

static void *watcher_main(void *arg)
{
	struct hvq *c = arg;
	struct pollfd p[2] = {
		{ .fd = c->wake_fd, .events = POLLIN },
		{ .fd = c->inotify_fd, .events = POLLIN },
	};
	bool subscribed, stop;

	for (;;) {
		pthread_mutex_lock(&c->lock);
		subscribed = c->fn != NULL;
		pthread_mutex_unlock(&c->lock);
		if (poll(p, c->inotify_fd >= 0 ? 2 : 1,
			 subscribed ? TICK_MS : -1) < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&c->lock);
		subscribed = c->fn != NULL;
		stop = c->stop;
		pthread_mutex_unlock(&c->lock);
		if (stop)
			break;
		if (p[0].revents)
			drain(c->wake_fd);
		/* A wake-up may be a lost connection of a QEMU whose socket
		 * is gone already: scan then too. */
		if (c->inotify_fd >= 0 && p[1].revents)
			drain(c->inotify_fd);
		if (c->inotify_fd >= 0 && (p[1].revents || p[0].revents))
			scan_dir(c);
		if (c->inotify_fd >= 0 && p[1].revents) {
			/* Something moved in DIR: maybe a QEMU (re)started. */
			pthread_mutex_lock(&c->lock);
			for (struct dom *d = c->doms; d; d = d->next)
				d->retry_at = 0;
			pthread_mutex_unlock(&c->lock);
		}
		if (subscribed)
			connect_pass(c);
	}
	return NULL;
}

static void wake(struct hvq *c)
{
	uint64_t one = 1;

	if (write(c->wake_fd, &one, sizeof(one)) < 0) {
		/* The counter is non-zero already: the watcher will wake. */
	}
}

static void qmp_close(void *priv)
{
	struct hvq *c = priv;
	struct dom *d;

	if (!c)
		return;
	if (c->watching) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_mutex_unlock(&c->lock);
		wake(c);
		pthread_join(c->watcher, NULL);
	}
	while ((d = c->doms)) {
		c->doms = d->next;
		d->gone = true;
		dom_put(d);
	}
	if (c->inotify_fd >= 0)
		close(c->inotify_fd);
	if (c->wake_fd >= 0)
		close(c->wake_fd);
	pthread_mutex_destroy(&c->lock);
	free(c->dir);
	free(c);
}

static bool qmp_probe(const char *uri)
{
	return strncmp(uri, "qmp-dir:", 8) == 0 || strncmp(uri, "qmp:", 4) == 0;
}

static int open_dir(struct hvq *c, const char *dir, char **ret_error)
{
	struct stat st;

	if (!*dir)
		return hv_error(ret_error, -EINVAL, "needs a directory");
	if (stat(dir, &st) < 0)
		return hv_error(ret_error, -errno, "%s", strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return hv_error(ret_error, -ENOTDIR, "not a directory");
	c->dir = strdup(dir);
	if (!c->dir)
		return -ENOMEM;
	c->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	if (c->inotify_fd < 0)
		return hv_error(ret_error, -errno, "inotify: %s",
				strerror(errno));
	/* Watch first, then scan: nothing created in between is missed. */
	if (inotify_add_watch(c->inotify_fd, dir,
			      IN_CREATE | IN_DELETE | IN_MOVED_FROM |
			      IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |
			      IN_ONLYDIR) < 0)
		return hv_error(ret_error, -errno, "inotify: %s",
				strerror(errno));
	return scan_dir(c);
}

static int open_one(struct hvq *c, const char *spec, char **ret_error)
{
	const char *eq = strchr(spec, '=');
	struct dom *d;

	if (!eq || !valid_name(spec, (size_t)(eq - spec)))
		return hv_error(ret_error, -EINVAL,
				"expected qmp:NAME=unix:PATH or "
				"qmp:NAME=tcp:HOST:PORT");
	d = dom_new(c, spec, (size_t)(eq - spec), eq + 1);
	if (!d)
		return hv_error(ret_error, -EINVAL, "bad monitor address");
	return add_locked(c, d);
}

static int qmp_open(const char *uri, const struct hv_options *opts,
		    void **ret_priv, char **ret_error)
{
	struct hvq *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	int r;

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->inotify_fd = -1;
	c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms :
						       QMP_TIMEOUT_MS_DEFAULT;
	c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->wake_fd < 0)
		r = -errno;
	else if (strncmp(uri, "qmp-dir:", 8) == 0)
		r = open_dir(c, uri + 8, ret_error);
	else if (strncmp(uri, "qmp:", 4) == 0)
		r = open_one(c, uri + 4, ret_error);
	else
		r = -EINVAL;
	if (r == 0) {
		pthread_attr_init(&attr);
		pthread_attr_setstacksize(&attr, WATCHER_STACK);
		r = -pthread_create(&c->watcher, &attr, watcher_main, c);
		pthread_attr_destroy(&attr);
		c->watching = r == 0;
	}
	if (r < 0) {
		qmp_close(c);
		/* The caller names the URI; the message says the rest. */
		return ret_error && *ret_error ? r :
			hv_error(ret_error, r, "%s", strerror(-r));
	}
	*ret_priv = c;
	return 0;
}

static int cmp_info(const void *a, const void *b)
{
	return strcmp(((const struct hv_domain_info *)a)->name,
		      ((const struct hv_domain_info *)b)->name);
}

/* From the table only: the state is the last one known (from a state call,
 * an event, or the watcher), HV_STATE_NOSTATE if never known. */
static int qmp_list_domains(void *priv, struct hv_domain_info **ret,
			    size_t *ret_n, char **ret_error)
{
	struct hvq *c = priv;
	struct hv_domain_info *v = NULL;
	size_t n = 0;
	struct dom *d;

	pthread_mutex_lock(&c->lock);
	for (d = c->doms; d; d = d->next)
		n++;
	if (n > 0 && !(v = calloc(n, sizeof(*v)))) {
		pthread_mutex_unlock(&c->lock);
		return -ENOMEM;
	}
	n = 0;
	for (d = c->doms; d; d = d->next)
		fill_info(d, &v[n++]);
	pthread_mutex_unlock(&c->lock);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_info);
	*ret = v;
	*ret_n = n;
	return 0;
}

/* Like one list entry; the first lookup of a domain whose state was never
 * known asks QEMU (errors there only leave the state unknown). */
static int qmp_lookup(void *priv, const char *name,
		      struct hv_domain_info *ret, char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	bool known;

	if (!d)
		return no_domain(name, ret_error);
	pthread_mutex_lock(&c->lock);
	known = d->state != HV_STATE_NOSTATE;
	pthread_mutex_unlock(&c->lock);
	if (!known)
		refresh(d, NULL, NULL);
	pthread_mutex_lock(&c->lock);
	fill_info(d, ret);
	pthread_mutex_unlock(&c->lock);
	dom_put(d);
	return 0;
}

static int qmp_state(void *priv, const char *name, enum hv_state *ret,
		     char **ret_error)
{
	struct dom *d = dom_get(priv, name);
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = refresh(d, ret, ret_error);
	dom_put(d);
	return r;
}

static int qmp_version_of(void *priv, const char *name, char **ret,
			  char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	int major, minor, micro, r;
	char *v;

	if (!d)
		return no_domain(name, ret_error);
	r = qmp_connect(d->qmp, c->timeout_ms, ret_error);
	if (qemu_gone(r))
		r = hv_error(ret_error, -ENODATA, "%s: not running", name);
	if (r == 0)
		r = qmp_version(d->qmp, &major, &minor, &micro);
	if (r == 0 && asprintf(&v, "%d.%d.%d", major, minor, micro) < 0)
		r = -ENOMEM;
	if (r == 0)
		*ret = v; /* asprintf() leaves v undefined when it fails */
	dom_put(d);
	return r;
}

/* Whether the domain has an agent socket (NAME.qga is a socket; no I/O). */
static bool agent_socket_exists(const struct dom *d)
{
	struct stat st;

	return d->qga && stat(qga_path(d->qga), &st) == 0 &&
	       S_ISSOCK(st.st_mode);
}

/* The QMP verbs, and reboot when the domain has an agent socket. */
static unsigned qmp_verbs(void *priv, const char *name)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	unsigned mask = 0;

	for (unsigned v = 0; v < HV_VERB_COUNT; v++)
		if (verb_commands[v])
			mask |= HV_VERB_BIT(v);
	if (d && agent_socket_exists(d))
		mask |= HV_VERB_BIT(HV_VERB_REBOOT);
	if (d)
		dom_put(d);
	return mask;
}

/*
 * reboot through the agent: guest-shutdown mode reboot, which does not
 * answer on success (qga.c returns once it is sent after a sync), so an
 * agent that reboots the guest at once is no failure. An agent's refusal
 * comes later as a stale reply that the next command's sync discards.
 */
static int agent_reboot(struct hvq *c, struct dom *d, char **ret_error)
{
	char *reply = NULL;
	int r;

	r = qga_execute_json(d->qga, "{\"execute\":\"guest-shutdown\","
			     "\"arguments\":{\"mode\":\"reboot\"}}",
			     c->timeout_ms, true, &reply, ret_error);
	free(reply);
	if (r == -ENODATA)
		r = hv_error(ret_error, -EOPNOTSUPP, "%s: reboot needs the "
			     "guest agent, and none answers at %s", d->name,
			     qga_path(d->qga));
	return r;
}

/* A QEMU that is gone answers with the connect error, ECONNREFUSED (ENOENT
 * is kept for "no such domain"). */
static int qmp_control(void *priv, const char *name, enum hv_verb verb,
		       char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d;
	int r;

	if ((unsigned)verb >= HV_VERB_COUNT ||
	    (!verb_commands[verb] && verb != HV_VERB_REBOOT))
		return hv_error(ret_error, -EOPNOTSUPP,
				"not supported over QMP");
	d = dom_get(c, name);
	if (!d)
		return no_domain(name, ret_error);
	if (verb == HV_VERB_REBOOT) {
		r = d->qga ? agent_reboot(c, d, ret_error) :
			     hv_error(ret_error, -EOPNOTSUPP, "%s: reboot needs "
				      "the guest agent", name);
		dom_put(d);
		return r;
	}
	r = qmp_execute(d->qmp, verb_commands[verb], NULL, c->timeout_ms, NULL,
			ret_error);
	if (r == -ENOENT)
		r = -ECONNREFUSED;
	dom_put(d);
	return r;
}

static int qmp_raw(void *priv, const char *name, const char *command_json,
		   char **ret_reply, char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = qmp_execute_json(d->qmp, command_json, c->timeout_ms, ret_reply,
			     ret_error);
	if (r == -ENOENT) /* no socket: QEMU is gone, the domain is not */
		r = -ECONNREFUSED;
	dom_put(d);
	return r;
}

/* Reads a whole regular file of at most `max` bytes. */
static int slurp(const char *path, size_t max, char **ret, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	char *buf;
	size_t off = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EPROTO;
	}
	if ((uint64_t)st.st_size > max) {
		close(fd);
		return -EFBIG;
	}
	buf = malloc(st.st_size ? st.st_size : 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += n;
	}
	close(fd);
	*ret = buf;
	*ret_len = off;
	return 0;
}

/*
 * Whether the VM has a console to take a screendump from, by QOM's
 * structure: consoles are the child<qemu-console> objects of /backend,
 * which does not exist when there is none. Unsure (QEMU did not say):
 * true.
 */
static bool has_console(struct dom *d)
{
	json_object *list;
	char *json = NULL;
	bool found = false;
	int r;

	r = qmp_execute(d->qmp, "qom-list", "{\"path\":\"/backend\"}",
			d->c->timeout_ms, &json, NULL);
	if (r == -ENOENT) /* DeviceNotFound: no /backend */
		return false;
	list = r == 0 ? json_tokener_parse(json) : NULL;
	free(json);
	if (!json_object_is_type(list, json_type_array)) {
		json_object_put(list);
		return true;
	}
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *t = NULL;

		json_object_object_get_ex(json_object_array_get_idx(list, i),
					  "type", &t);
		if (t && !strcmp(json_object_get_string(t),
				 "child<qemu-console>"))
			found = true;
	}
	json_object_put(list);
	return found;
}

/*
 * screendump writes the PNG into a file that QEMU opens itself: a private
 * directory (mkdtemp, 0700) that only we and a QEMU running as our user can
 * enter. The monitor must be local to share the file system.
 */
static int qmp_screenshot(void *priv, const char *name, char **ret,
			  size_t *ret_len, char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	const char *tmp = getenv("TMPDIR");
	char dir[4096], file[4200];
	json_object *args;
	bool ppm = false;
	int r;

	if (!d)
		return no_domain(name, ret_error);
	snprintf(dir, sizeof(dir), "%s/hvfs-screen-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		r = -errno;
		dom_put(d);
		return hv_error(ret_error, r, "cannot make a temporary "
				"directory: %s", strerror(-r));
	}
	snprintf(file, sizeof(file), "%s/screen", dir);
	args = json_object_new_object();
	json_object_object_add(args, "filename", json_object_new_string(file));
	json_object_object_add(args, "format", json_object_new_string("png"));
	r = qmp_execute(d->qmp, "screendump",
			json_object_to_json_string_ext(args,
						       JSON_C_TO_STRING_PLAIN),
			c->timeout_ms, NULL, ret_error);
	/* A GenericError: there is no console, or a QEMU before 7.1, whose
	 * screendump knows no "format" (PPM only). */
	if (r == -EIO && !has_console(d)) {
		r = -ENODATA; /* with QEMU's words */
	} else if (r == -EIO) {
		ppm = true;
		json_object_object_del(args, "format");
		r = qmp_execute(d->qmp, "screendump",
				json_object_to_json_string_ext(
					args, JSON_C_TO_STRING_PLAIN),
				c->timeout_ms, NULL, ret_error);
		if (r == 0) /* the first refusal is no failure */
			drop_error(ret_error);
	}
	json_object_put(args);
	if (qemu_gone(r))
		r = hv_error(ret_error, -ENODATA, "%s: not running", name);
	if (r == 0) {
		r = slurp(file, HV_SCREENSHOT_MAX, ret, ret_len);
		if (r < 0)
			hv_error(ret_error, r, "%s: cannot read the screendump: "
				 "%s", name, strerror(-r));
	}
	if (r == 0 && ppm) {
		char *png = NULL;
		size_t len = 0;

		r = ppm_to_png((const uint8_t *)*ret, *ret_len, &png, &len);
		free(*ret);
		if (r < 0)
			hv_error(ret_error, r, "%s: screendump gave no PPM",
				 name);
		else {
			*ret = png;
			*ret_len = len;
		}
	}
	unlink(file);
	rmdir(dir);
	dom_put(d);
	return r;
}

static int qmp_set_memory(void *priv, const char *name, uint64_t bytes,
			  char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	char args[64];
	int r;

	if (!d)
		return no_domain(name, ret_error);
	snprintf(args, sizeof(args), "{\"value\":%llu}",
		 (unsigned long long)bytes);
	r = qmp_execute(d->qmp, "balloon", args, c->timeout_ms, NULL,
			ret_error);
	if (r == -ENODEV) /* DeviceNotActive: no balloon device */
		r = -EOPNOTSUPP;
	else if (qemu_gone(r))
		r = -ECONNREFUSED;
	dom_put(d);
	return r;
}

static int qmp_subscribe(void *priv, hv_event_fn fn, void *userdata)
{
	struct hvq *c = priv;

	pthread_mutex_lock(&c->lock);
	if (c->fn) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	c->fn = fn;
	c->userdata = userdata;
	for (struct dom *d = c->doms; d; d = d->next)
		d->retry_at = 0;
	pthread_mutex_unlock(&c->lock);
	wake(c);
	return 0;
}

/* ---- bulk statistics ----
 *
 * libvirt's keys where QEMU can tell, in libvirt's order of groups:
 *   state.state, state.reason     query-status (reason: what the status
 *                                 alone says, else 0); nobody listens:
 *                                 5 (shut off), 0
 *   cpu.time, cpu.user,           the QEMU's /proc/PID/stat (utime+stime),
 *   cpu.system                    ns; PID from SO_PEERCRED, so local UNIX
 *                                 monitors only
 *   balloon.current               query-balloon "actual", KiB
 *   balloon.maximum               query-memory-size-summary, KiB
 *   balloon.rss                   /proc/PID/stat rss, KiB (local)
 *   vcpu.current                  query-cpus-fast entries
 *   vcpu.maximum                  query-hotpluggable-cpus, sum of
 *                                 vcpus-count
 *   vcpu.N.state                  1 (running) for every vCPU QEMU lists
 *   vcpu.N.time, vcpu.N.delay     the vCPU thread's /proc/PID/task/TID/stat
 *                                 (ns) and schedstat run-queue wait (ns)
 *                                 (local)
 *   vcpu.N.NAME.{sum,cur,max}     query-stats target vcpu (QEMU >= 7.1,
 *                                 KVM only) by the stat's type: cumulative,
 *                                 instant, peak (histograms left out)
 *   block.count, block.N.name,    query-blockstats, one N per entry; name:
 *   block.N.{rd,wr}.{reqs,bytes,  the drive's id, else its qdev path, else
 *   times}, block.N.fl.{reqs,     its node name; allocation:
 *   times}, block.N.allocation    wr_highest_offset
 *   block.N.path,                 query-block's inserted file and image
 *   block.N.capacity              virtual-size (absent without a medium)
 *   vm.NAME.{sum,cur,max}         query-stats target vm (KVM only)
 * net.* is absent: QEMU keeps no per-interface counters it would give.
 */

#define STATS_THREADS 16

/* libvirt's reason numbers for the statuses that say why (others: 0). */
static const struct {
	const char *status;
	int reason;
} status_reasons[] = {
	{ "paused", 1 },          /* VIR_DOMAIN_PAUSED_USER */
	{ "prelaunch", 1 },
	{ "inmigrate", 2 },       /* VIR_DOMAIN_PAUSED_MIGRATION */
	{ "postmigrate", 2 },
	{ "finish-migrate", 2 },
	{ "save-vm", 3 },         /* VIR_DOMAIN_PAUSED_SAVE */
	{ "io-error", 5 },        /* VIR_DOMAIN_PAUSED_IOERROR */
	{ "watchdog", 6 },        /* VIR_DOMAIN_PAUSED_WATCHDOG */
	{ "restore-vm", 7 },      /* VIR_DOMAIN_PAUSED_FROM_SNAPSHOT */
	{ "guest-panicked", 1 },  /* VIR_DOMAIN_CRASHED_PANICKED */
};

/* A failure that ends the domain's collection (QEMU gone, hung, broken);
 * any other is QEMU refusing one command, which only leaves keys out. */
static bool stats_fatal(int r)
{
	return r == -ETIMEDOUT || r == -ENOTCONN || r == -EPROTO ||
	       r == -ECONNREFUSED || r == -ENOMEM;
}

/* One command within the call's deadline; *ret the parsed "return". */
static int stats_cmd(struct dom *d, const char *cmd, const char *args,
		     int64_t deadline, json_object **ret)
{
	int64_t left = deadline - sock_now_ms();
	char *json = NULL;
	int r;

	if (left <= 0)
		return -ETIMEDOUT;
	r = qmp_execute(d->qmp, cmd, args, (int)left, &json, NULL);
	if (r < 0)
		return r;
	*ret = json_tokener_parse(json);
	free(json);
	return *ret ? 0 : -EPROTO;
}

static uint64_t member_u64(json_object *o, const char *key, bool *ok)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_int)) {
		*ok = false;
		return 0;
	}
	*ok = true;
	return (uint64_t)json_object_get_uint64(v);
}

/* A string member; NULL when absent or of another type (QEMU's answers
 * are not trusted to be the shape the schema says). */
static const char *member_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool member_is(json_object *o, const char *key, const char *want)
{
	const char *v = member_str(o, key);

	return v && strcmp(v, want) == 0;
}

/* utime + stime (ns) and rss (KiB) from a /proc .../stat file. */
static int proc_stat(const char *path, uint64_t *user_ns, uint64_t *sys_ns,
		     uint64_t *rss_kib)
{
	char buf[1024], *p, *save = NULL;
	uint64_t f[25] = { 0 };
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	int fd = open(path, O_RDONLY | O_CLOEXEC), i;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || tick <= 0 || page <= 0)
		return -EIO;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields count
	 * from the last ')', which ends it (field 2). */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	for (i = 3, p = strtok_r(p + 1, " ", &save); p && i <= 24;
	     i++, p = strtok_r(NULL, " ", &save))
		f[i] = strtoull(p, NULL, 10);
	if (i <= 24)
		return -EIO;
	*user_ns = f[14] * (1000000000ull / (uint64_t)tick);
	*sys_ns = f[15] * (1000000000ull / (uint64_t)tick);
	*rss_kib = f[24] * (uint64_t)page / 1024;
	return 0;
}

/* The run-queue wait (ns) of a thread: schedstat's second field. */
static int proc_delay(int pid, int tid, uint64_t *ret)
{
	char path[64], buf[128];
	unsigned long long run, wait;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/schedstat", pid, tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &run, &wait) != 2)
		return -EIO;
	*ret = wait;
	return 0;
}

static const char *stat_suffix(const char *type)
{
	if (!type)
		return NULL;
	if (strcmp(type, "cumulative") == 0)
		return "sum";
	if (strcmp(type, "instant") == 0)
		return "cur";
	if (strcmp(type, "peak") == 0)
		return "max";
	return NULL; /* histograms */
}

/* The type of stat `name` of target in query-stats-schemas' answer. */
static const char *schema_type(json_object *schemas, const char *target,
			       const char *name)
{
	size_t n = json_object_is_type(schemas, json_type_array) ?
		   json_object_array_length(schemas) : 0;

	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(schemas, i), *v;
		size_t m;

		if (!member_is(s, "target", target) ||
		    !json_object_object_get_ex(s, "stats", &v) ||
		    !json_object_is_type(v, json_type_array))
			continue;
		m = json_object_array_length(v);
		for (size_t j = 0; j < m; j++) {
			json_object *e = json_object_array_get_idx(v, j);

			if (member_is(e, "name", name))
				return member_str(e, "type");
		}
	}
	return NULL;
}

/* A query-stats name we put in a key: QEMU's are lower case words with
 * '_' and '-'; anything else is left out rather than spoil the record. */
static bool valid_stat_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(name[i] >= 'a' && name[i] <= 'z') &&
		    !(name[i] >= 'A' && name[i] <= 'Z') &&
		    !(name[i] >= '0' && name[i] <= '9') && name[i] != '_' &&
		    name[i] != '-')
			return false;
	return true;
}

/* The stats of one query-stats result entry as PREFIX.NAME.SUFFIX. */
static void add_query_stats(struct hvd_stats_builder *b, json_object *entry,
			    json_object *schemas, const char *target,
			    const char *prefix)
{
	json_object *stats;
	size_t n;

	if (!json_object_object_get_ex(entry, "stats", &stats) ||
	    !json_object_is_type(stats, json_type_array))
		return;
	n = json_object_array_length(stats);
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_array_get_idx(stats, i), *v;
		const char *suffix, *name = member_str(s, "name");

		if (!name || !valid_stat_name(name) ||
		    !json_object_object_get_ex(s, "value", &v))
			continue;
		suffix = stat_suffix(schema_type(schemas, target, name));
		if (!suffix)
			continue;
		if (json_object_is_type(v, json_type_int))
			hvd_stats_addf(b, HV_STAT_ULL(json_object_get_uint64(v)),
				      "%s.%s.%s", prefix, name, suffix);
		else if (json_object_is_type(v, json_type_boolean))
			hvd_stats_addf(b, ((struct hv_stat){
					      .type = HV_STAT_BOOLEAN,
					      .v.b = json_object_get_boolean(v) }),
				      "%s.%s.%s", prefix, name, suffix);
	}
}

/* The query-block entry for a query-blockstats entry: the same device
 * name, else the same qdev path. */
static json_object *block_info(json_object *blocks, json_object *stats_entry)
{
	static const char *const ids[] = { "device", "qdev" };
	size_t n = json_object_is_type(blocks, json_type_array) ?
		   json_object_array_length(blocks) : 0;

	for (size_t k = 0; k < 2; k++) {
		const char *id = member_str(stats_entry, ids[k]);

		if (!id || !*id)
			continue;
		for (size_t i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(blocks, i);

			if (member_is(e, ids[k], id))
				return e;
		}
	}
	return NULL;
}

static void add_block(struct hvd_stats_builder *b, json_object *list,
		      json_object *blocks)
{
	size_t n = json_object_array_length(list);
	static const struct {
		const char *qmp, *key;
	} fields[] = {
		{ "rd_operations", "rd.reqs" },
		{ "rd_bytes", "rd.bytes" },
		{ "rd_total_time_ns", "rd.times" },
		{ "wr_operations", "wr.reqs" },
		{ "wr_bytes", "wr.bytes" },
		{ "wr_total_time_ns", "wr.times" },
		{ "flush_operations", "fl.reqs" },
		{ "flush_total_time_ns", "fl.times" },
		{ "wr_highest_offset", "allocation" },
	};

	hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_UINT,
					    .v.ui = (uint32_t)n }),
		      "block.count");
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(list, i), *st, *v;
		json_object *ins = NULL;
		const char *name = NULL, *file;
		bool ok;

		for (const char *const *k = (const char *const[]){
			     "device", "qdev", "node-name", NULL };
		     *k && !(name && *name); k++)
			name = member_str(e, *k);
		if (name && *name)
			hvd_stats_addf(b, HV_STAT_STR(name), "block.%zu.name", i);
		if (!json_object_object_get_ex(block_info(blocks, e), "inserted",
					       &ins))
			ins = NULL;
		if ((file = member_str(ins, "file")))
			hvd_stats_addf(b, HV_STAT_STR(file), "block.%zu.path", i);
		if (json_object_object_get_ex(e, "stats", &st))
			for (size_t f = 0; f < sizeof(fields) / sizeof(*fields);
			     f++) {
				uint64_t x = member_u64(st, fields[f].qmp, &ok);

				if (ok)
					hvd_stats_addf(b, HV_STAT_ULL(x),
						      "block.%zu.%s", i,
						      fields[f].key);
			}
		if (ins && json_object_object_get_ex(ins, "image", &v)) {
			uint64_t x = member_u64(v, "virtual-size", &ok);

			if (ok)
				hvd_stats_addf(b, HV_STAT_ULL(x),
					      "block.%zu.capacity", i);
		}
	}
}

/* Everything QEMU tells about one domain, into b; 0 or a fatal error. */
static int collect(struct dom *d, int64_t deadline,
		   struct hvd_stats_builder *b)
{
	json_object *o = NULL, *cpus = NULL, *schemas = NULL, *blocks = NULL;
	const char *status;
	char path[64];
	uint64_t user = 0, sys = 0, rss = 0, x;
	int pid = 0, r, reason = 0;
	bool local, ok;

	r = stats_cmd(d, "query-status", NULL, deadline, &o);
	/*
	 * The connection broke under us (QEMU exiting?): another try tells a
	 * fresh QEMU from a gone one, as in refresh(), once the reader has
	 * seen the end (until then a send fails with EPIPE, -ENOTCONN again).
	 */
	for (int i = 0; r == -ENOTCONN && i < 3; i++) {
		for (int w = 0; w < 50 && qmp_is_connected(d->qmp); w++)
			usleep(1000);
		r = stats_cmd(d, "query-status", NULL, deadline, &o);
	}
	if (qemu_gone(r)) {
		hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_INT,
						    .v.i = HV_STATE_SHUTOFF }),
			      "state.state");
		hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_INT }),
			      "state.reason");
		return 0;
	}
	if (r < 0)
		return r;
	status = member_str(o, "status");
	if (!status)
		status = "";
	for (size_t i = 0; i < sizeof(status_reasons) / sizeof(*status_reasons);
	     i++)
		if (strcmp(status_reasons[i].status, status) == 0)
			reason = status_reasons[i].reason;
	hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_INT,
					    .v.i = status_state(status) }),
		      "state.state");
	hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_INT,
					    .v.i = reason }),
		      "state.reason");
	json_object_put(o);
	o = NULL;

	local = qmp_peer_pid(d->qmp, &pid) == 0 &&
		snprintf(path, sizeof(path), "/proc/%d/stat", pid) > 0 &&
		proc_stat(path, &user, &sys, &rss) == 0;
	if (local) {
		hvd_stats_addf(b, HV_STAT_ULL(user + sys), "cpu.time");
		hvd_stats_addf(b, HV_STAT_ULL(user), "cpu.user");
		hvd_stats_addf(b, HV_STAT_ULL(sys), "cpu.system");
	}

	r = stats_cmd(d, "query-balloon", NULL, deadline, &o);
	if (r == 0 && (x = member_u64(o, "actual", &ok), ok))
		hvd_stats_addf(b, HV_STAT_ULL(x / 1024), "balloon.current");
	json_object_put(o);
	o = NULL;
	if (r == 0 || !stats_fatal(r))
		r = stats_cmd(d, "query-memory-size-summary", NULL, deadline,
			      &o);
	if (r == 0 && (x = member_u64(o, "base-memory", &ok), ok)) {
		bool ok2;
		uint64_t plugged = member_u64(o, "plugged-memory", &ok2);

		hvd_stats_addf(b, HV_STAT_ULL((x + plugged) / 1024),
			      "balloon.maximum");
	}
	json_object_put(o);
	o = NULL;
	if (stats_fatal(r))
		return r;
	if (local)
		hvd_stats_addf(b, HV_STAT_ULL(rss), "balloon.rss");

	r = stats_cmd(d, "query-cpus-fast", NULL, deadline, &cpus);
	if (stats_fatal(r))
		return r;
	if (r == 0 && json_object_is_type(cpus, json_type_array)) {
		size_t n = json_object_array_length(cpus);
		uint64_t max = 0;

		hvd_stats_addf(b, ((struct hv_stat){ .type = HV_STAT_UINT,
						    .v.ui = (uint32_t)n }),
			      "vcpu.current");
		r = stats_cmd(d, "query-hotpluggable-cpus", NULL, deadline, &o);
		if (stats_fatal(r)) {
			json_object_put(cpus);
			return r;
		}
		for (size_t i = 0; r == 0 && json_object_is_type(o, json_type_array) &&
				   i < json_object_array_length(o); i++)
			max += member_u64(json_object_array_get_idx(o, i),
					  "vcpus-count", &ok);
		if (r == 0 && max)
			hvd_stats_addf(b, ((struct hv_stat){
					      .type = HV_STAT_UINT,
					      .v.ui = (uint32_t)max }),
				      "vcpu.maximum");
		json_object_put(o);
		o = NULL;
		for (size_t i = 0; i < n; i++) {
			json_object *c = json_object_array_get_idx(cpus, i);
			uint64_t idx = member_u64(c, "cpu-index", &ok), tid;
			uint64_t u, s, unused, delay = 0;

			if (!ok)
				continue;
			hvd_stats_addf(b, ((struct hv_stat){
					      .type = HV_STAT_INT, .v.i = 1 }),
				      "vcpu.%llu.state", (unsigned long long)idx);
			tid = member_u64(c, "thread-id", &ok);
			if (!local || !ok)
				continue;
			snprintf(path, sizeof(path), "/proc/%d/task/%llu/stat",
				 pid, (unsigned long long)tid);
			if (proc_stat(path, &u, &s, &unused) == 0)
				hvd_stats_addf(b, HV_STAT_ULL(u + s),
					      "vcpu.%llu.time",
					      (unsigned long long)idx);
			if (proc_delay(pid, (int)tid, &delay) == 0)
				hvd_stats_addf(b, HV_STAT_ULL(delay),
					      "vcpu.%llu.delay",
					      (unsigned long long)idx);
		}
	}

	/* query-stats: QEMU >= 7.1 with KVM; others refuse or answer []. */
	r = stats_cmd(d, "query-stats-schemas", NULL, deadline, &schemas);
	if (stats_fatal(r)) {
		json_object_put(cpus);
		return r;
	}
	if (r == 0)
		r = stats_cmd(d, "query-stats", "{\"target\":\"vcpu\"}", deadline,
			      &o);
	for (size_t i = 0; r == 0 && json_object_is_type(o, json_type_array) &&
			   i < json_object_array_length(o); i++) {
		json_object *e = json_object_array_get_idx(o, i);
		const char *qp = member_str(e, "qom-path");
		char prefix[32];

		/* The vCPU's number: its qom-path in query-cpus-fast. */
		if (!qp)
			continue;
		for (size_t j = 0; json_object_is_type(cpus, json_type_array) &&
				   j < json_object_array_length(cpus); j++) {
			json_object *c = json_object_array_get_idx(cpus, j);

			if (member_is(c, "qom-path", qp)) {
				snprintf(prefix, sizeof(prefix), "vcpu.%llu",
					 (unsigned long long)member_u64(
						 c, "cpu-index", &ok));
				add_query_stats(b, e, schemas, "vcpu", prefix);
			}
		}
	}
	json_object_put(o);
	o = NULL;
	json_object_put(cpus);
	if (stats_fatal(r)) {
		json_object_put(schemas);
		return r;
	}

	r = stats_cmd(d, "query-block", NULL, deadline, &blocks);
	if (r == 0 || !stats_fatal(r))
		r = stats_cmd(d, "query-blockstats", NULL, deadline, &o);
	if (r == 0 && json_object_is_type(o, json_type_array))
		add_block(b, o, blocks);
	json_object_put(o);
	json_object_put(blocks);
	o = NULL;
	if (stats_fatal(r)) {
		json_object_put(schemas);
		return r;
	}

	if (schemas)
		r = stats_cmd(d, "query-stats", "{\"target\":\"vm\"}", deadline,
			      &o);
	for (size_t i = 0; schemas && r == 0 &&
			   json_object_is_type(o, json_type_array) &&
			   i < json_object_array_length(o); i++)
		add_query_stats(b, json_object_array_get_idx(o, i), schemas,
				"vm", "vm");
	json_object_put(o);
	json_object_put(schemas);
	return stats_fatal(r) ? r : 0;
}

static void dom_stats(struct dom *d, int64_t deadline, struct hv_stats *out)
{
	struct hvd_stats_builder b = { 0 };
	int r = collect(d, deadline, &b), p;

	snprintf(out->name, sizeof(out->name), "%s", d->name);
	/* What was gathered before a failure is kept. */
	p = hvd_stats_pack(&b, out);
	out->error = r < 0 ? r : p;
}

static int cmp_stats(const void *a, const void *b)
{
	return strcmp(((const struct hv_stats *)a)->name,
		      ((const struct hv_stats *)b)->name);
}

struct stats_job {
	pthread_mutex_t lock;
	struct dom **doms;
	struct hv_stats *out;
	size_t n, next;
	int64_t deadline;
};

static void *stats_worker(void *arg)
{
	struct stats_job *j = arg;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&j->lock);
		i = j->next++;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n)
			return NULL;
		dom_stats(j->doms[i], j->deadline, &j->out[i]);
	}
}

/*
 * Every domain at once, on up to STATS_THREADS threads (the caller's
 * among them), all within one deadline: a hung QEMU holds one thread until
 * the deadline and costs the others nothing.
 */
static int qmp_stats(void *priv, const char *name, struct hv_stats **ret,
		     size_t *ret_n, char **ret_error)
{
	struct hvq *c = priv;
	struct stats_job j = { .deadline = sock_now_ms() + c->timeout_ms };
	pthread_t threads[STATS_THREADS - 1];
	pthread_attr_t attr;
	size_t nthreads = 0;
	struct dom *d;
	int r = 0;

	pthread_mutex_lock(&c->lock);
	for (d = c->doms; d; d = d->next)
		if (!name || strcmp(d->name, name) == 0)
			j.n++;
	j.doms = j.n ? calloc(j.n, sizeof(*j.doms)) : NULL;
	j.out = j.n ? calloc(j.n, sizeof(*j.out)) : NULL;
	if (j.n && (!j.doms || !j.out)) {
		pthread_mutex_unlock(&c->lock);
		free(j.doms);
		free(j.out);
		return -ENOMEM;
	}
	j.n = 0;
	for (d = c->doms; d; d = d->next)
		if (!name || strcmp(d->name, name) == 0) {
			d->refs++;
			j.doms[j.n++] = d;
		}
	pthread_mutex_unlock(&c->lock);
	if (name && j.n == 0)
		return no_domain(name, ret_error);

	pthread_mutex_init(&j.lock, NULL);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, WATCHER_STACK);
	while (nthreads + 1 < j.n && nthreads < STATS_THREADS - 1 &&
	       pthread_create(&threads[nthreads], &attr, stats_worker, &j) == 0)
		nthreads++;
	pthread_attr_destroy(&attr);
	stats_worker(&j);
	for (size_t i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	pthread_mutex_destroy(&j.lock);

	for (size_t i = 0; i < j.n; i++) {
		if (j.out[i].error == -ENOMEM)
			r = -ENOMEM;
		dom_put(j.doms[i]);
	}
	free(j.doms);
	if (r == 0 && name && j.out[0].error < 0)
		r = hv_error(ret_error, j.out[0].error, "%s: %s", name,
			     j.out[0].error == -ETIMEDOUT ?
			     "QEMU did not answer in time" :
			     strerror(-j.out[0].error));
	if (r < 0) {
		hv_stats_free(j.out, j.n);
		return r;
	}
	if (j.n > 1)
		qsort(j.out, j.n, sizeof(*j.out), cmp_stats);
	*ret = j.out;
	*ret_n = j.n;
	return 0;
}

/* ---- guest agent ----
 *
 * The agent of the domain whose monitor is PATH.qmp (or PATH) is the UNIX
 * socket PATH.qga, spoken to with lib/qga.c. QEMU's VSERPORT_CHANGE event
 * for any port is a sign of life for the agent (the next call tries it
 * again); for the agent's own port (found with qom-list/qom-get by
 * hv_agent_state(): a virtserialport with a qdev id named
 * org.qemu.guest_agent.0) it also becomes an "agent-lifecycle" event and
 * the state, so that hv_agent_state() needs no probe.
 */

#define AGENT_PORT_NAME "org.qemu.guest_agent.0"

static struct qga *agent_new(const char *qmp_path)
{
	size_t n = strlen(qmp_path);
	struct qga *q;
	char *p;

	if (n >= strlen(SUFFIX) &&
	    strcmp(qmp_path + n - strlen(SUFFIX), SUFFIX) == 0)
		n -= strlen(SUFFIX);
	if (asprintf(&p, "%.*s.qga", (int)n, qmp_path) < 0)
		return NULL;
	q = qga_new(p);
	free(p);
	return q;
}

/* The monitor's reader thread, for VSERPORT_CHANGE. */
static void agent_port_event(struct dom *d, const char *data_json,
			     hv_event_fn fn, void *fn_userdata,
			     const struct hv_event *qev)
{
	json_object *o = NULL, *id = NULL, *open = NULL;
	struct hv_event ev = *qev;
	bool mine;

	if (!data_json || qmpc_json_parse_object(data_json, strlen(data_json),
						&o) < 0)
		return;
	if (!json_object_object_get_ex(o, "id", &id) ||
	    !json_object_object_get_ex(o, "open", &open)) {
		json_object_put(o);
		return;
	}
	if (d->qga && json_object_get_boolean(open))
		qga_sign_of_life(d->qga);
	pthread_mutex_lock(&d->c->lock);
	mine = d->agent_port && d->agent_port[0] &&
	       strcmp(d->agent_port, json_object_get_string(id)) == 0;
	if (mine)
		d->agent_open = json_object_get_boolean(open);
	pthread_mutex_unlock(&d->c->lock);
	if (mine && fn) {
		ev.kind = HV_EVENT_HYPERVISOR;
		ev.name = "agent-lifecycle";
		ev.data_json = json_object_get_boolean(open) ?
			"{\"state\":\"connected\"}" :
			"{\"state\":\"disconnected\"}";
		fn(fn_userdata, &ev);
	}
	json_object_put(o);
}

/* Finds the agent port's qdev id (once per domain); best effort. */
static void agent_find_port(struct hvq *c, struct dom *d)
{
	json_object *list = NULL;
	char *json = NULL;

	pthread_mutex_lock(&c->lock);
	if (d->agent_port) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	pthread_mutex_unlock(&c->lock);
	if (qmp_execute(d->qmp, "qom-list",
			"{\"path\":\"/machine/peripheral\"}", c->timeout_ms,
			&json, NULL) < 0)
		return;
	list = json_tokener_parse(json);
	free(json);
	/* Asked once: "" when no port with an id has the agent's name. */
	pthread_mutex_lock(&c->lock);
	if (!d->agent_port)
		d->agent_port = strdup("");
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; json_object_is_type(list, json_type_array) &&
			   i < json_object_array_length(list); i++) {
		json_object *e = json_object_array_get_idx(list, i), *n, *t;
		json_object *args;
		char *val = NULL, path[300];

		if (!json_object_object_get_ex(e, "name", &n) ||
		    !json_object_object_get_ex(e, "type", &t) ||
		    !strstr(json_object_get_string(t), "virtserialport"))
			continue;
		snprintf(path, sizeof(path), "/machine/peripheral/%s",
			 json_object_get_string(n));
		args = json_object_new_object();
		json_object_object_add(args, "path",
				       json_object_new_string(path));
		json_object_object_add(args, "property",
				       json_object_new_string("name"));
		if (args && qmp_execute(d->qmp, "qom-get",
				json_object_to_json_string(args), c->timeout_ms,
				&val, NULL) == 0 &&
		    strcmp(val, "\"" AGENT_PORT_NAME "\"") == 0) {
			char *id = strdup(json_object_get_string(n));

			pthread_mutex_lock(&c->lock);
			if (id && d->agent_port && !d->agent_port[0]) {
				free(d->agent_port);
				d->agent_port = id;
				id = NULL;
			}
			pthread_mutex_unlock(&c->lock);
			free(id);
		}
		free(val);
		json_object_put(args);
	}
	json_object_put(list);
}

/* ---- the serial console ----
 *
 * The console of the domain whose monitor is PATH.qmp (or PATH) is the
 * UNIX socket PATH.serial: a QEMU chardev socket server on the serial port,
 * carrying the bytes as they are. One reader thread per open console.
 */

struct qcon {
	int fd;
	int wake_fd;            /* eventfd: close() */
	pthread_t reader;
	pthread_mutex_t wlock;  /* one writer at a time */
	int timeout_ms;
	hv_console_fn fn;
	void *ud;
};

static void *console_reader(void *arg)
{
	struct qcon *q = arg;
	char buf[4096];
	int err = 0;

	for (;;) {
		struct pollfd p[2] = { { .fd = q->fd, .events = POLLIN },
				       { .fd = q->wake_fd, .events = POLLIN } };
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			break;
		}
		if (p[1].revents)
			return NULL; /* closing: no end is told */
		n = read(q->fd, buf, sizeof(buf));
		if (n > 0) {
			q->fn(q->ud, buf, (size_t)n, 0, NULL);
		} else if (n == 0) {
			break; /* QEMU closed it: it ended */
		} else if (errno != EAGAIN && errno != EINTR) {
			err = -errno;
			break;
		}
	}
	q->fn(q->ud, NULL, 0, err, err ? strerror(-err) : NULL);
	return NULL;
}

static int qmp_console_open(void *priv, const char *name, hv_console_fn fn,
			    void *userdata, void **ret, char **ret_error)
{
	struct hvq *c = priv;
	struct timespec dl = sock_deadline(c->timeout_ms);
	struct dom *d = dom_get(c, name);
	struct qcon *q;
	char *path = NULL, *msg = NULL;
	size_t n;
	int fd;

	if (!d)
		return no_domain(name, ret_error);
	if (!d->path) {
		dom_put(d);
		return hv_error(ret_error, -ENODATA, "%s: no console socket "
				"for a monitor over TCP", name);
	}
	n = strlen(d->path);
	if (n >= strlen(SUFFIX) &&
	    strcmp(d->path + n - strlen(SUFFIX), SUFFIX) == 0)
		n -= strlen(SUFFIX);
	if (asprintf(&path, "%.*s.serial", (int)n, d->path) < 0)
		path = NULL;
	dom_put(d);
	if (!path)
		return hv_error(ret_error, -ENOMEM, "out of memory");
	fd = sock_connect_unix(path, &dl, &msg);
	if (fd < 0) {
		/* No socket, or no QEMU behind it: no console now. */
		int r = fd == -ETIMEDOUT ? fd : -ENODATA;

		hv_error(ret_error, r, "%s: %s", path, msg ? msg : "");
		free(msg);
		free(path);
		return r;
	}
	free(path);
	q = calloc(1, sizeof(*q));
	if (!q || (q->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		free(q);
		close(fd);
		return hv_error(ret_error, -ENOMEM, "out of memory");
	}
	q->fd = fd;
	q->timeout_ms = c->timeout_ms;
	q->fn = fn;
	q->ud = userdata;
	pthread_mutex_init(&q->wlock, NULL);
	if (pthread_create(&q->reader, NULL, console_reader, q) != 0) {
		pthread_mutex_destroy(&q->wlock);
		close(q->wake_fd);
		close(fd);
		free(q);
		return hv_error(ret_error, -EAGAIN, "cannot start a thread");
	}
	*ret = q;
	return 0;
}

static int qmp_console_write(void *con, const char *buf, size_t len,
			     char **ret_error)
{
	struct qcon *q = con;
	struct timespec dl = sock_deadline(q->timeout_ms);
	int r = sock_lock_until(&q->wlock, &dl);

	if (r == 0) {
		r = sock_write_all(q->fd, buf, len, &dl, NULL);
		pthread_mutex_unlock(&q->wlock);
	}
	if (r == -ENOTCONN)
		return hv_error(ret_error, -EPIPE, "the console socket "
				"closed");
	if (r < 0)
		return hv_error(ret_error, r, "the console did not take the "
				"input in time");
	return 0;
}

static void qmp_console_close(void *con)
{
	struct qcon *q = con;
	uint64_t one = 1;

	if (write(q->wake_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write cannot fail here */
	}
	pthread_join(q->reader, NULL);
	pthread_mutex_destroy(&q->wlock);
	close(q->wake_fd);
	close(q->fd);
	free(q);
}

static int qmp_agent_command(void *priv, const char *name,
			     const char *command_json, int timeout_ms,
			     char **ret_reply, char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	int r;

	if (!d)
		return no_domain(name, ret_error);
	if (!d->qga)
		r = hv_error(ret_error, -ENODATA, "%s: no guest agent socket "
			     "for a monitor over TCP", name);
	else
		r = qga_execute_json(d->qga, command_json, timeout_ms, false,
				     ret_reply, ret_error);
	dom_put(d);
	return r;
}

static int qmp_agent_state(void *priv, const char *name, bool *ret,
			   char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	int open, r;

	if (!d)
		return no_domain(name, ret_error);
	if (!d->qga) {
		dom_put(d);
		return hv_error(ret_error, -ENODATA, "%s: no guest agent "
				"socket for a monitor over TCP", name);
	}
	agent_find_port(c, d);
	pthread_mutex_lock(&c->lock);
	open = d->agent_port && d->agent_port[0] ? d->agent_open : -1;
	pthread_mutex_unlock(&c->lock);
	if (open == 0) { /* the guest closed the port: no agent runs */
		*ret = false;
		dom_put(d);
		return 0;
	}
	r = qga_probe(d->qga, c->timeout_ms);
	dom_put(d);
	if (r == -ENODATA)
		return hv_error(ret_error, r, "%s: no guest agent socket", name);
	*ret = r == 1;
	return 0;
}

/* ---- snapshots and vCPUs (direct QMP) ----
 *
 * Internal snapshots live in the qcow2 images of the domain's writable
 * block devices (query-block: the root node of each inserted medium).
 * snapshot-save / snapshot-load / snapshot-delete (QEMU >= 6.0) run as jobs
 * that stay concluded until dismissed: each is followed with query-jobs
 * until it concludes (its "error" is the failure), then dismissed. A job is
 * followed for SNAP_JOB_MS or the connection's timeout, whichever is
 * longer; past that the call is -ETIMEDOUT and the job goes on in QEMU.
 */

#define SNAP_JOB_MS 60000
#define SNAP_POLL_MS 20

/* One command on d, within the deadline and the connection's timeout;
 * *ret (may be NULL) the parsed "return". */
static int snap_cmd(struct dom *d, const char *cmd, json_object *args,
		    int64_t deadline, json_object **ret, char **ret_error)
{
	int64_t left = deadline - sock_now_ms();
	char *json = NULL;
	int r;

	if (left <= 0)
		return hv_error(ret_error, -ETIMEDOUT, "%s: %s: no time left",
				d->name, cmd);
	if (left > d->c->timeout_ms) /* a QEMU that does not answer */
		left = d->c->timeout_ms;
	r = qmp_execute(d->qmp, cmd,
			args ? json_object_to_json_string_ext(
				       args, JSON_C_TO_STRING_PLAIN) : NULL,
			(int)left, ret ? &json : NULL, ret_error);
	if (r < 0)
		return qemu_gone(r) ? -ECONNREFUSED : r;
	if (ret) {
		*ret = json_tokener_parse(json);
		free(json);
		if (!*ret)
			return hv_error(ret_error, -EPROTO, "%s: %s: bad reply",
					d->name, cmd);
	}
	return 0;
}

/*
 * The node names of the writable block devices' media, in *ret (a JSON
 * array of strings), and query-block's list in *ret_blocks (may be NULL).
 * A writable medium that is not qcow2 is -EOPNOTSUPP: its device could not
 * go back with the others.
 */
static int snap_devices(struct dom *d, int64_t deadline, json_object **ret,
			json_object **ret_blocks, char **ret_error)
{
	json_object *blocks = NULL, *nodes;
	int r;

	r = snap_cmd(d, "query-block", NULL, deadline, &blocks, ret_error);
	if (r < 0)
		return r;
	nodes = json_object_new_array();
	for (size_t i = 0; r == 0 && json_object_is_type(blocks, json_type_array) &&
	     i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i), *in, *im;
		const char *node, *fmt;

		if (!json_object_object_get_ex(b, "inserted", &in) ||
		    (json_object_object_get_ex(in, "ro", &im) &&
		     json_object_get_boolean(im)))
			continue;
		node = member_str(in, "node-name");
		fmt = json_object_object_get_ex(in, "image", &im) ?
			      member_str(im, "format") : NULL;
		if (!node)
			continue;
		if (!fmt || strcmp(fmt, "qcow2"))
			r = hv_error(ret_error, -EOPNOTSUPP,
				     "%s: block device %s is %s, not qcow2: "
				     "internal snapshots need qcow2 images",
				     d->name, member_str(b, "device") ?
				     member_str(b, "device") : node,
				     fmt ? fmt : "of no known format");
		else
			json_object_array_add(nodes,
					      json_object_new_string(node));
	}
	if (r == 0 && json_object_array_length(nodes) == 0)
		r = hv_error(ret_error, -EOPNOTSUPP, "%s: no writable qcow2 "
			     "image to hold a snapshot", d->name);
	if (r < 0) {
		json_object_put(nodes);
		json_object_put(blocks);
		return r;
	}
	*ret = nodes;
	if (ret_blocks)
		*ret_blocks = blocks;
	else
		json_object_put(blocks);
	return 0;
}

/* Runs one snapshot job (command with args, to which the job id is added)
 * to its end and dismisses it. */
static int snap_job(struct dom *d, const char *cmd, json_object *args,
		    int64_t deadline, char **ret_error)
{
	static unsigned long seq;
	char id[64];
	int r;

	snprintf(id, sizeof(id), "hvfs-%s-%lu", cmd,
		 __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	json_object_object_add(args, "job-id", json_object_new_string(id));
	r = snap_cmd(d, cmd, args, deadline, NULL, ret_error);
	while (r == 0) {
		json_object *jobs = NULL, *job = NULL, *a;
		const char *status, *error;

		r = snap_cmd(d, "query-jobs", NULL, deadline, &jobs, ret_error);
		if (r < 0)
			break;
		for (size_t i = 0; json_object_is_type(jobs, json_type_array) &&
		     i < json_object_array_length(jobs); i++)
			if (member_is(json_object_array_get_idx(jobs, i), "id",
				      id))
				job = json_object_array_get_idx(jobs, i);
		status = job ? member_str(job, "status") : NULL;
		if (!job) {
			r = hv_error(ret_error, -EPROTO, "%s: job %s is gone",
				     d->name, id);
		} else if (status && !strcmp(status, "concluded")) {
			error = member_str(job, "error");
			if (error)
				r = hv_error(ret_error, -EIO, "%s", error);
			a = json_object_new_object();
			json_object_object_add(a, "id",
					       json_object_new_string(id));
			snap_cmd(d, "job-dismiss", a, deadline + 1000, NULL,
				 NULL);
			json_object_put(a);
			json_object_put(jobs);
			return r;
		} else if (sock_now_ms() + SNAP_POLL_MS >= deadline) {
			r = hv_error(ret_error, -ETIMEDOUT, "%s: %s still %s",
				     d->name, cmd, status ? status : "running");
		}
		json_object_put(jobs);
		if (r == 0)
			usleep(SNAP_POLL_MS * 1000);
	}
	return r;
}

/* The snapshots in query-blocks' images, merged by name into *ret. */
static int snap_collect(json_object *blocks, struct hv_snapshot **ret,
			size_t *ret_n)
{
	struct hv_snapshot *v = NULL;
	size_t n = 0;

	for (size_t i = 0; json_object_is_type(blocks, json_type_array) &&
	     i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i);
		json_object *in, *im, *list;

		if (!json_object_object_get_ex(b, "inserted", &in) ||
		    !json_object_object_get_ex(in, "image", &im) ||
		    !json_object_object_get_ex(im, "snapshots", &list) ||
		    !json_object_is_type(list, json_type_array))
			continue;
		for (size_t j = 0; j < json_object_array_length(list); j++) {
			json_object *s = json_object_array_get_idx(list, j);
			const char *name = member_str(s, "name");
			struct hv_snapshot *e = NULL;
			bool ok;
			uint64_t size = member_u64(s, "vm-state-size", &ok);

			if (!name || !*name || strlen(name) > HV_NAME_MAX)
				continue;
			for (size_t k = 0; k < n; k++)
				if (!strcmp(v[k].name, name))
					e = &v[k];
			if (!e) {
				struct hv_snapshot *nv =
					realloc(v, (n + 1) * sizeof(*v));

				if (!nv) {
					free(v);
					return -ENOMEM;
				}
				v = nv;
				e = &v[n++];
				memset(e, 0, sizeof(*e));
				strcpy(e->name, name);
				e->created = (int64_t)member_u64(s, "date-sec",
								 &ok);
			}
			if (size > e->vm_state_size) {
				e->vm_state_size = size;
				strcpy(e->state, "running");
			}
		}
	}
	*ret = v;
	*ret_n = n;
	return 0;
}

static int64_t snap_deadline(struct hvq *c)
{
	return sock_now_ms() + (c->timeout_ms > SNAP_JOB_MS ? c->timeout_ms
						       : SNAP_JOB_MS);
}

static int qmp_snapshots(void *priv, const char *name,
			 struct hv_snapshot **ret, size_t *ret_n,
			 char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	json_object *blocks = NULL;
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = snap_cmd(d, "query-block", NULL, sock_now_ms() + c->timeout_ms,
		     &blocks, ret_error);
	if (r == 0)
		r = snap_collect(blocks, ret, ret_n);
	json_object_put(blocks);
	dom_put(d);
	return r;
}

/* Whether snap is among the images' snapshots; *ret_vmstate the node of
 * the device whose copy holds the VM state (NULL if none: malloc'd). */
static bool snap_find(json_object *blocks, const char *snap,
		      char **ret_vmstate)
{
	bool found = false;

	*ret_vmstate = NULL;
	for (size_t i = 0; json_object_is_type(blocks, json_type_array) &&
	     i < json_object_array_length(blocks); i++) {
		json_object *b = json_object_array_get_idx(blocks, i);
		json_object *in, *im, *list;

		if (!json_object_object_get_ex(b, "inserted", &in) ||
		    !json_object_object_get_ex(in, "image", &im) ||
		    !json_object_object_get_ex(im, "snapshots", &list))
			continue;
		for (size_t j = 0; json_object_is_type(list, json_type_array) &&
		     j < json_object_array_length(list); j++) {
			json_object *s = json_object_array_get_idx(list, j);
			bool ok;

			if (!member_is(s, "name", snap))
				continue;
			found = true;
			if (!*ret_vmstate &&
			    member_u64(s, "vm-state-size", &ok) > 0 &&
			    member_str(in, "node-name"))
				*ret_vmstate = strdup(member_str(in,
								 "node-name"));
		}
	}
	return found;
}

/* create, revert (load) or delete: the job on every writable image. */
static int snap_op(struct hvq *c, const char *name, const char *snap,
		   const char *cmd, char **ret_error)
{
	struct dom *d = dom_get(c, name);
	int64_t deadline = snap_deadline(c);
	json_object *nodes = NULL, *blocks = NULL, *args;
	char *vmstate = NULL;
	bool exists;
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = snap_devices(d, deadline, &nodes, &blocks, ret_error);
	if (r < 0) {
		dom_put(d);
		return r;
	}
	exists = snap_find(blocks, snap, &vmstate);
	json_object_put(blocks);
	if (!strcmp(cmd, "snapshot-save") && exists)
		r = hv_error(ret_error, -EEXIST, "%s: snapshot '%s' exists",
			     name, snap);
	else if (strcmp(cmd, "snapshot-save") && !exists)
		r = hv_error(ret_error, -ENOENT, "%s: no snapshot '%s'", name,
			     snap);
	else if (!strcmp(cmd, "snapshot-load") && !vmstate)
		r = hv_error(ret_error, -EOPNOTSUPP, "%s: snapshot '%s' holds "
			     "no VM state to load", name, snap);
	if (r < 0) {
		free(vmstate);
		json_object_put(nodes);
		dom_put(d);
		return r;
	}
	args = json_object_new_object();
	json_object_object_add(args, "tag", json_object_new_string(snap));
	if (!strcmp(cmd, "snapshot-save"))
		json_object_object_add(args, "vmstate", json_object_get(
			json_object_array_get_idx(nodes, 0)));
	else if (!strcmp(cmd, "snapshot-load"))
		json_object_object_add(args, "vmstate",
				       json_object_new_string(vmstate));
	json_object_object_add(args, "devices", nodes);
	r = snap_job(d, cmd, args, deadline, ret_error);
	json_object_put(args);
	free(vmstate);
	dom_put(d);
	return r;
}

static int qmp_snapshot_create(void *priv, const char *name, const char *snap,
			       const char *description, unsigned flags,
			       char **ret_error)
{
	if (flags & HV_SNAPSHOT_DISK_ONLY)
		return hv_error(ret_error, -EOPNOTSUPP, "%s: QEMU's internal "
				"snapshots always hold the VM state", name);
	return snap_op(priv, name, snap, "snapshot-save", ret_error);
}

static int qmp_snapshot_revert(void *priv, const char *name, const char *snap,
			       char **ret_error)
{
	return snap_op(priv, name, snap, "snapshot-load", ret_error);
}

static int qmp_snapshot_delete(void *priv, const char *name, const char *snap,
			       char **ret_error)
{
	return snap_op(priv, name, snap, "snapshot-delete", ret_error);
}

/* vCPUs: query-cpus-fast counts them, query-hotpluggable-cpus gives the
 * slots (a machine that cannot hot-plug refuses it: then maximum is the
 * count). */
static int vcpu_slots(struct dom *d, int64_t deadline, unsigned *ret_cur,
		      json_object **ret_slots, char **ret_error)
{
	json_object *cpus = NULL, *slots = NULL;
	int r;

	r = snap_cmd(d, "query-cpus-fast", NULL, deadline, &cpus, ret_error);
	if (r < 0)
		return r;
	*ret_cur = json_object_is_type(cpus, json_type_array) ?
			   (unsigned)json_object_array_length(cpus) : 0;
	json_object_put(cpus);
	if (snap_cmd(d, "query-hotpluggable-cpus", NULL, deadline, &slots,
		     NULL) < 0 ||
	    !json_object_is_type(slots, json_type_array)) {
		json_object_put(slots);
		slots = NULL;
	}
	*ret_slots = slots;
	return 0;
}

static int qmp_vcpus(void *priv, const char *name, struct hv_vcpus *ret,
		     char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	json_object *slots = NULL;
	unsigned cur = 0;
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = vcpu_slots(d, sock_now_ms() + c->timeout_ms, &cur, &slots, ret_error);
	if (r == 0) {
		ret->current = cur;
		ret->maximum = slots ? (unsigned)json_object_array_length(slots)
				     : cur;
		if (ret->maximum < cur)
			ret->maximum = cur;
	}
	json_object_put(slots);
	dom_put(d);
	return r;
}

static int qmp_set_vcpus(void *priv, const char *name, unsigned n,
			 char **ret_error)
{
	struct hvq *c = priv;
	struct dom *d = dom_get(c, name);
	int64_t deadline = sock_now_ms() + c->timeout_ms;
	json_object *slots = NULL;
	unsigned cur = 0, max;
	int r;

	if (!d)
		return no_domain(name, ret_error);
	r = vcpu_slots(d, deadline, &cur, &slots, ret_error);
	max = slots ? (unsigned)json_object_array_length(slots) : cur;
	if (r < 0)
		goto out;
	if (n == cur)
		goto out;
	if (!slots) {
		r = hv_error(ret_error, -EOPNOTSUPP, "%s: the machine cannot "
			     "hot-plug CPUs", name);
	} else if (n > max) {
		r = hv_error(ret_error, -EINVAL, "%s: %u vCPUs, at most %u",
			     name, n, max);
	} else if (n < cur) {
		r = hv_error(ret_error, -EOPNOTSUPP, "%s: unplugging vCPUs "
			     "needs the guest's consent: not done over QMP",
			     name);
	}
	/* The free slots, in QEMU's order, until there are n. */
	for (size_t i = 0; r == 0 && cur < n && i < max; i++) {
		json_object *slot = json_object_array_get_idx(slots, i);
		json_object *props, *args;
		const char *type = member_str(slot, "type");
		char id[32];

		if (json_object_object_get_ex(slot, "qom-path", NULL) ||
		    !type ||
		    !json_object_object_get_ex(slot, "props", &props))
			continue;
		args = json_object_new_object();
		json_object_object_foreach(props, k, v)
			json_object_object_add(args, k, json_object_get(v));
		snprintf(id, sizeof(id), "hvfs-vcpu%zu", i);
		json_object_object_add(args, "driver",
				       json_object_new_string(type));
		json_object_object_add(args, "id", json_object_new_string(id));
		r = snap_cmd(d, "device_add", args, deadline, NULL, ret_error);
		json_object_put(args);
		cur += r == 0;
	}
out:
	json_object_put(slots);
	dom_put(d);
	return r;
}

const struct hv_driver hvd_qmp_driver = {
	.name = "qmp",
	.probe = qmp_probe,
	.open = qmp_open,
	.close = qmp_close,
	.list_domains = qmp_list_domains,
	.lookup = qmp_lookup,
	.state = qmp_state,
	.version = qmp_version_of,
	.verbs = qmp_verbs,
	.control = qmp_control,
	.qmp = qmp_raw,
	.subscribe = qmp_subscribe,
	.screenshot = qmp_screenshot,
	.set_memory = qmp_set_memory,
	.stats = qmp_stats,
	.agent_command = qmp_agent_command,
	.console_open = qmp_console_open,
	.console_write = qmp_console_write,
	.console_close = qmp_console_close,
	.agent_state = qmp_agent_state,
	.vcpus = qmp_vcpus,
	.set_vcpus = qmp_set_vcpus,
	.snapshots = qmp_snapshots,
	.snapshot_create = qmp_snapshot_create,
	.snapshot_revert = qmp_snapshot_revert,
	.snapshot_delete = qmp_snapshot_delete,
};
