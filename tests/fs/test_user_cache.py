# SPDX-License-Identifier: GPL-2.0-or-later
"""-o kernel_cache (issue 14): state and version of a source with events
are served from the kernel's page cache, each value its own inode, and a
change is invalidated before events readers are told of it. Played as a
user with cat, stat, wc, ls and poll, against real QEMU (direct QMP, a
second monitor as the oracle and as the hand behind hvfs's back) and the
private libvirtd (virsh as both): the next read after a change is right,
reads are never torn, an open file keeps its value and says POLLPRI, a
domain that leaves is gone from cached lookups, and nothing stale
survives a lost connection."""

import errno
import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import remove_prefixed
from hvtest import (HvMock, Proxy, errno_of, read_events, sh, virsh,
                    wait_for)

PREFIX = "hvt-kc-"
KC = ("-o", "kernel_cache")
QEMU_STATE = {"running": "running", "paused": "paused",
              "prelaunch": "paused"}
VIRSH_STATE = {"running": "running", "paused": "paused",
               "shut off": "shutoff"}


@pytest.fixture(scope="module")
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def cat(*paths):
    """cat PATHS: (exit status, stdout, stderr)."""
    p = subprocess.run(["cat", *paths], capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def cat_sized(path):
    """cat path, and what stat says of its size then (ls -l, tar and
    rsync go by it): the two must agree."""
    st, out, err = cat(path)
    assert st == 0, err
    size = os.stat(path).st_size
    assert size == len(out), (out, size)
    return out


def ino(path):
    return int(sh(f"stat -c %i {path}")[1])


def told(fd, dom, state, timeout=10):
    """Waits for the events line saying dom is now in state: hvfs has
    processed the change, so the kernel was told before it."""
    read_events(fd, lambda e: e["kind"] == "state" and
                e.get("domain") == dom and e["state"] == state,
                timeout=timeout)


class Direct:
    """Domains of real QEMUs through --qmp-dir, changed behind hvfs's back
    through their second monitor."""

    def __init__(self, qmp_dir, vms, mount, names, *opts):
        self.names = list(names)
        self.vm = {n: vms(n) for n in names}
        self.m = mount("--qmp-dir", qmp_dir, *opts)
        wait_for(lambda: self.m.ls() == sorted(names), what="the QEMUs")

    def change(self, dom, to):
        self.vm[dom].oracle.execute("stop" if to == "paused" else "cont")

    def truth(self, dom):
        return QEMU_STATE[self.vm[dom].status()] + "\n"

    def version(self, dom):
        q = self.vm[dom].oracle.execute("query-version")["qemu"]
        return f"{q['major']}.{q['minor']}.{q['micro']}\n"


class Libvirt:
    """Domains of the private libvirtd, changed with virsh."""

    def __init__(self, libvirtd, domains, mount, names, *opts, uri=None):
        self.names = [domains(n) for n in names]
        self.m = mount("-c", uri or libvirtd.uri, *opts)
        wait_for(lambda: set(self.names) <= set(self.m.ls()),
                 timeout=30, what="the domains")

    def change(self, dom, to):
        virsh("suspend" if to == "paused" else "resume", dom)

    def truth(self, dom):
        return VIRSH_STATE[virsh("domstate", dom)] + "\n"

    def version(self, dom):
        out = virsh("qemu-monitor-command", dom,
                    '{"execute":"query-version"}')
        q = json.loads(out)["return"]["qemu"]
        return f"{q['major']}.{q['minor']}.{q['micro']}\n"


@pytest.fixture(params=["qmp", "libvirt"])
def side(request, qmp_dir, vms, mount):
    """side(names...) -> a Direct or a Libvirt with those domains running,
    mounted with -o kernel_cache; .names are the domains' names."""
    def make(*names):
        if request.param == "qmp":
            s = Direct(qmp_dir, vms, mount, names, *KC)
        else:
            request.getfixturevalue("clean")
            s = Libvirt(request.getfixturevalue("libvirtd"),
                        request.getfixturevalue("domains"), mount, names,
                        *KC)
        return s
    return make


def test_warm_cache_tells_the_truth(side):
    """cat */state */version is the oracle's; stat, wc -c and ls -l agree
    with it; each value is an inode of its own; a change behind hvfs's back
    is what the very next cat shows once events told it."""
    s = side("a", "b")
    m, (a, b) = s.m, s.names
    mnt = m.dir
    for _ in range(2):   # the second from the page cache
        _, out, err = cat(*(f"{mnt}/{d}/{f}" for d in (a, b)
                            for f in ("state", "version")))
        assert out == "".join(s.truth(d) + s.version(d) for d in (a, b)), \
            err
    for d in (a, b):
        for f in ("state", "version"):
            content = m.read(d, f)
            assert int(sh(f"stat -c %s {mnt}/{d}/{f}")[1]) == len(content)
            assert int(sh(f"wc -c < {mnt}/{d}/{f}")[1]) == len(content)
            ls = sh(f"ls -l {mnt}/{d}/{f}")[1].split()
            assert int(ls[4]) == len(content), ls
    running = ino(m.path(a, "state"))
    assert ino(m.path(b, "state")) != running   # another domain's
    fd = os.open(m.path(a, "events"), os.O_RDONLY)
    try:
        for to in ("paused", "running", "paused"):
            cat(m.path(a, "state"))   # warm: the kernel keeps it
            os.stat(m.path(a, "state"))
            s.change(a, to)
            told(fd, a, to)
            st, out, err = cat(m.path(a, "state"))
            assert (st, out) == (0, to + "\n"), err
            assert os.stat(m.path(a, "state")).st_size == len(to) + 1
            assert s.truth(a) == to + "\n"
            here = ino(m.path(a, "state"))
            assert (here == running) == (to == "running"), (to, here,
                                                             running)
        paused = here
        s.change(a, "running")
        told(fd, a, "running")
        assert m.read(a, "state") == "running\n"
        assert ino(m.path(a, "state")) == running
        assert paused != running
        # The other domain was never touched: still its own value.
        assert m.read(b, "state") == "running\n"
    finally:
        os.close(fd)


def test_rapid_changes_never_stale(side):
    """Change after change, each followed by a read as soon as events
    told it: never the value before."""
    s = side("a")
    m, a = s.m, s.names[0]
    n = 50 if isinstance(s, Direct) else 20
    fd = os.open(m.path(a, "events"), os.O_RDONLY)
    try:
        assert m.read(a, "state") == "running\n"
        for i in range(n):
            to = "paused" if i % 2 == 0 else "running"
            s.change(a, to)
            told(fd, a, to)
            got = m.read(a, "state")
            assert got == to + "\n", (i, got)
            size = os.stat(m.path(a, "state")).st_size
            assert size == len(got), (i, got, size)
    finally:
        os.close(fd)


def test_own_verb_then_cat(side):
    """echo pause > control; cat state: the verb's change is what the cat
    right after it reads, its event still on the way or not."""
    s = side("a")
    m, a = s.m, s.names[0]
    for i in range(10):
        to = "paused" if i % 2 == 0 else "running"
        verb = "pause" if to == "paused" else "resume"
        cat(m.path(a, "state"))   # warm
        _, out, _ = sh(f"echo {verb} > {m.path(a, 'control')}; "
                       f"cat {m.path(a, 'state')}")
        assert out == to + "\n", (i, out)
        assert s.truth(a) == to + "\n"


def test_reads_never_torn(qmp_dir, vms, mount):
    """A pause/resume storm under four readers (open/read/fstat/close and
    cat): every content is a whole word, its fstat size its length."""
    d = Direct(qmp_dir, vms, mount, ["vm-a"], *KC)
    m = d.m
    path = m.path("vm-a", "state")
    stop = threading.Event()
    seen = []      # (content, fstat size or None for cat)
    errors = []

    def reader():
        while not stop.is_set():
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    data = os.read(fd, 4096)
                    rest = os.read(fd, 4096)
                    size = os.fstat(fd).st_size
                finally:
                    os.close(fd)
            except OSError as e:
                errors.append(e)
                continue
            seen.append((data + rest, size))

    def catter():
        while not stop.is_set():
            st, out, err = cat(path)
            if st:
                errors.append(err)
                continue
            seen.append((out.encode(), None))
    threads = [threading.Thread(target=f)
               for f in (reader, reader, catter, catter)]
    for t in threads:
        t.start()
    ev = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    try:
        oracle = d.vm["vm-a"].oracle
        for i in range(200):
            last = time.time()
            oracle.execute("stop" if i % 2 == 0 else "cont")
            time.sleep(0.01)
        # The storm's last change told (QEMU stamps its events), then one
        # more: the next cat reads each, whatever the kernel kept.
        read_events(ev, lambda e: e["kind"] == "state" and
                    e["state"] == "running" and
                    e["timestamp"]["seconds"] +
                    e["timestamp"]["microseconds"] / 1e6 >= last - 0.001)
        assert cat_sized(path) == "running\n"
        oracle.execute("stop")
        told(ev, "vm-a", "paused")
        assert cat_sized(path) == "paused\n"
    finally:
        os.close(ev)
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:5]
    assert len(seen) >= 40, len(seen)
    assert sum(1 for _, size in seen if size is None) >= 4
    bad = [x for x in seen if x[0] not in (b"running\n", b"paused\n")
           or x[1] not in (None, len(x[0]))]
    assert not bad, (len(bad), len(seen), bad[:10])


def test_open_file_keeps_its_value(qmp_dir, vms, mount):
    """An open state file keeps the value it was opened with, like a file
    replaced by rename(2); poll() says POLLPRI once that is no longer the
    state; a new open reads the new one."""
    d = Direct(qmp_dir, vms, mount, ["vm-a"], *KC)
    m = d.m
    ev = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    fd = os.open(m.path("vm-a", "state"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"running\n"
        p = select.poll()
        p.register(fd, select.POLLPRI)
        assert p.poll(200) == []
        d.change("vm-a", "paused")
        told(ev, "vm-a", "paused")
        ready = p.poll(5000)
        assert ready and ready[0][1] & select.POLLPRI, ready
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"running\n"
        assert os.fstat(fd).st_size == len("running\n")
        assert m.read("vm-a", "state") == "paused\n"
        with open(m.path("vm-a", "state"), "rb") as f:
            assert os.fstat(f.fileno()).st_size == len("paused\n")
    finally:
        os.close(fd)
        os.close(ev)


def test_direct_domain_leaves_and_comes_back(qmp_dir, vms, mount):
    """A QEMU that quits behind hvfs's back: once its leaving is told, its
    directory and state are ENOENT to cached lookups at once; a new one
    under the name reads its own state."""
    d = Direct(qmp_dir, vms, mount, ["vm-a", "vm-b"], *KC)
    m = d.m
    fd = os.open(m.path(".events"), os.O_RDONLY)
    try:
        for _ in range(2):
            assert m.read("vm-b", "state") == "running\n"
            os.stat(m.path("vm-b"))
            os.stat(m.path("vm-b", "state"))
            vm = d.vm["vm-b"]
            try:
                vm.oracle.execute("quit")
            except ConnectionError:
                pass
            vm.proc.wait(10)
            t = time.monotonic()
            read_events(fd, lambda e: e["kind"] == "undefined" and
                        e.get("domain") == "vm-b")
            st, _, err = cat(m.path("vm-b", "state"))
            assert st == 1 and "No such file" in err, err
            assert errno_of(os.stat, m.path("vm-b")) == errno.ENOENT
            assert time.monotonic() - t < 5
            assert m.ls() == ["vm-a"]
            # Back, paused from its start this time (-S).
            d.vm["vm-b"] = vms("vm-b", "-S")
            wait_for(lambda: "vm-b" in m.ls(), what="vm-b back")
            assert cat_sized(m.path("vm-b", "state")) == "paused\n"
            assert m.read("vm-b", "version") == d.version("vm-b")
            d.change("vm-b", "running")
            wait_for(lambda: m.read("vm-b", "state") == "running\n",
                     timeout=5, what="vm-b running")
        assert m.read("vm-a", "state") == "running\n"
    finally:
        os.close(fd)


def test_libvirt_domain_leaves_and_comes_back(clean, libvirtd, domains,
                                              mount):
    """virsh destroy: a persistent domain reads shutoff and has no version
    once events told it; a transient one is ENOENT at once; both come back
    with their values."""
    a = domains("a")
    b = domains("b")
    m = mount("-c", libvirtd.uri, *KC)
    wait_for(lambda: {a, b} <= set(m.ls()), timeout=30, what="the domains")
    version = m.read(a, "version")
    fd = os.open(m.path(".events"), os.O_RDONLY)
    try:
        # Persistent: stays, shutoff, no version; then back.
        assert m.read(a, "state") == "running\n"
        virsh("destroy", a)
        told(fd, a, "shutoff")
        assert cat_sized(m.path(a, "state")) == "shutoff\n"
        assert errno_of(m.read, a, "version") == errno.ENODATA
        virsh("start", a)
        told(fd, a, "running", timeout=30)
        assert cat_sized(m.path(a, "state")) == "running\n"
        assert m.read(a, "version") == version
        # Transient (undefined while it runs): it leaves at destroy.
        xml = virsh("dumpxml", b)
        virsh("undefine", b)
        assert m.read(b, "state") == "running\n"
        os.stat(m.path(b))
        os.stat(m.path(b, "state"))
        t = time.monotonic()
        virsh("destroy", b)
        read_events(fd, lambda e: e["kind"] == "undefined" and
                    e.get("domain") == b)
        st, _, err = cat(m.path(b, "state"))
        assert st == 1 and "No such file" in err, err
        assert errno_of(os.stat, m.path(b)) == errno.ENOENT
        assert time.monotonic() - t < 5
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            virsh("create", f.name, "--paused")
        wait_for(lambda: b in m.ls(), timeout=30, what=f"{b} back")
        assert cat_sized(m.path(b, "state")) == "paused\n"
        assert virsh("domstate", b) == "paused"
    finally:
        os.close(fd)


def cats_until_paused(path, timeout, seen=None):
    """cat path until it says paused (within timeout): it may fail on the
    way, never say running."""
    seen = [] if seen is None else seen
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st, out, _ = cat(path)
        seen.append(out if st == 0 else st)
        if out == "paused\n":
            break
        time.sleep(0.02)
    assert seen[-1] == "paused\n", seen
    assert "running\n" not in seen, seen


def test_direct_qemu_replaced_while_away(qmp_dir, vms, mount):
    """A QEMU killed and another started under its socket, paused: the
    reads after never show the old QEMU's running."""
    d = Direct(qmp_dir, vms, mount, ["vm-a"], *KC)
    m = d.m
    for _ in range(2):
        assert cat(m.path("vm-a", "state"))[1] == "running\n"
        os.stat(m.path("vm-a", "state"))
        d.vm["vm-a"].proc.send_signal(signal.SIGKILL)
        d.vm["vm-a"].proc.wait(10)
        d.vm["vm-a"] = vms("vm-a", "-S")
        cats_until_paused(m.path("vm-a", "state"), 10)
        assert cat_sized(m.path("vm-a", "state")) == "paused\n"
        assert d.truth("vm-a") == "paused\n"
        d.change("vm-a", "running")
        wait_for(lambda: m.read("vm-a", "state") == "running\n",
                 timeout=5, what="running again")


def test_libvirt_change_while_disconnected(clean, libvirtd, domains,
                                           mount):
    """hvfs's connection to libvirtd is cut (libvirtd runs on); virsh
    suspends the domain meanwhile: no read shows running after that, and
    once hvfs is back the next cat says paused; events work again."""
    a = domains("a")
    proxy = Proxy()
    proxy.start()
    try:
        m = mount("-c", f"qemu+tcp://127.0.0.1:{proxy.port}/system", *KC,
                  timeout=2)
        wait_for(lambda: a in m.ls(), timeout=30, what="the domain")
        fd = os.open(m.path(".events"), os.O_RDONLY)
        try:
            assert cat(m.path(a, "state"))[1] == "running\n"
            os.stat(m.path(a, "state"))
            proxy.cut()
            read_events(fd, lambda e: e["kind"] == "lost")
            virsh("suspend", a)
            # While it is away: reads may fail, never say running.
            seen = []
            for _ in range(5):
                st, out, _ = cat(m.path(a, "state"))
                seen.append(out if st == 0 else st)
            proxy.mend()
            cats_until_paused(m.path(a, "state"), 30, seen)
            # Events again: a resume is seen by the next cat once told.
            wait_for(lambda: m.read(".error") == "", timeout=10,
                     what="the connection back")
            deadline = time.monotonic() + 20
            while True:
                virsh("resume", a)
                try:
                    told(fd, a, "running", timeout=3)
                    break
                except AssertionError:
                    virsh("suspend", a)
                    assert time.monotonic() < deadline
            assert cat_sized(m.path(a, "state")) == "running\n"
        finally:
            os.close(fd)
    finally:
        proxy.close()


def test_source_without_events_asks_each_time(tmp_path, mount):
    """A libvirtd that refuses event callbacks (scripted: no real one
    does): hvfs cannot know when state changes, so even with the option a
    change is what the next cat reads, with no event ever."""
    sock = str(tmp_path / "libvirt-sock")
    dom = PREFIX + "noev"
    mock = HvMock("libvirt", sock,
                  f"domain {dom} running\n"
                  "fault connect-domain-event-callback-register-any "
                  "error 3 no events here\n")
    try:
        m = mount("-c", f"qemu+unix:///system?socket={sock}", *KC)
        for to in ("paused", "running", "paused"):
            cat(m.path(dom, "state"))   # warm, were it cached
            os.stat(m.path(dom, "state"))
            mock.tell(f"domain {dom} {to}")
            assert cat(m.path(dom, "state"))[1] == to + "\n"
    finally:
        mock.close()


def test_without_the_option_nothing_changes(qmp_dir, vms, mount):
    """The default: state is one inode whatever its value."""
    d = Direct(qmp_dir, vms, mount, ["vm-a"])
    m = d.m
    before = ino(m.path("vm-a", "state"))
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    try:
        d.change("vm-a", "paused")
        told(fd, "vm-a", "paused")
        assert m.read("vm-a", "state") == "paused\n"
        time.sleep(1.2)   # past the kernel's attribute and entry cache
        assert ino(m.path("vm-a", "state")) == before
    finally:
        os.close(fd)
