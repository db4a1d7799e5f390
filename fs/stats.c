/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Every domain's counters: one bulk call per source, reused for a short
 * window, shared by concurrent readers (see stats.h); the `stats` file and
 * the Prometheus exposition of metrics/hvfs.prom.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "stats.h"

/* One bulk answer, shared by the readers that hold a reference. */
struct snap {
	unsigned refs;          /* under the cache's lock */
	int err;                /* the call's own failure, or 0 */
	char *error;            /* its message */
	struct hv_stats *v;
	size_t n;
	int64_t at_ms;          /* when the call ended */
	int64_t took_ms;        /* how long it took */
};

/* A source's cache. */
struct cache {
	pthread_mutex_t lock;
	pthread_cond_t done;
	struct source *src;
	struct snap *last;      /* the newest answer, success or failure */
	struct snap *good;      /* the newest success */
	bool busy;              /* a bulk call is in flight, on its thread */
	bool slow;              /* a reader gave up waiting for it */
	uint64_t flights;       /* bulk calls ended */
	uint64_t failures;      /* bulk calls that failed */
};

static pthread_once_t caches_once = PTHREAD_ONCE_INIT;
static struct cache *caches;
static size_t n_caches;

static void caches_init(void)
{
	pthread_condattr_t attr;

	n_caches = sources_count();
	caches = calloc(n_caches ? n_caches : 1, sizeof(*caches));
	if (!caches) {
		n_caches = 0;
		return;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	for (size_t i = 0; i < n_caches; i++) {
		pthread_mutex_init(&caches[i].lock, NULL);
		pthread_cond_init(&caches[i].done, &attr);
		caches[i].src = source_at(i);
	}
	pthread_condattr_destroy(&attr);
}

static struct cache *cache_of(struct source *s)
{
	pthread_once(&caches_once, caches_init);
	for (size_t i = 0; i < n_caches; i++)
		if (caches[i].src == s)
			return &caches[i];
	return NULL;
}

/* Drops a reference; with the cache's lock held. */
static void snap_put_locked(struct snap *p)
{
	if (p && --p->refs == 0) {
		hv_stats_free(p->v, p->n);
		free(p->error);
		free(p);
	}
}

static void snap_put(struct cache *c, struct snap *p)
{
	pthread_mutex_lock(&c->lock);
	snap_put_locked(p);
	pthread_mutex_unlock(&c->lock);
}

static struct snap *snap_ref_locked(struct snap *p)
{
	if (p)
		p->refs++;
	return p;
}

/* The bulk call, on a thread of its own: lib gives it a deadline longer
 * than a read's (HV_STATS_ALL_TIMEOUT_FACTOR). */
static void *flight_run(void *arg)
{
	struct cache *c = arg;
	struct snap *p = calloc(1, sizeof(*p));
	int64_t start = hvfs_now_ms();

	if (p) {
		p->err = hv_stats_all(source_conn(c->src), &p->v, &p->n,
				      &p->error);
		p->at_ms = hvfs_now_ms();
		p->took_ms = p->at_ms - start;
		p->refs = 1; /* the cache's */
		if (p->err < 0)
			hvfs_log(LOG_WARNING, "%s: statistics: %s", c->src->uri,
				 p->error ? p->error : strerror(-p->err));
	}
	pthread_mutex_lock(&c->lock);
	if (p) {
		if (p->err < 0) {
			c->failures++;
		} else {
			snap_put_locked(c->good);
			c->good = snap_ref_locked(p);
		}
		snap_put_locked(c->last);
		c->last = p;
	}
	c->flights++;
	c->busy = false;
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* Whether c->last still serves: a success for STATS_REUSE_MS or as long
 * as it took, whichever is longer (bulk calls back to back would keep the
 * peer busy), a failure for STATS_RETRY_MS. */
static bool last_serves_locked(const struct cache *c)
{
	const struct snap *p = c->last;
	int64_t ms = !p ? 0 : p->err < 0 ? STATS_RETRY_MS :
		     p->took_ms > STATS_REUSE_MS ? p->took_ms : STATS_REUSE_MS;

	return p && hvfs_now_ms() - p->at_ms < ms;
}

/*
 * The source's newest answer if it still serves, or the one of a bulk call
 * (started here if none is in flight) that ends within wait_ms: a reference
 * (put it with snap_put()). NULL when the call did not end in time, or an
 * earlier reader already gave up on it (c->slow), or out of memory. When
 * it is not a success, *ret_good, if not NULL, gets the newest success
 * (may be NULL).
 */
static struct snap *snap_get(struct source *s, int wait_ms,
			     struct cache **ret_c, struct snap **ret_good)
{
	struct cache *c = cache_of(s);
	struct snap *p = NULL;
	struct timespec dl;
	uint64_t flight;
	int64_t end;
	pthread_t t;
	pthread_attr_t attr;

	*ret_c = c;
	if (ret_good)
		*ret_good = NULL;
	if (!c || !source_conn(s))
		return NULL;
	pthread_mutex_lock(&c->lock);
	if (last_serves_locked(c)) {
		p = snap_ref_locked(c->last);
		if (p->err < 0 && ret_good)
			*ret_good = snap_ref_locked(c->good);
		pthread_mutex_unlock(&c->lock);
		return p;
	}
	if (!c->busy) {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		c->busy = pthread_create(&t, &attr, flight_run, c) == 0;
		pthread_attr_destroy(&attr);
		c->slow = false;
	}
	/* Someone's call is in flight: its answer is ours too, if it comes
	 * within our wait. */
	flight = c->flights;
	end = hvfs_now_ms() + wait_ms; /* CLOCK_MONOTONIC, as c->done's */
	dl.tv_sec = end / 1000;
	dl.tv_nsec = (long)(end % 1000) * 1000000;
	while (c->busy && !c->slow && c->flights == flight &&
	       pthread_cond_timedwait(&c->done, &c->lock, &dl) != ETIMEDOUT)
		;
	if (c->flights != flight)
		p = snap_ref_locked(c->last);
	else
		c->slow = c->busy;
	if ((!p || p->err < 0) && ret_good)
		*ret_good = snap_ref_locked(c->good);
	pthread_mutex_unlock(&c->lock);
	return p;
}

bool stats_stop(int wait_ms)
{
	int64_t end = hvfs_now_ms() + wait_ms;
	bool busy = false;

	for (size_t i = 0; i < n_caches; i++) {
		struct cache *c = &caches[i];

		pthread_mutex_lock(&c->lock);
		while (c->busy && hvfs_now_ms() < end) {
			pthread_mutex_unlock(&c->lock);
			usleep(20000);
			pthread_mutex_lock(&c->lock);
		}
		busy |= c->busy;
		pthread_mutex_unlock(&c->lock);
	}
	return !busy;
}

static const struct hv_stats *snap_find(const struct snap *p,
					const char *hv_name)
{
	for (size_t i = 0; p && i < p->n; i++)
		if (strcmp(p->v[i].name, hv_name) == 0)
			return &p->v[i];
	return NULL;
}

/* Prints one counter's value as virsh does. */
static void put_value(FILE *f, const struct hv_stat *s)
{
	char buf[64];
	int n = hv_stat_format(s, buf, sizeof(buf));

	if (n < 0)
		return;
	if ((size_t)n < sizeof(buf)) {
		fputs(buf, f);
	} else {
		char *big = malloc((size_t)n + 1);

		if (big && hv_stat_format(s, big, (size_t)n + 1) == n)
			fputs(big, f);
		free(big);
	}
}

static int give(FILE *f, char **text, size_t *len, char **ret,
		size_t *ret_len)
{
	if (fclose(f) != 0) {
		free(*text);
		return -ENOMEM;
	}
	*ret = *text;
	*ret_len = *len;
	return 0;
}

int stats_read_dom(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error)
{
	struct cache *c;
	struct snap *p = snap_get(d->src, STATS_WAIT_MS, &c, NULL);
	const struct hv_stats *st = snap_find(p, d->hv_name);
	struct hv_stats *own = NULL;
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int r = 0;

	if (!st) {
		/* Not in a bulk answer (the call is slow or failed, or the
		 * domain came since): ask for this one alone. */
		r = hv_stats(dom_conn(d), d->hv_name, &own, ret_error);
		st = own;
	} else if (st->n == 0 && st->error < 0) {
		r = hv_error(ret_error, st->error, "no statistics: %s",
			     strerror(-st->error));
	}
	if (r == 0 && !(f = open_memstream(&text, &len)))
		r = -ENOMEM;
	if (r == 0) {
		/* Keys are printable ASCII without spaces (hv.h); a string
		 * value (a path) is shown as is, up to a newline. */
		for (size_t i = 0; i < st->n; i++) {
			fprintf(f, "%s ", st->stats[i].key);
			if (st->stats[i].type == HV_STAT_STRING)
				fprintf(f, "%.*s", (int)strcspn(st->stats[i].v.s, "\n"),
					st->stats[i].v.s);
			else
				put_value(f, &st->stats[i]);
			fputc('\n', f);
		}
		r = give(f, &text, &len, ret, ret_len);
	}
	hv_stats_free(own, own ? 1 : 0);
	if (p)
		snap_put(c, p);
	return r;
}

/* ---- metrics/hvfs.prom ---- */

enum unit { U_ONE, U_NS, U_KIB };  /* as is; ns to s; KiB to bytes */
enum family { F_NONE, F_VCPU, F_NET, F_BLOCK }; /* what N in KEY.N. is */

/* A libvirt key (group, N, suffix) and its metric: hvfs_domain_NAME, a
 * counter when NAME ends in _total (Prometheus's rule), else a gauge. */
static const struct metric {
	const char *group, *suffix;
	enum family fam;
	const char *name, *help;
	enum unit unit;
} metrics[] = {
	{ "state", "state", F_NONE, "state",
	  "State as libvirt numbers it: 0 nostate, 1 running, 2 blocked, "
	  "3 paused, 4 shutdown, 5 shutoff, 6 crashed, 7 pmsuspended", U_ONE },
	{ "state", "reason", F_NONE, "state_reason",
	  "Reason for the state, libvirt's number", U_ONE },
	{ "cpu", "time", F_NONE, "cpu_seconds_total",
	  "CPU time of the domain's QEMU", U_NS },
	{ "cpu", "user", F_NONE, "cpu_user_seconds_total",
	  "User CPU time of the domain's QEMU", U_NS },
	{ "cpu", "system", F_NONE, "cpu_system_seconds_total",
	  "System CPU time of the domain's QEMU", U_NS },
	{ "balloon", "current", F_NONE, "balloon_current_bytes",
	  "Memory the guest has now (balloon)", U_KIB },
	{ "balloon", "maximum", F_NONE, "balloon_maximum_bytes",
	  "Memory the guest may have at most", U_KIB },
	{ "balloon", "rss", F_NONE, "memory_rss_bytes",
	  "Resident set of the domain's QEMU", U_KIB },
	{ "balloon", "available", F_NONE, "balloon_available_bytes",
	  "Memory the guest sees (balloon driver)", U_KIB },
	{ "balloon", "usable", F_NONE, "balloon_usable_bytes",
	  "Memory the guest could use without swapping", U_KIB },
	{ "balloon", "unused", F_NONE, "balloon_unused_bytes",
	  "Memory the guest leaves unused", U_KIB },
	{ "balloon", "disk_caches", F_NONE, "balloon_disk_caches_bytes",
	  "Guest memory in disk caches", U_KIB },
	{ "balloon", "swap_in", F_NONE, "balloon_swap_in_bytes_total",
	  "Memory the guest swapped in", U_KIB },
	{ "balloon", "swap_out", F_NONE, "balloon_swap_out_bytes_total",
	  "Memory the guest swapped out", U_KIB },
	{ "balloon", "major_fault", F_NONE, "balloon_major_faults_total",
	  "Major page faults in the guest", U_ONE },
	{ "balloon", "minor_fault", F_NONE, "balloon_minor_faults_total",
	  "Minor page faults in the guest", U_ONE },
	{ "vcpu", "current", F_NONE, "vcpus_current", "vCPUs online", U_ONE },
	{ "vcpu", "maximum", F_NONE, "vcpus_maximum", "vCPUs at most", U_ONE },
	{ "vcpu", "state", F_VCPU, "vcpu_state",
	  "vCPU state: 0 offline, 1 running, 2 blocked", U_ONE },
	{ "vcpu", "time", F_VCPU, "vcpu_seconds_total",
	  "CPU time of the vCPU's thread", U_NS },
	{ "vcpu", "wait", F_VCPU, "vcpu_wait_seconds_total",
	  "Time the vCPU waited on I/O", U_NS },
	{ "vcpu", "delay", F_VCPU, "vcpu_delay_seconds_total",
	  "Time the vCPU's thread waited for a host CPU", U_NS },
	{ "net", "rx.bytes", F_NET, "net_receive_bytes_total",
	  "Bytes received", U_ONE },
	{ "net", "rx.pkts", F_NET, "net_receive_packets_total",
	  "Packets received", U_ONE },
	{ "net", "rx.errs", F_NET, "net_receive_errors_total",
	  "Receive errors", U_ONE },
	{ "net", "rx.drop", F_NET, "net_receive_drops_total",
	  "Received packets dropped", U_ONE },
	{ "net", "tx.bytes", F_NET, "net_transmit_bytes_total",
	  "Bytes sent", U_ONE },
	{ "net", "tx.pkts", F_NET, "net_transmit_packets_total",
	  "Packets sent", U_ONE },
	{ "net", "tx.errs", F_NET, "net_transmit_errors_total",
	  "Transmit errors", U_ONE },
	{ "net", "tx.drop", F_NET, "net_transmit_drops_total",
	  "Packets to send dropped", U_ONE },
	{ "block", "rd.reqs", F_BLOCK, "block_read_requests_total",
	  "Read requests", U_ONE },
	{ "block", "rd.bytes", F_BLOCK, "block_read_bytes_total",
	  "Bytes read", U_ONE },
	{ "block", "rd.times", F_BLOCK, "block_read_seconds_total",
	  "Time spent reading", U_NS },
	{ "block", "wr.reqs", F_BLOCK, "block_write_requests_total",
	  "Write requests", U_ONE },
	{ "block", "wr.bytes", F_BLOCK, "block_write_bytes_total",
	  "Bytes written", U_ONE },
	{ "block", "wr.times", F_BLOCK, "block_write_seconds_total",
	  "Time spent writing", U_NS },
	{ "block", "fl.reqs", F_BLOCK, "block_flush_requests_total",
	  "Flush requests", U_ONE },
	{ "block", "fl.times", F_BLOCK, "block_flush_seconds_total",
	  "Time spent flushing", U_NS },
	{ "block", "allocation", F_BLOCK, "block_allocation_bytes",
	  "Highest offset written in the image", U_ONE },
	{ "block", "capacity", F_BLOCK, "block_capacity_bytes",
	  "Size the guest sees", U_ONE },
	{ "block", "physical", F_BLOCK, "block_physical_bytes",
	  "Size of the image on the host", U_ONE },
};
#define N_METRICS (sizeof(metrics) / sizeof(metrics[0]))

static const char *const fam_label[] = {
	[F_VCPU] = "vcpu", [F_NET] = "interface", [F_BLOCK] = "device",
};

/* A label value, escaped as the exposition format wants. */
static void put_label(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static bool stat_number(const struct hv_stat *s, uint64_t *u, bool *neg)
{
	int64_t l;

	*neg = false;
	switch (s->type) {
	case HV_STAT_INT: l = s->v.i; break;
	case HV_STAT_UINT: *u = s->v.ui; return true;
	case HV_STAT_LLONG: l = s->v.l; break;
	case HV_STAT_ULLONG: *u = s->v.ul; return true;
	case HV_STAT_BOOLEAN: *u = s->v.b; return true;
	default: return false;
	}
	*neg = l < 0;
	*u = l < 0 ? -(uint64_t)l : (uint64_t)l;
	return true;
}

/* One sample's value in the metric's unit. */
static void put_sample_value(FILE *f, const struct hv_stat *s, enum unit u)
{
	uint64_t v;
	bool neg;

	if (s->type == HV_STAT_DOUBLE) {
		fprintf(f, "%.17g", s->v.d * (u == U_NS ? 1e-9 :
					      u == U_KIB ? 1024.0 : 1.0));
		return;
	}
	if (!stat_number(s, &v, &neg))
		return;
	fputs(neg ? "-" : "", f);
	if (u == U_NS)
		fprintf(f, "%llu.%09llu", (unsigned long long)(v / 1000000000),
			(unsigned long long)(v % 1000000000));
	else if (u == U_KIB && v <= UINT64_MAX / 1024)
		fprintf(f, "%llu", (unsigned long long)v * 1024);
	else if (u == U_KIB)
		fprintf(f, "%.17g", (double)v * 1024.0);
	else
		fprintf(f, "%llu", (unsigned long long)v);
}

/* The metric of a key, with N for a family's counters; NULL if none. */
static const struct metric *metric_of(const char *key, long *ret_n)
{
	const char *dot = strchr(key, '.');
	const char *suffix;
	size_t glen;
	char *end;
	long n = -1;

	if (!dot)
		return NULL;
	glen = (size_t)(dot - key);
	suffix = dot + 1;
	if (*suffix >= '0' && *suffix <= '9') {
		n = strtol(suffix, &end, 10);
		if (*end != '.')
			return NULL;
		suffix = end + 1;
	}
	for (size_t i = 0; i < N_METRICS; i++) {
		const struct metric *m = &metrics[i];

		if (strlen(m->group) == glen && strncmp(m->group, key, glen) == 0 &&
		    strcmp(m->suffix, suffix) == 0 && (m->fam != F_NONE) == (n >= 0)) {
			*ret_n = n;
			return m;
		}
	}
	return NULL;
}

/* The samples of one metric family, kept apart until the end: the format
 * wants each family's lines together. */
struct out {
	FILE *f;
	char *text;
	size_t len;
};

static FILE *out_of(struct out *o)
{
	if (!o->f)
		o->f = open_memstream(&o->text, &o->len);
	return o->f;
}

static void put_domain(struct out *outs, const char *host,
		       const struct hv_stats *st)
{
	for (size_t i = 0; i < st->n; i++) {
		const struct hv_stat *s = &st->stats[i];
		const struct metric *m;
		const struct hv_stat *name = NULL;
		long n;
		FILE *f;

		if (!(m = metric_of(s->key, &n)) ||
		    !(f = out_of(&outs[m - metrics])))
			continue;
		if (m->fam == F_NET || m->fam == F_BLOCK) {
			char key[HV_STAT_KEY_MAX + 1];

			snprintf(key, sizeof(key), "%s.%ld.name", m->group, n);
			name = hv_stats_find(st, key);
			if (!name || name->type != HV_STAT_STRING)
				continue;
		}
		fprintf(f, "hvfs_domain_%s{host=\"", m->name);
		put_label(f, host);
		fputs("\",domain=\"", f);
		put_label(f, st->name);
		fputc('"', f);
		if (m->fam == F_VCPU)
			fprintf(f, ",vcpu=\"%ld\"", n);
		else if (name) {
			fprintf(f, ",%s=\"", fam_label[m->fam]);
			put_label(f, name->v.s);
			fputc('"', f);
		}
		fputs("} ", f);
		put_sample_value(f, s, m->unit);
		fputc('\n', f);
	}
}

struct fetch {
	pthread_t thread;
	bool started;
	struct source *src;
	struct cache *c;
	struct snap *p;         /* the answer shown: fresh, or the last good */
	bool up;                /* the newest call that ended succeeded */
};

static void *fetch_run(void *arg)
{
	struct fetch *x = arg;
	struct snap *good;

	x->p = snap_get(x->src, STATS_PROM_WAIT_MS, &x->c, &good);
	if (x->p && x->p->err == 0) {
		x->up = true;
	} else if (x->c) {
		/* The call failed or is slow: the last answer that came, and
		 * whether the newest call that ended succeeded. */
		pthread_mutex_lock(&x->c->lock);
		x->up = good && x->c->last == good;
		snap_put_locked(x->p);
		pthread_mutex_unlock(&x->c->lock);
		x->p = good;
	}
	return NULL;
}

/* A family's HELP and TYPE: a counter when its name ends in _total. */
static void put_family(FILE *f, const char *prefix, const char *name,
		       const char *help)
{
	size_t n = strlen(name);
	bool counter = n >= 6 && strcmp(name + n - 6, "_total") == 0;

	fprintf(f, "# HELP %s%s %s\n# TYPE %s%s %s\n", prefix, name, help,
		prefix, name, counter ? "counter" : "gauge");
}

int stats_prom(char **ret, size_t *ret_len)
{
	size_t ns = sources_count(), nh = hosts_count();
	struct fetch *x = calloc(ns ? ns : 1, sizeof(*x));
	struct out outs[N_METRICS] = { 0 };
	bool *up = calloc(nh ? nh : 1, sizeof(*up));
	char *text = NULL;
	size_t len = 0;
	FILE *f = NULL;
	int64_t last_us, now_ms;
	int r = 0;

	if (!x || !up || !(f = open_memstream(&text, &len))) {
		free(x);
		free(up);
		return -ENOMEM;
	}
	/* Every source at once: one that hangs costs the others nothing. */
	for (size_t i = 0; i < ns; i++) {
		x[i].src = source_at(i);
		x[i].started = ns > 1 &&
			pthread_create(&x[i].thread, NULL, fetch_run, &x[i]) == 0;
		if (!x[i].started)
			fetch_run(&x[i]);
	}
	now_ms = hvfs_now_ms();
	for (size_t h = 0; h < nh; h++)
		up[h] = true;
	for (size_t i = 0; i < ns; i++) {
		int h;

		if (x[i].started)
			pthread_join(x[i].thread, NULL);
		h = host_index(x[i].src->host);
		if (!x[i].up)
			up[h] = false;
		for (size_t k = 0; x[i].p && k < x[i].p->n; k++)
			put_domain(outs, host_name(x[i].src->host),
				   &x[i].p->v[k]);
	}
	for (size_t m = 0; m < N_METRICS; m++) {
		if (!outs[m].f)
			continue;
		if (fclose(outs[m].f) != 0)
			r = -ENOMEM;
		else if (outs[m].len) {
			put_family(f, "hvfs_domain_", metrics[m].name,
				   metrics[m].help);
			fwrite(outs[m].text, 1, outs[m].len, f);
		}
		free(outs[m].text);
	}
	/* hvfs's own health. */
	put_family(f, "", "hvfs_domain_stats_incomplete",
		   "1 when some or all of the domain's counters are missing "
		   "(a QEMU that did not answer, a domain in a job)");
	for (size_t i = 0; i < ns; i++)
		for (size_t k = 0; x[i].p && k < x[i].p->n; k++) {
			fputs("hvfs_domain_stats_incomplete{host=\"", f);
			put_label(f, host_name(x[i].src->host));
			fputs("\",domain=\"", f);
			put_label(f, x[i].p->v[k].name);
			fprintf(f, "\"} %d\n", x[i].p->v[k].error < 0);
		}
	put_family(f, "", "hvfs_host_up",
		   "1 when the newest statistics call to each connection of "
		   "the host succeeded");
	for (size_t h = 0; h < nh; h++) {
		fputs("hvfs_host_up{host=\"", f);
		put_label(f, host_name(host_at(h)));
		fprintf(f, "\"} %d\n", up[h]);
	}
	put_family(f, "", "hvfs_stats_age_seconds",
		   "Age of the oldest statistics answer shown for the host "
		   "(a slow call shows the one before)");
	for (size_t h = 0; h < nh; h++) {
		int64_t age = -1;

		for (size_t i = 0; i < ns; i++)
			if (x[i].p && host_index(x[i].src->host) == (int)h &&
			    now_ms - x[i].p->at_ms > age)
				age = now_ms - x[i].p->at_ms;
		if (age < 0)
			continue;
		fputs("hvfs_stats_age_seconds{host=\"", f);
		put_label(f, host_name(host_at(h)));
		fprintf(f, "\"} %.3f\n", age / 1000.0);
	}
	put_family(f, "", "hvfs_stats_failures_total",
		   "Bulk statistics calls to the host that failed");
	for (size_t h = 0; h < nh; h++) {
		uint64_t fails = 0;

		for (size_t i = 0; i < ns; i++)
			if (x[i].c && host_index(x[i].src->host) == (int)h) {
				pthread_mutex_lock(&x[i].c->lock);
				fails += x[i].c->failures;
				pthread_mutex_unlock(&x[i].c->lock);
			}
		fputs("hvfs_stats_failures_total{host=\"", f);
		put_label(f, host_name(host_at(h)));
		fprintf(f, "\"} %llu\n", (unsigned long long)fails);
	}
	last_us = events_last_us();
	if (last_us) {
		put_family(f, "", "hvfs_last_event_age_seconds",
			   "Time since the last event any host sent");
		fprintf(f, "hvfs_last_event_age_seconds %.3f\n",
			(hvfs_wall_us() - last_us) / 1e6);
	}
	for (size_t i = 0; i < ns; i++)
		if (x[i].p)
			snap_put(x[i].c, x[i].p);
	free(x);
	free(up);
	if (r < 0) {
		fclose(f);
		free(text);
		return r;
	}
	return give(f, &text, &len, ret, ret_len);
}
