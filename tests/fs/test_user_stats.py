# SPDX-License-Identifier: GPL-2.0-or-later
"""Issue 17: DOMAIN/stats and metrics/hvfs.prom, played as users play them:
`cat */stats` against `virsh domstats`, direct QMP against the monitor's own
answers, the exposition file through `promtool check metrics` and through a
real node_exporter's textfile collector scraped with curl, and the faults:
a domain stuck in a job, a hung QEMU, a host that is down."""

import os
import re
import signal
import socket
import subprocess
import time

from hvtest import LIBVIRTD, virsh, wait_for

PREFIX = "hvfs-stats-"
TIMEOUT = 2

# Keys whose values only grow; fixed ones are compared for equality.
GROWING = re.compile(r"^(cpu\.(time|user|system)|vcpu\.\d+\.(time|wait|delay)"
                     r"|block\.\d+\.(rd|wr|fl)\.\w+|net\.\d+\.[rt]x\.\w+)$")
FIXED = re.compile(r"^(state\.state|balloon\.maximum|vcpu\.(current|maximum)"
                   r"|vcpu\.\d+\.state|block\.count|net\.count"
                   r"|(block|net)\.\d+\.(name|path|capacity))$")


# The groups hvfs asks libvirt for (docs/fs-layout.md, stats).
GROUPS = ["--state", "--cpu-total", "--balloon", "--vcpu", "--interface",
          "--block", "--perf", "--memory"]


def domstats(*names, groups=GROUPS):
    """virsh domstats: {domain: [(key, value), ...]} in its order."""
    out, cur = {}, None
    for line in virsh("domstats", *groups, *names).splitlines():
        m = re.match(r"^Domain: '(.*)'$", line)
        if m:
            cur = out.setdefault(m.group(1), [])
        elif line.strip():
            k, v = line.strip().split("=", 1)
            cur.append((k, v))
    return out


def parse_stats(text):
    assert text.endswith("\n")
    return [tuple(line.split(" ", 1)) for line in text.splitlines()]


def num(v):
    return float(v)


def test_stats_against_virsh_domstats(domains, mount):
    a, b = domains("a"), domains("b")
    m = mount("-c", LIBVIRTD.uri, timeout=5)
    wait_for(lambda: a in m.ls() and b in m.ls(), what="domains")
    before = domstats(a, b)
    got = {d: parse_stats(m.read(d, "stats")) for d in (a, b)}
    after = domstats(a, b)
    for d in (a, b):
        keys = [k for k, _ in got[d]]
        assert keys == [k for k, _ in before[d]], d
        assert keys == [k for k, _ in after[d]], d
        assert "cpu.time" in keys and "state.state" in keys
        # The groups left out: virsh gives them when asked for all.
        every = [k for k, _ in domstats(d, groups=[])[d]]
        assert any(k.startswith("dirtyrate.") for k in every), every
        assert not any(k.startswith(("dirtyrate.", "iothread.", "vm."))
                       for k in keys), keys
        lo, hi = dict(before[d]), dict(after[d])
        for k, v in got[d]:
            if GROWING.match(k):
                assert num(lo[k]) <= num(v) <= num(hi[k]), (d, k)
            elif FIXED.match(k):
                assert v == lo[k] == hi[k], (d, k)
    # One bulk call serves every domain within the window: two reads at
    # once give the same cpu.time (the same answer).
    t1 = dict(parse_stats(m.read(a, "stats")))["cpu.time"]
    t2 = dict(parse_stats(m.read(a, "stats")))["cpu.time"]
    assert t1 == t2
    # It is world-readable, as virsh domstats is to a read-only client.
    assert os.stat(m.path(a, "stats")).st_mode & 0o777 == 0o444


def proc_cpu_ns(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * 10**9 // hz


def test_stats_direct_qmp_against_the_monitor(vms, qmp_dir, mount):
    vm = vms("q1")
    paused = vms("q2", "-S")
    m = mount("--qmp-dir", qmp_dir, timeout=5)
    wait_for(lambda: m.ls() == ["q1", "q2"], what="domains")
    lo = proc_cpu_ns(vm.proc.pid)
    st = dict(parse_stats(m.read("q1", "stats")))
    hi = proc_cpu_ns(vm.proc.pid)
    assert vm.status() == "running" and st["state.state"] == "1"
    assert paused.oracle.execute("query-status")["status"] == "prelaunch"
    assert dict(parse_stats(m.read("q2", "stats")))["state.state"] == "3"
    assert lo <= int(st["cpu.time"]) <= hi
    # QEMU has no per-interface counters: absent, never 0.
    assert not any(k.startswith("net.") for k in st)
    blocks = vm.oracle.execute("query-blockstats")
    assert st.get("block.count", "0") == str(len(blocks))


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_prom_promtool_node_exporter_and_a_host_down(domains, mount):
    a = domains("p")
    dead = free_port()  # nothing listens there
    m = mount("-c", "here=" + LIBVIRTD.uri,
              "-c", f"gone=qemu+tcp://127.0.0.1:{dead}/system", timeout=TIMEOUT)
    assert sorted(os.listdir(m.dir)) == [".events", ".metrics", "gone",
                                         "here"]
    assert os.listdir(m.path(".metrics")) == ["hvfs.prom"]
    wait_for(lambda: a in m.ls("here"), what="domain")
    t = time.monotonic()
    text = m.read(".metrics", "hvfs.prom")
    assert time.monotonic() - t < TIMEOUT + 3
    promtool(text)
    assert 'hvfs_host_up{host="gone"} 0' in text
    assert 'hvfs_host_up{host="here"} 1' in text
    assert re.search(r'^hvfs_domain_cpu_seconds_total\{host="here",domain="%s"\}'
                     r' \d+\.\d{9}$' % a, text, re.M)
    assert f'hvfs_domain_state{{host="here",domain="{a}"}} 1' in text
    assert f'hvfs_domain_vcpu_seconds_total{{host="here",domain="{a}",vcpu="0"}}' in text
    assert "# TYPE hvfs_domain_cpu_seconds_total counter" in text
    # node_exporter's textfile collector, pointed at the directory.
    port = free_port()
    ne = subprocess.Popen(
        ["prometheus-node-exporter", "--collector.disable-defaults",
         "--collector.textfile",
         f"--collector.textfile.directory={m.path('.metrics')}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def scrape():
            p = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/metrics"],
                               capture_output=True, text=True)
            return p.stdout if p.returncode == 0 else None
        wait_for(lambda: scrape(), what="node_exporter")
        out = scrape()
        assert f'hvfs_domain_cpu_seconds_total{{domain="{a}",host="here"}}' in out
        assert 'hvfs_host_up{host="gone"} 0' in out
        assert "node_textfile_scrape_error 0" in out
    finally:
        ne.kill()
        ne.wait()
        ne.stderr.close()


def qemu_pid(name):
    with open(os.path.join(LIBVIRTD.dir, "run", "qemu", name + ".pid")) as f:
        pid = int(f.read().strip())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f"guest={name},".encode() in f.read()
    return pid


def test_prom_with_a_domain_in_a_job_and_a_hung_qemu(domains, vms, qmp_dir,
                                                     mount):
    stuck, ok = domains("job"), domains("ok")
    vms("fine")
    hung = vms("hung")
    m = mount("-c", "virt=" + LIBVIRTD.uri, "--qmp-dir", qmp_dir,
              timeout=TIMEOUT)
    wait_for(lambda: ok in m.ls() and "fine" in m.ls(), what="domains")
    pid = qemu_pid(stuck)
    os.kill(pid, signal.SIGSTOP)
    os.kill(hung.proc.pid, signal.SIGSTOP)
    # A monitor command holds the domain's job while its QEMU sleeps.
    job = subprocess.Popen(["virsh", "-c", LIBVIRTD.uri, "qemu-monitor-command",
                            stuck, '{"execute":"query-status"}'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        for _ in range(2):
            t = time.monotonic()
            text = m.read(".metrics", "hvfs.prom")
            assert time.monotonic() - t < TIMEOUT + 3
            promtool(text)
            assert re.search(r'^hvfs_domain_cpu_seconds_total\{host="[^"]+",'
                             r'domain="%s"\} ' % ok, text, re.M), text
            assert re.search(r'^hvfs_domain_cpu_seconds_total\{host="[^"]+",'
                             r'domain="fine"\} ', text, re.M), text
            assert re.search(r'^hvfs_domain_stats_incomplete\{host="[^"]+",'
                             r'domain="hung"\} 1$', text, re.M), text
        t = time.monotonic()
        try:
            m.read("hung", "stats")
            ok_read = True
        except OSError as e:
            ok_read = False
            assert e.errno == 110  # ETIMEDOUT
        assert time.monotonic() - t < TIMEOUT + 3
        assert "state.state" in m.read("fine", "stats")
        del ok_read
    finally:
        os.kill(pid, signal.SIGCONT)
        os.kill(hung.proc.pid, signal.SIGCONT)
        job.wait(timeout=30)


def prom_value(text, metric, **labels):
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(r"^%s\{%s\} (\S+)$" % (re.escape(metric), re.escape(sel)),
                  text, re.M)
    return float(m.group(1)) if m else None


def test_stats_when_the_bulk_call_is_slow(domains, mount):
    """A QEMU stopped outside any job holds libvirt's bulk call (libvirtd
    waits for its monitor without end): `cat MOUNT/*/stats` still answers
    for every other domain, each read within its deadline, the bulk call is
    not retried by every reader, and it all comes back once the QEMU runs."""
    a, b, stopped = domains("a"), domains("b"), domains("stopped")
    m = mount("-c", "virt=" + LIBVIRTD.uri, timeout=TIMEOUT)
    wait_for(lambda: {a, b, stopped} <= set(m.ls()), what="domains")
    before = m.read(".metrics", "hvfs.prom")
    assert prom_value(before, "hvfs_host_up", host="virt") == 1
    time.sleep(1.2)  # that answer is no longer fresh
    pid = qemu_pid(stopped)
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        p = subprocess.run(["sh", "-c", f"cat {m.dir}/*/stats"],
                           capture_output=True, text=True)
        took = time.monotonic() - t
        # Each of the others answers; the stopped one's alone call may
        # wait for its QEMU too and then fail with ETIMEDOUT.
        assert p.stdout.count("state.state 1\n") >= 2, p.stderr
        assert p.stderr in ("", f"cat: {m.dir}/{stopped}/stats: "
                            "Connection timed out\n"), p.stderr
        assert took < 1.5 * TIMEOUT + 3, took
        for d in (a, b):
            st = dict(parse_stats(m.read(d, "stats")))
            assert st["state.state"] == "1" and "cpu.time" in st, d
        # The scrape shows the answer before, with its age, in time.
        t = time.monotonic()
        text = m.read(".metrics", "hvfs.prom")
        assert time.monotonic() - t < 1.5 * TIMEOUT + 3
        promtool(text)
        assert prom_value(text, "hvfs_domain_state", host="virt",
                          domain=a) == 1
        assert prom_value(text, "hvfs_stats_age_seconds", host="virt") >= 1
        # The bulk call has HV_STATS_ALL_TIMEOUT_FACTOR (12) deadlines; it
        # fails once, and the readers after it do not call it again.
        wait_for(lambda: prom_value(m.read(".metrics", "hvfs.prom"),
                                    "hvfs_stats_failures_total",
                                    host="virt") == 1,
                 timeout=12 * TIMEOUT + 10, what="the bulk call to fail")
        t = time.monotonic()
        for _ in range(3):
            for d in (a, b):
                assert "cpu.time " in m.read(d, "stats")
            text = m.read(".metrics", "hvfs.prom")
        assert time.monotonic() - t < TIMEOUT + 3
        assert prom_value(text, "hvfs_stats_failures_total", host="virt") == 1
        assert prom_value(text, "hvfs_host_up", host="virt") == 0
        assert prom_value(text, "hvfs_domain_state", host="virt",
                          domain=a) == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    # Once the failure stood its time (10 s), the next call succeeds.
    wait_for(lambda: prom_value(m.read(".metrics", "hvfs.prom"),
                                "hvfs_host_up", host="virt") == 1,
             timeout=10 + 12 * TIMEOUT + 5, what="the host to be up again")
    text = m.read(".metrics", "hvfs.prom")
    assert prom_value(text, "hvfs_stats_age_seconds", host="virt") < 5
    assert prom_value(text, "hvfs_domain_state", host="virt",
                      domain=stopped) == 1
