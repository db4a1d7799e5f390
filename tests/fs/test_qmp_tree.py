# SPDX-License-Identifier: GPL-2.0-or-later
"""The mounted tree over real QEMU processes reached by their QMP sockets
(--qmp-dir, --qmp), driven as a shell would, with a second QMP monitor of
each VM as the oracle."""

import errno
import os
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from hvtest import Mount, Qemu, errno_of, sh, wait_for


def test_ls_and_values(qmp_dir, vms, mount):
    a, b = vms("vm-a"), vms("vm-b")
    m = mount("--qmp-dir", qmp_dir)
    assert m.ls() == ["vm-a", "vm-b"]
    assert m.ls("vm-a") == ["block", "console", "control", "cpus", "error",
                            "events",
                            "guest", "memory", "name", "qmp", "query",
                            "screen.png", "snapshots", "state", "stats",
                            "uuid", "vcpus", "version"]
    for vm in (a, b):
        q = vm.oracle.execute("query-version")["qemu"]
        assert m.read(vm.name, "version") == \
            f"{q['major']}.{q['minor']}.{q['micro']}\n"
        assert m.read(vm.name, "state") == "running\n"
        assert m.read(vm.name, "name") == vm.name + "\n"
        assert m.read(vm.name, "uuid") == \
            vm.oracle.execute("query-uuid")["UUID"] + "\n"
        assert m.read(vm.name, "error") == ""
    # The shell's view: cat over a glob.
    _, out, _ = sh(f"cat {m.dir}/*/state")
    assert out == "running\nrunning\n"


def test_modes(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert stat.S_IMODE(os.stat(m.dir).st_mode) == 0o555
    assert stat.S_ISDIR(os.stat(m.path("vm-a")).st_mode)
    for f in ("state", "version", "name", "uuid", "error"):
        st = os.stat(m.path("vm-a", f))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
    assert stat.S_IMODE(os.stat(m.path("vm-a", "control")).st_mode) == 0o200
    # Value files cannot be written, not even by root.
    assert errno_of(os.open, m.path("vm-a", "state"), os.O_WRONLY) == \
        errno.EACCES
    assert errno_of(os.open, m.path("vm-a", "nosuchfile"), os.O_RDONLY) == \
        errno.ENOENT


def test_not_a_domain(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert errno_of(os.stat, m.path("nosuch")) == errno.ENOENT
    assert errno_of(m.read, "nosuch", "state") == errno.ENOENT


def test_control_verbs(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert m.read("vm-a", "control").split() == [
        "powerdown", "shutdown", "reset", "pause", "resume", "destroy",
        "wakeup"]
    # As a shell does it: echo opens with O_TRUNC.
    sh(f"echo pause > {m.path('vm-a', 'control')}")
    assert vm.status() == "paused"
    assert m.read("vm-a", "state") == "paused\n"
    assert m.write("resume", "vm-a", "control") == len("resume")
    assert vm.status() == "running"
    assert m.read("vm-a", "state") == "running\n"
    m.write("reset\n", "vm-a", "control")
    assert vm.status() == "running"
    m.write("powerdown\n", "vm-a", "control")
    # -machine none has no ACPI: QEMU accepts the request, nothing changes.
    assert vm.status() == "running"


def test_bad_verbs_change_nothing(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    for bad in ("frobnicate\n", "pause resume\n", "pause\nresume\n", "\n",
                " pause\n"):
        assert errno_of(m.write, bad, "vm-a", "control") == errno.EINVAL
        assert vm.status() == "running"
    assert "unknown verb" in m.read("vm-a", "error")
    # A verb this driver cannot do: nothing is sent.
    assert errno_of(m.write, "start\n", "vm-a", "control") == \
        errno.EOPNOTSUPP
    assert errno_of(m.write, "reboot\n", "vm-a", "control") == \
        errno.EOPNOTSUPP
    assert vm.status() == "running"
    # A verb QEMU refuses: its error class maps to errno, its text is kept.
    assert errno_of(m.write, "wakeup\n", "vm-a", "control") == errno.EIO
    err = m.read("vm-a", "error")
    # QEMU's own text ("wake-up from suspend is not supported..." here).
    assert "control wakeup: " in err and "wake" in err and "(EIO)" in err
    assert vm.status() == "running"
    # The shell sees the failure too.
    # (bash: dash's echo reports every write error as "I/O error")
    status, _, stderr = sh(
        f"bash -c 'echo frobnicate > {m.path('vm-a', 'control')}'",
        check=False)
    assert status != 0 and "Invalid argument" in stderr


def test_vm_appears_and_leaves(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert m.ls() == ["vm-a"]
    b = vms("vm-b")
    wait_for(lambda: m.ls() == ["vm-a", "vm-b"], what="vm-b in the tree")
    assert m.read("vm-b", "state") == "running\n"
    # destroy ends the QEMU process; QEMU removes its socket on the way out.
    m.write("destroy\n", "vm-b", "control")
    wait_for(lambda: not b.alive(), what="QEMU to exit")
    wait_for(lambda: m.ls() == ["vm-a"], what="vm-b to leave the tree")
    assert errno_of(m.read, "vm-b", "state") == errno.ENOENT


def test_killed_vm_reads_shutoff(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert m.read("vm-a", "state") == "running\n"
    vm.proc.kill()
    vm.proc.wait()
    # SIGKILL leaves the socket file behind: nobody answers on it.
    if os.path.exists(vm.qmp):
        # hvfs learns of the death when the monitor's connection ends, a
        # moment after the kill: until then it may still say running.
        wait_for(lambda: m.read("vm-a", "state") == "shutoff\n", timeout=2,
                 what="shutoff")
        assert errno_of(m.read, "vm-a", "version") == errno.ENODATA
    else:
        wait_for(lambda: "vm-a" not in m.ls(), what="vm-a to leave")


def test_single_monitor_option(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp", f"solo=unix:{vm.qmp}")
    assert m.ls() == ["solo"]
    assert m.read("solo", "state") == "running\n"
    assert m.read("solo", "name") == "solo\n"
    m.write("pause\n", "solo", "control")
    assert vm.status() == "paused"


def test_sigterm_unmounts(qmp_dir, vms):
    vms("vm-a")
    m = Mount("--qmp-dir", qmp_dir)
    assert m.ls() == ["vm-a"]
    # Files and directories still open when the session ends (the kernel
    # sends no RELEASE for them before the unmount) are freed all the same:
    # under AddressSanitizer a leak would make hvfs exit 1.
    held = [os.open(m.path("vm-a"), os.O_RDONLY | os.O_DIRECTORY),
            os.open(m.dir, os.O_RDONLY | os.O_DIRECTORY),
            os.open(m.path("vm-a", "state"), os.O_RDONLY),
            os.open(m.path("vm-a", "events"), os.O_RDONLY)]
    assert os.read(held[2], 100) == b"running\n"
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(timeout=10) == 0
    wait_for(lambda: not os.path.ismount(m.dir), what="the unmount")
    assert "session ended with 2 files and 2 directories open: freed" \
        in m.logtext()
    for fd in held:
        try:
            os.close(fd)
        except OSError as e:  # the file's FLUSH finds the daemon gone
            assert e.errno == errno.ENOTCONN
    os.rmdir(m.dir)
