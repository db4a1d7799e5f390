# SPDX-License-Identifier: GPL-2.0-or-later
"""Faults a shell user meets: a wedged VM, a VM killed under the mount,
names that are not safe path components, and users without rights."""

import errno
import os
import pwd
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from hvtest import Mount, Qemu, errno_of, sh, wait_for


def test_wedged_vm_times_out_and_others_answer(qmp_dir, vms, mount):
    hung = vms("vm-hung")
    ok = vms("vm-ok")
    m = mount("--qmp-dir", qmp_dir, timeout=1)
    assert m.read("vm-hung", "state") == "running\n"
    os.kill(hung.proc.pid, signal.SIGSTOP)
    results = []

    def poke():
        t = time.monotonic()
        e = errno_of(m.write, "pause\n", "vm-hung", "control")
        results.append((e, time.monotonic() - t))
    waiters = [threading.Thread(target=poke) for _ in range(12)]
    for w in waiters:
        w.start()
    # Meanwhile every other domain answers, reads and verbs alike.
    time.sleep(0.2)
    for _ in range(20):
        assert m.read("vm-ok", "state") == "running\n"
    m.write("pause\n", "vm-ok", "control")
    assert ok.status() == "paused"
    for w in waiters:
        w.join(timeout=30)
    assert len(results) == 12
    assert all(e == errno.ETIMEDOUT for e, _ in results), results
    assert "ETIMEDOUT" in m.read("vm-hung", "error")
    # Running again, it answers again.
    os.kill(hung.proc.pid, signal.SIGCONT)
    wait_for(lambda: errno_of(m.write, "pause\n", "vm-hung", "control") == 0,
             timeout=10, what="the VM to answer again")
    assert hung.status() == "paused"


def test_vm_killed_under_the_mount(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert m.read("vm-a", "state") == "running\n"
    vm.proc.kill()
    vm.proc.wait()
    wait_for(lambda: "vm-a" not in m.ls() or
             m.read("vm-a", "state") == "shutoff\n",
             timeout=5, what="shutoff or gone")
    if "vm-a" in m.ls():
        assert errno_of(m.write, "pause\n", "vm-a", "control") in (
            errno.ECONNREFUSED, errno.ENOTCONN, errno.ENOENT)


@pytest.mark.parametrize("raw,shown", [
    (".hidden", "%2Ehidden"),
    ("a\nb", "a%0Ab"),
    ("per%cent", "per%25cent"),
    ("caf\u00e9", "caf\u00e9"),
])
def test_names_are_escaped(qmp_dir, vms, mount, raw, shown):
    vms(raw)
    m = mount("--qmp-dir", qmp_dir)
    assert shown in os.listdir(m.dir)
    assert m.read(shown, "name") == raw + "\n"
    assert m.read(shown, "state") == "running\n"


def test_invalid_utf8_name(qmp_dir, mount):
    # A socket whose name is not UTF-8; bytes paths all the way.
    raw = b"bad\xffname"
    path = os.path.join(qmp_dir.encode(), raw + b".qmp")
    proc = subprocess.Popen(
        [b"qemu-system-x86_64", b"-machine", b"none", b"-nodefaults",
         b"-display", b"none", b"-qmp",
         b"unix:" + path + b",server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.exists(path), what="socket")
        m = mount("--qmp-dir", qmp_dir)
        assert "bad%FFname" in os.listdir(m.dir)
        with open(os.path.join(m.dir, "bad%FFname", "name"), "rb") as f:
            assert f.read() == raw + b"\n"
    finally:
        proc.kill()
        proc.wait()


def as_nobody(cmd):
    return subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", cmd],
                          capture_output=True, text=True)


def test_permissions_with_allow_other(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir, "-o", "allow_other")
    p = as_nobody(f"cat {m.path('vm-a', 'state')}")
    assert p.returncode == 0 and p.stdout == "running\n", p.stderr
    p = as_nobody(f"echo pause > {m.path('vm-a', 'control')}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert vm.status() == "running"
    # Root may.
    sh(f"echo pause > {m.path('vm-a', 'control')}")
    assert vm.status() == "paused"
    assert "uid 0" in m.logtext() and "pause" in m.logtext()


def test_ctlgroup_may_control(qmp_dir, vms, mount):
    vm = vms("vm-a")
    group = "hvfs-test-ctl"
    subprocess.run(["groupadd", "-f", group], check=True)
    try:
        m = mount("--qmp-dir", qmp_dir, "-o", f"allow_other,ctlgroup={group}")
        st = os.stat(m.path("vm-a", "control"))
        assert oct(st.st_mode & 0o777) == oct(0o220)
        p = subprocess.run(
            ["setpriv", "--reuid=nobody", f"--regid={group}",
             "--clear-groups", "sh", "-c",
             f"echo pause > {m.path('vm-a', 'control')}"],
            capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert vm.status() == "paused"
        nobody = pwd.getpwnam("nobody").pw_uid
        assert f"uid {nobody}" in m.logtext()
    finally:
        subprocess.run(["groupdel", group])


def test_without_allow_other_only_the_owner_sees_it(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    p = as_nobody(f"ls {m.dir}")
    assert p.returncode != 0
