# SPDX-License-Identifier: GPL-2.0-or-later
"""The mounted tree over a real libvirtd (the tests' private one, with real QEMU
domains, and libvirt's test driver), with virsh as the oracle."""

import errno
import json
import os
import subprocess
import tempfile

import pytest

from conftest import remove_prefixed
from hvtest import LIBVIRTD, Mount, Qemu, errno_of, sh, virsh, wait_for

PREFIX = "hvt-fs-"


@pytest.fixture(scope="module", autouse=True)
def clean(libvirtd):
    remove_prefixed(PREFIX)


def virsh_state(name, uri=None):
    s = virsh("domstate", name, uri=uri)
    return {"running": "running", "paused": "paused", "shut off": "shutoff",
            "in shutdown": "shutdown", "crashed": "crashed",
            "pmsuspended": "pmsuspended", "idle": "blocked",
            "no state": "nostate"}[s]


def test_tree_equals_virsh(domains, mount):
    on = domains("on")
    off = domains("off", start=False)
    m = mount("-c", LIBVIRTD.uri)
    names = sorted(virsh("list", "--all", "--name").split())
    assert m.ls() == names
    assert on in names and off in names
    for name in names:
        assert m.read(name, "state") == virsh_state(name) + "\n"
        assert m.read(name, "uuid") == virsh("domuuid", name) + "\n"
        assert m.read(name, "name") == name + "\n"
        domid = virsh("domid", name, check=False)
        if domid.isdigit():
            assert m.read(name, "id") == domid + "\n"
        else:
            assert errno_of(m.read, name, "id") == errno.ENODATA
    assert m.ls(on) == ["autostart", "block", "console", "control", "cpus",
                        "error", "events", "guest", "id", "memory", "name",
                        "qmp", "query", "screen.png", "snapshots", "state",
                        "stats", "uuid", "vcpus", "version", "xml"]
    out = virsh("qemu-monitor-command", on, '{"execute":"query-version"}')
    q = json.loads(out)["return"]["qemu"]
    assert m.read(on, "version") == f"{q['major']}.{q['minor']}.{q['micro']}\n"
    # A domain that is not running has no QEMU, so no version.
    assert errno_of(m.read, off, "version") == errno.ENODATA
    assert m.read(off, "xml").strip() == virsh("dumpxml", off)


def test_control_through_libvirt(domains, mount):
    d = domains("ctl")
    m = mount("-c", LIBVIRTD.uri)
    sh(f"echo pause > {m.path(d, 'control')}")
    assert virsh_state(d) == "paused"
    assert m.read(d, "state") == "paused\n"
    sh(f"echo resume > {m.path(d, 'control')}")
    assert virsh_state(d) == "running"
    # A verb the state forbids: libvirt's error, mapped, and nothing changes.
    e = errno_of(m.write, "resume\n", d, "control")
    assert e in (errno.EBUSY, errno.EINVAL), os.strerror(e)
    assert "control resume" in m.read(d, "error")
    assert virsh_state(d) == "running"
    sh(f"echo reset > {m.path(d, 'control')}")
    assert virsh_state(d) == "running"
    sh(f"echo destroy > {m.path(d, 'control')}")
    assert virsh_state(d) == "shutoff"
    assert m.read(d, "state") == "shutoff\n"
    assert errno_of(m.read, d, "id") == errno.ENODATA
    sh(f"echo start > {m.path(d, 'control')}")
    assert virsh_state(d) == "running"
    assert m.read(d, "id") == virsh("domid", d) + "\n"
    assert errno_of(m.write, "bogus\n", d, "control") == errno.EINVAL
    assert virsh_state(d) == "running"
    verbs = m.read(d, "control").split()
    for v in ("start", "powerdown", "shutdown", "reboot", "reset", "pause",
              "resume", "destroy"):
        assert v in verbs


def test_changes_behind_our_back(domains, mount):
    m = mount("-c", LIBVIRTD.uri)
    before = m.ls()
    d = domains("late", start=False)
    wait_for(lambda: d in m.ls(), what="the new domain")
    assert m.read(d, "state") == "shutoff\n"
    virsh("start", d)
    assert m.read(d, "state") == "running\n"
    virsh("suspend", d)
    assert m.read(d, "state") == "paused\n"
    virsh("destroy", d)
    virsh("undefine", d)
    wait_for(lambda: m.ls() == before, what="the domain to leave")
    assert errno_of(m.read, d, "state") == errno.ENOENT


def test_test_driver_lifecycle(mount):
    m = mount("-c", LIBVIRTD.test_uri)
    assert m.ls() == ["test"]
    assert m.read("test", "state") == "running\n"
    m.write("pause\n", "test", "control")
    assert m.read("test", "state") == "paused\n"
    m.write("resume\n", "test", "control")
    m.write("shutdown\n", "test", "control")
    assert m.read("test", "state") == "shutoff\n"
    m.write("start\n", "test", "control")
    assert m.read("test", "state") == "running\n"
    m.write("reboot\n", "test", "control")
    assert m.read("test", "state") == "running\n"
    m.write("destroy\n", "test", "control")
    assert m.read("test", "state") == "shutoff\n"
    # Forbidden by state: the test driver refuses, nothing changes.
    assert errno_of(m.write, "pause\n", "test", "control") != 0
    assert m.read("test", "state") == "shutoff\n"
    assert m.read("test", "error") != ""


def test_qmp_and_libvirt_in_one_tree(domains, mount):
    d = domains("clash")
    qdir = tempfile.mkdtemp(prefix="hvfs-qmp-")
    vm = Qemu(qdir, d)
    other = Qemu(qdir, "hvt-qmp-only")
    try:
        m = mount("-c", LIBVIRTD.uri, "--qmp-dir", qdir)
        names = m.ls()
        # A clash is resolved visibly: both, qualified by their source.
        assert d not in names
        assert f"{d}@libvirt" in names and f"{d}@qmp" in names
        assert "hvt-qmp-only" in names
        assert m.read(f"{d}@libvirt", "name") == d + "\n"
        assert m.read(f"{d}@qmp", "name") == d + "\n"
        m.write("pause\n", f"{d}@qmp", "control")
        assert vm.status() == "paused"
        assert virsh_state(d) == "running"
    finally:
        vm.kill()
        other.kill()
        subprocess.run(["rm", "-rf", qdir])
