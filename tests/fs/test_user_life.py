# SPDX-License-Identifier: GPL-2.0-or-later
"""A domain's life and end as a user meets them: the README's wait loops run
as written through bash, grep and cat on events files while a domain goes
off or leaves, state read right after destroy, transient libvirt domains,
and verbs that outlast -o timeout. Direct QMP VMs and libvirt domains."""

import errno
import json
import os
import select
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import remove_prefixed
from hvtest import (DOMAIN_XML, LIBVIRTD, QEMU, Qemu, as_user, errno_of,
                    readme_block, readme_line, sh, virsh, wait_for)

PREFIX = "hvt-life-"
RUNS = 10


@pytest.fixture(scope="module")
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def bash(script, timeout=None):
    """Starts `bash -c script` (the user's shell)."""
    cmd = ["bash", "-c", script]
    if timeout:
        cmd = ["timeout", str(timeout)] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def wait_opened(proc, path):
    """Waits until a process under proc has path open."""
    def opened():
        for p in [proc.pid] + descendants(proc.pid):
            try:
                for fd in os.listdir(f"/proc/{p}/fd"):
                    if os.readlink(f"/proc/{p}/fd/{fd}") == path:
                        return True
            except OSError:
                pass
        return False
    wait_for(opened, timeout=10, what=f"{path} to be opened")


def finish(proc, timeout=15):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def lines_of(out):
    return [json.loads(x) for x in out.splitlines()]


def assert_leaving(events, dom):
    """The last events of a domain that left: its final state, shutoff,
    then its leaving."""
    shown = [(e["kind"], e["event"], e.get("state")) for e in events]
    assert len(events) >= 2, shown
    last, before = events[-1], events[-2]
    assert last["kind"] == "undefined" and last["domain"] == dom, shown
    assert before["kind"] == "state" and before["state"] == "shutoff", shown
    assert before["domain"] == dom, shown


def start_readers(m, dom):
    """grep -m1 for shutoff (the README's line) and cat, on dom's events,
    both open before anything happens."""
    path = m.path(dom, "events")
    grep = bash(as_user(readme_line("grep -m1 '\"state\":\"shutoff\"'"),
                        m.dir, dom), timeout=10)
    cat = bash(f"cat {path}", timeout=10)
    wait_opened(grep, path)
    wait_opened(cat, path)
    return grep, cat


# ---- direct QMP VMs ----

def test_readme_wait_loop_direct_qmp(qmp_dir, vms, mount):
    """The README's "power down and wait until off" ends on a direct VM,
    whose directory leaves with its QEMU (powerdown does nothing to a
    -machine none QEMU; the guest's part is played by a quit)."""
    m = mount("--qmp-dir", qmp_dir)
    script = as_user(readme_block("Power a VM down"), m.dir, "vm-a")
    for how in ("quit", "destroy"):
        vm = vms("vm-a")
        wait_for(lambda: "vm-a" in m.ls(), what="vm-a in the tree")
        loop = bash(script, timeout=20)
        time.sleep(1)
        assert loop.poll() is None, finish(loop)
        if how == "quit":
            vm.oracle.execute("quit")
        else:
            sh(f"echo destroy > {m.path('vm-a', 'control')}")
        rc, out, err = finish(loop, timeout=25)
        assert rc == 0, (rc, out, err)
        vm.proc.wait(timeout=10)
        assert "vm-a" not in m.ls()
        vm.kill()


def test_events_end_with_shutoff_then_leaving_qmp(qmp_dir, vms, mount):
    """10 of 10: grep -m1 shutoff (as the README writes it) ends, and a
    cat opened before the VM left ends after the leaving line."""
    m = mount("--qmp-dir", qmp_dir)
    every = os.open(m.path(".events"), os.O_RDONLY | os.O_NONBLOCK)
    for i in range(RUNS):
        name = f"vm-{i}"
        vm = vms(name)
        wait_for(lambda: name in m.ls(), what=f"{name} in the tree")
        # Its files too (a sanitizer build is slow to take a new QEMU in).
        wait_for(lambda: os.path.exists(m.path(name, "events")),
                 what=f"{name}/events")
        grep, cat = start_readers(m, name)
        if i % 2:
            vm.oracle.execute("quit")
        else:
            sh(f"echo destroy > {m.path(name, 'control')}")
        rc, out, err = finish(grep)
        assert rc == 0, (i, rc, out, err)
        ev = lines_of(out)
        assert ev[0]["state"] == "shutoff" and ev[0]["domain"] == name
        rc, out, err = finish(cat)
        assert rc == 0, (i, "cat did not end", rc, out, err)
        assert_leaving(lines_of(out), name)
        vm.kill()
    # .events has the same ends, each said once, though the tree may list
    # a domain gone before the driver's last lines come.
    time.sleep(0.5)
    data = b""
    while True:
        try:
            chunk = os.read(every, 65536)
        except BlockingIOError:
            break
        data += chunk
    os.close(every)
    events = lines_of(data.decode())
    for i in range(RUNS):
        mine = [e for e in events if e["domain"] == f"vm-{i}"]
        assert_leaving(mine, f"vm-{i}")
        assert [e["kind"] for e in mine].count("undefined") == 1, mine
        assert [e.get("state") for e in mine].count("shutoff") == 1, mine


def test_poll_sees_the_end(qmp_dir, vms, mount):
    """A program that polls an events file sees POLLHUP and end of file
    once the domain left, after its last lines."""
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        vm.oracle.execute("quit")
        p = select.poll()
        p.register(fd, select.POLLIN)
        data, end = b"", time.monotonic() + 10
        while time.monotonic() < end:
            ready = p.poll(1000)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                assert ready[0][1] & select.POLLHUP, ready
                break
            data += chunk
        else:
            raise AssertionError(f"no end of file; read {data!r}")
        assert_leaving(lines_of(data.decode()), "vm-a")
    finally:
        os.close(fd)


def test_state_right_after_destroy_qmp(qmp_dir, vms, mount):
    """The same answer every time: a direct VM in a --qmp-dir has left
    when destroy returns (ENOENT); one named by --qmp stays, shutoff."""
    m = mount("--qmp-dir", qmp_dir)
    for i in range(RUNS):
        vm = vms("vm-a")
        wait_for(lambda: "vm-a" in m.ls(), what="vm-a in the tree")
        assert m.read("vm-a", "state") == "running\n"
        status, out, err = sh(
            f"echo destroy > {m.path('vm-a', 'control')}; "
            f"cat {m.path('vm-a', 'state')}", check=False)
        assert status == 1 and "No such file or directory" in err, \
            (i, status, out, err)
        vm.kill()
    # Not in the --qmp-dir: that mount would hold its monitor.
    other = tempfile.mkdtemp(prefix="hvfs-qmp-")
    vm = Qemu(other, "one")
    try:
        m1 = mount("--qmp", f"one=unix:{vm.qmp}")
        assert m1.read("one", "state") == "running\n"
        _, out, err = sh(f"echo destroy > {m1.path('one', 'control')}; "
                         f"cat {m1.path('one', 'state')}")
        assert out == "shutoff\n", (out, err)
    finally:
        vm.kill()
        subprocess.run(["rm", "-rf", other])


def test_verb_outcome_unknown_on_hung_vm(qmp_dir, vms, mount):
    """A verb no state shows (powerdown), on a stopped QEMU: ETIMEDOUT
    after the deadline, and `error` says the outcome is unknown."""
    vm = vms("vm-hung")
    m = mount("--qmp-dir", qmp_dir, timeout=1)
    assert m.read("vm-hung", "state") == "running\n"
    os.kill(vm.proc.pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        status, _, err = sh(
            f"bash -c 'echo powerdown > {m.path('vm-hung', 'control')}'",
            check=False)
        took = time.monotonic() - t
        assert status == 1 and "Connection timed out" in err, err
        assert took < 5, took
        text = m.read("vm-hung", "error")
        assert "control powerdown" in text and "outcome is unknown" in text
        assert "ETIMEDOUT" in text
    finally:
        os.kill(vm.proc.pid, signal.SIGCONT)


# ---- libvirt ----

def define(name):
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    xml = DOMAIN_XML.format(name=name, qemu=QEMU,
                            type="kvm" if kvm else "qemu")
    f = tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False)
    f.write(xml)
    f.close()
    return f.name


def virsh_state(name):
    return virsh("domstate", name)


def qemu_pid(name):
    with open(os.path.join(LIBVIRTD.dir, "run", "qemu", f"{name}.pid")) as f:
        return int(f.read().strip())


def test_readme_wait_loop_libvirt(clean, domains, mount):
    d = domains("loop")
    m = mount("-c", LIBVIRTD.uri)
    script = as_user(readme_block("Power a VM down"), m.dir, d)
    for how in ("virsh", "destroy"):
        loop = bash(script, timeout=20)
        time.sleep(1)
        assert loop.poll() is None, finish(loop)
        if how == "virsh":
            virsh("destroy", d)
        else:
            sh(f"echo destroy > {m.path(d, 'control')}")
        rc, out, err = finish(loop, timeout=25)
        assert rc == 0, (rc, out, err)
        assert m.read(d, "state") == "shutoff\n"
        virsh("start", d)


def test_grep_shutoff_libvirt(clean, domains, mount):
    """10 of 10: grep -m1 shutoff ends when a domain is destroyed, by
    virsh or by the control file; the domain stays (persistent)."""
    d = domains("grep")
    m = mount("-c", LIBVIRTD.uri)
    path = m.path(d, "events")
    for i in range(RUNS):
        grep = bash(as_user(readme_line("grep -m1 '\"state\":\"shutoff\"'"),
                            m.dir, d), timeout=10)
        wait_opened(grep, path)
        if i % 2:
            virsh("destroy", d)
        else:
            sh(f"echo destroy > {m.path(d, 'control')}")
        rc, out, err = finish(grep)
        assert rc == 0, (i, rc, out, err)
        assert lines_of(out)[0]["state"] == "shutoff"
        assert m.read(d, "state") == "shutoff\n"
        virsh("start", d)


def test_state_right_after_destroy_libvirt(clean, domains, mount):
    d = domains("after")
    m = mount("-c", LIBVIRTD.uri)
    for _ in range(3):
        _, out, err = sh(f"echo destroy > {m.path(d, 'control')}; "
                         f"cat {m.path(d, 'state')}")
        assert out == "shutoff\n", (out, err)
        virsh("start", d)


def test_transient_domain_leaves(clean, mount):
    """virsh create, then virsh destroy (or the control file): the domain
    leaves the tree within 2 s, a cached lookup included, and its events
    end with shutoff, then its leaving."""
    m = mount("-c", LIBVIRTD.uri)
    name = PREFIX + "transient"
    xml = define(name)
    try:
        for how in ("virsh", "destroy"):
            virsh("create", xml)
            wait_for(lambda: name in m.ls(), what="the transient domain")
            os.stat(m.path(name))  # the kernel now caches the entry
            assert m.read(name, "state") == "running\n"
            grep, cat = start_readers(m, name)
            t = time.monotonic()
            if how == "virsh":
                virsh("destroy", name)
            else:
                # Gone when destroy returns: state is ENOENT at once.
                status, _, err = sh(
                    f"echo destroy > {m.path(name, 'control')}; "
                    f"cat {m.path(name, 'state')}", check=False)
                assert status == 1 and "No such file" in err, err
            wait_for(lambda: name not in m.ls(), timeout=2,
                     what="the transient domain to leave")
            wait_for(lambda: errno_of(os.stat, m.path(name)) ==
                     errno.ENOENT, timeout=max(0.1, 2 - (time.monotonic()
                                                          - t)),
                     what="stat to give ENOENT")
            assert errno_of(m.read, name, "state") == errno.ENOENT
            rc, out, err = finish(grep)
            assert rc == 0, (rc, out, err)
            rc, out, err = finish(cat)
            assert rc == 0, ("cat did not end", rc, out, err)
            assert_leaving(lines_of(out), name)
    finally:
        virsh("destroy", name, check=False)
        os.unlink(xml)


def test_slow_destroy_with_short_timeout(clean, domains, mount):
    """-o timeout=1 and a QEMU that does not die at SIGTERM (stopped):
    libvirt's destroy takes ~10 s, the call runs out after 1 s, but the
    domain is shut off in the end, so the write succeeds."""
    d = domains("slow")
    m = mount("-c", LIBVIRTD.uri, timeout=1)
    assert m.read(d, "state") == "running\n"
    os.kill(qemu_pid(d), signal.SIGSTOP)
    t = time.monotonic()
    status, out, err = sh(f"echo destroy > {m.path(d, 'control')}",
                          check=False)
    took = time.monotonic() - t
    assert status == 0, (status, err, m.read(d, "error"))
    assert took > 1, took
    assert virsh_state(d) == "shut off"
    assert m.read(d, "state") == "shutoff\n"
    assert "destroy" not in m.read(d, "error")


def test_renamed_by_a_clash_is_no_leaving(clean, domains, mount, qmp_dir):
    """A QEMU of the same name appears in the --qmp-dir: the libvirt
    domain's directory becomes NAME@libvirt. Its old events file ends, with
    no shutoff line: the domain is still running."""
    d = domains("clash")
    m = mount("-c", LIBVIRTD.uri, "--qmp-dir", qmp_dir)
    path = m.path(d, "events")
    cat = bash(f"cat {path}", timeout=10)
    wait_opened(cat, path)
    vm = Qemu(qmp_dir, d)
    try:
        wait_for(lambda: f"{d}@libvirt" in m.ls(), what="the clash")
        rc, out, err = finish(cat)
        assert rc == 0, ("cat did not end", rc, out, err)
        assert not [e for e in lines_of(out) if e["event"] == "left"], out
        assert m.read(f"{d}@libvirt", "state") == "running\n"
    finally:
        vm.kill()
