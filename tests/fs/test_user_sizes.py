# SPDX-License-Identifier: GPL-2.0-or-later
"""Files tell the truth about themselves (issue 14): state, version, name
and uuid of a source with events show their contents' size, so ls -l,
wc -c, tar and rsync -a see what cat sees; state's mtime is the time of its
last change, so ls -t and find -newermt find recent changes; a domain
directory's mtime follows its definition."""

import os
import select
import tempfile
import time

import pytest

from conftest import remove_prefixed
from hvtest import HvMock, read_events, sh, virsh, wait_for

PREFIX = "hvt-sizes-"
SIZED = ["state", "version", "name", "uuid"]


@pytest.fixture(scope="module")
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def state_event(fd, dom, state):
    read_events(fd, lambda e: e["kind"] == "state" and
                e.get("domain") == dom and e["state"] == state)


def sized(m, dom):
    """Each sized file's contents, once its size agrees (a fact may still
    be on its way at mount)."""
    out = {}
    for f in SIZED:
        wait_for(lambda: os.stat(m.path(dom, f)).st_size ==
                 len(m.read(dom, f).encode()), timeout=10,
                 what=f"{dom}/{f}'s size")
        out[f] = m.read(dom, f)
    return out


def test_tools_see_true_sizes(qmp_dir, vms, mount):
    vms("vm-a")
    vms("vm-b")
    m = mount("--qmp-dir", qmp_dir)
    mnt = m.dir
    for dom in ("vm-a", "vm-b"):
        want = sized(m, dom)
        for f in SIZED:
            _, out, _ = sh(f"wc -c < {mnt}/{dom}/{f}")
            assert int(out) == len(want[f].encode())
            _, out, _ = sh(f"stat -c %s {mnt}/{dom}/{f}")
            assert int(out) == len(want[f].encode())
        # ls -l shows it too; files made at each read still show 0.
        _, out, _ = sh(f"ls -l {mnt}/{dom}/state {mnt}/{dom}/error")
        sizes = {ln.split()[-1].rsplit("/", 1)[-1]: int(ln.split()[4])
                 for ln in out.splitlines()}
        assert sizes == {"state": len(want["state"]), "error": 0}
    with tempfile.TemporaryDirectory() as tmp:
        files = " ".join(f"vm-a/{f}" for f in SIZED)
        sh(f"cd {mnt} && tar cf {tmp}/t.tar {files}")
        sh(f"mkdir {tmp}/x && tar xf {tmp}/t.tar -C {tmp}/x")
        sh(f"rsync -a {mnt}/vm-a/ {tmp}/r/ --include=state --include=version"
           f" --include=name --include=uuid --exclude='*'")
        for f in SIZED:
            want = m.read("vm-a", f)
            assert open(f"{tmp}/x/vm-a/{f}").read() == want, f
            assert open(f"{tmp}/r/{f}").read() == want, f


def test_state_size_follows_changes(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    sized(m, "vm-a")
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    try:
        # stat right before the change: the kernel keeps it for a moment.
        os.stat(m.path("vm-a", "state"))
        vm.oracle.execute("stop")     # behind hvfs's back
        state_event(fd, "vm-a", "paused")
        assert os.stat(m.path("vm-a", "state")).st_size == len("paused\n")
        assert m.read("vm-a", "state") == "paused\n"
        vm.oracle.execute("cont")
        state_event(fd, "vm-a", "running")
        assert os.stat(m.path("vm-a", "state")).st_size == len("running\n")
    finally:
        os.close(fd)


def test_state_mtime_is_its_last_change(qmp_dir, vms, mount):
    vm_a = vms("vm-a")
    vms("vm-b")
    vms("vm-c")
    m = mount("--qmp-dir", qmp_dir)
    mnt = m.dir
    wait_for(lambda: m.ls() == ["vm-a", "vm-b", "vm-c"], what="the QEMUs")
    time.sleep(1.1)
    since = time.time()
    time.sleep(0.1)
    fd = os.open(m.path(".events"), os.O_RDONLY)
    try:
        vm_a.oracle.execute("stop")   # behind hvfs's back
        state_event(fd, "vm-a", "paused")
        time.sleep(1.1)   # mtimes a second apart, even for ls's rounding
        sh(f"echo pause > {mnt}/vm-b/control")
        state_event(fd, "vm-b", "paused")
    finally:
        os.close(fd)
    # Newest first: vm-b, then vm-a; vm-c never changed.
    _, out, _ = sh(f"cd {mnt} && ls -t */state")
    assert out.split() == ["vm-b/state", "vm-a/state", "vm-c/state"]
    mt = os.stat(m.path("vm-a", "state")).st_mtime
    assert since <= mt <= time.time() + 1
    _, out, _ = sh(f"find {mnt} -maxdepth 2 -name state "
                   f"-newermt @{since:.3f}")
    assert sorted(out.split()) == [f"{mnt}/vm-a/state", f"{mnt}/vm-b/state"]
    _, out, _ = sh(f"find {mnt} -maxdepth 2 -name state -newermt '+1 min'")
    assert out.split() == []


def test_libvirt_sizes_and_definition_time(clean, libvirtd, mount, domains):
    a = domains("a")
    m = mount("-c", libvirtd.uri)
    wait_for(lambda: a in m.ls(), what="the domain")
    want = sized(m, a)
    assert want["uuid"].strip() == virsh("domuuid", a)
    assert want["name"] == a + "\n"
    fd = os.open(m.path(a, "events"), os.O_RDONLY)
    try:
        virsh("suspend", a)
        state_event(fd, a, "paused")
        assert os.stat(m.path(a, "state")).st_size == len("paused\n")
        _, out, _ = sh(f"find {m.dir} -maxdepth 2 -path '*{a}/state' "
                       f"-newermt '-1 min'")
        assert out.split() == [m.path(a, "state")]
    finally:
        os.close(fd)
    # A (re)definition moves the directory's mtime.
    before = os.stat(m.path(a)).st_mtime
    time.sleep(1.1)
    xml = virsh("dumpxml", "--inactive", a)
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        defined = time.time()
        virsh("define", f.name)
    wait_for(lambda: os.stat(m.path(a)).st_mtime > before, timeout=10,
             what="the directory's mtime after define")
    assert defined - 5 <= os.stat(m.path(a)).st_mtime <= time.time() + 5


def test_state_size_after_a_control_write(qmp_dir, vms, mount):
    """The user's own change, through control: ls -l and tar see the new
    state's size without a cat first."""
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    mnt = m.dir
    sized(m, "vm-a")
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    try:
        sh(f"echo pause > {mnt}/vm-a/control")
        state_event(fd, "vm-a", "paused")
    finally:
        os.close(fd)
    time.sleep(1.5)   # past the kernel's attribute cache
    _, out, _ = sh(f"stat -c %s {mnt}/vm-a/state")
    assert int(out) == len("paused\n")
    _, out, _ = sh(f"tar cf - -C {mnt} vm-a/state | tar xOf -")
    assert out == "paused\n"


def test_size_of_a_fact_a_read_learnt(qmp_dir, vms, mount):
    """version is fetched at its first read: stat right after it shows its
    size, though the kernel had been told 0 a moment before."""
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    wait_for(lambda: m.ls() == ["vm-a"], what="the QEMU")
    assert os.stat(m.path("vm-a", "version")).st_size == 0
    version = m.read("vm-a", "version")
    assert os.stat(m.path("vm-a", "version")).st_size == len(version)


def test_a_fetched_change_moves_mtime_and_wakes_pollers(tmp_path, mount):
    """A change hvfs learns by asking, not from an event (a libvirtd without
    events here; a reconnect's listing alike), is a change too: state's
    mtime moves and its pollers wake."""
    sock = str(tmp_path / "libvirt-sock")
    dom = PREFIX + "x"
    mock = HvMock("libvirt", sock,
                  f"domain {dom} running\n"
                  "fault connect-domain-event-callback-register-any "
                  "error 3 no events here\n")
    try:
        m = mount("-c", f"qemu+unix:///system?socket={sock}")
        fd = os.open(m.path(dom, "state"), os.O_RDONLY)
        try:
            assert os.read(fd, 100) == b"running\n"
            p = select.poll()
            p.register(fd, select.POLLPRI)
            assert p.poll(100) == []
            time.sleep(1.1)
            since = time.time()
            mock.tell(f"domain {dom} paused")   # and no event
            assert m.read(dom, "state") == "paused\n"
            ready = p.poll(5000)
            assert ready and ready[0][1] & select.POLLPRI, ready
            os.lseek(fd, 0, os.SEEK_SET)
            assert os.read(fd, 100) == b"paused\n"
        finally:
            os.close(fd)
        assert os.stat(m.path(dom, "state")).st_mtime >= since - 0.5
    finally:
        mock.close()
