# SPDX-License-Identifier: GPL-2.0-or-later
"""A real Linux guest (tests/guest/build.sh, under TCG) driven through a
mounted hvfs as a user would (echo VERB > control, cat state, poll, grep on
events), with QEMU's query-status on a second monitor as the oracle: `state`
must always read what query-status answers, for the event sequences QEMU
really emits (issue 12 item 15)."""

import os
import select
import subprocess
import time

import pytest

from conftest import remove_prefixed
from guest import DomainGuest, Guest
from hvtest import sh, virsh, wait_for

# QEMU RunState -> state, as docs/fs-layout.md documents.
RUNSTATE = {"running": "running", "suspended": "pmsuspended",
            "shutdown": "shutdown", "guest-panicked": "crashed"}
for _s in ("paused debug prelaunch inmigrate postmigrate finish-migrate "
           "restore-vm save-vm io-error watchdog colo internal-error").split():
    RUNSTATE[_s] = "paused"


@pytest.fixture
def guests(qmp_dir):
    """guests(name, no_shutdown=False, extra=()) boots the real guest in qmp_dir and
    waits for its ready line."""
    started = []

    def start(name, no_shutdown=False, extra=()):
        g = Guest(qmp_dir, name, no_shutdown=no_shutdown, extra=extra)
        started.append(g)
        g.wait_ready()
        return g
    yield start
    for g in started:
        g.kill()


def state(m, name):
    return sh(f"cat {m.path(name, 'state')}")[1].strip()


def agrees(m, g, want):
    """Waits (by poll() on state, as the docs describe) until QEMU's
    query-status says `want` and `state` reads what it maps to; then checks
    once more that the two agree."""
    wait_for(lambda: g.status() == want, timeout=60,
             what=f"{g.name}: query-status {want}")
    fd = os.open(m.path(g.name, "state"), os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            os.lseek(fd, 0, os.SEEK_SET)
            if os.read(fd, 64).decode().strip() == RUNSTATE[want]:
                break
            p.poll(1000)
    finally:
        os.close(fd)
    # A settled state: what cat says is what QEMU says.
    assert state(m, g.name) == RUNSTATE[g.status()] == RUNSTATE[want]


def control(m, name, verb):
    sh(f"echo {verb} > {m.path(name, 'control')}")


def drain(reader):
    """What a `cat events` reader printed; it is ended after 10 s if the
    stream did not end by itself."""
    try:
        return reader.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        reader.kill()
        return reader.communicate()[0]


def test_poweroff_kept_by_no_shutdown(guests, mount, qmp_dir):
    """-no-shutdown: a powered-off guest reads `shutdown` (the STOP after
    SHUTDOWN does not make it `paused`), a reset leaves it in prelaunch
    (`paused`), resume boots it again, and destroy of a paused guest takes it
    out of the tree."""
    g = guests("g1", no_shutdown=True)
    m = mount("--qmp-dir", qmp_dir)
    ev = subprocess.Popen(["cat", m.path("g1", "events")],
                          stdout=subprocess.PIPE, text=True)
    try:
        agrees(m, g, "running")
        control(m, "g1", "powerdown")
        agrees(m, g, "shutdown")
        assert "reboot: Power down" in g.console_text()
        control(m, "g1", "reset")
        agrees(m, g, "prelaunch")
        control(m, "g1", "resume")
        agrees(m, g, "running")
        g.wait_ready(count=2)
        agrees(m, g, "running")
        control(m, "g1", "pause")
        agrees(m, g, "paused")
        control(m, "g1", "destroy")
        wait_for(lambda: not g.alive(), timeout=30, what="QEMU to quit")
        wait_for(lambda: "g1" not in m.ls(), timeout=30,
                 what="g1 to leave the tree")
    finally:
        out = drain(ev)
    for name in ("SHUTDOWN", "STOP", "RESUME", "RESET"):
        assert f'"event":"{name}"' in out, out
    assert '"state":"shutdown"' in out, out


def test_reboot_and_poweroff(guests, mount, qmp_dir):
    """Without -no-shutdown: a guest that reboots (from its console, through
    its agent, by `reset`) stays `running`; one paused while its power button
    is pressed stays `paused` until resumed, then powers off: QEMU exits and
    the domain leaves the tree after its last events."""
    g = guests("g2")
    m = mount("--qmp-dir", qmp_dir)
    agrees(m, g, "running")

    g.type("reboot")
    g.wait_ready(count=2)
    agrees(m, g, "running")

    g.agent("guest-shutdown", mode="reboot")
    g.wait_ready(count=3)
    agrees(m, g, "running")

    control(m, "g2", "reset")
    g.wait_ready(count=4)
    agrees(m, g, "running")

    ev = subprocess.Popen(["cat", m.path("g2", "events")],
                          stdout=subprocess.PIPE, text=True)
    try:
        control(m, "g2", "pause")
        agrees(m, g, "paused")
        control(m, "g2", "powerdown")
        agrees(m, g, "paused")  # the guest cannot act while paused
        control(m, "g2", "resume")
        assert g.proc.wait(timeout=60) == 0
        wait_for(lambda: "g2" not in m.ls(), timeout=30,
                 what="g2 to leave the tree")
    finally:
        out = drain(ev)
    assert '"event":"SHUTDOWN"' in out and '"state":"shutdown"' in out, out
    assert "reboot: Power down" in g.console_text()


def test_panic(guests, mount, qmp_dir):
    """A guest that panics (pvpanic, with QEMU's panic action `pause`) reads
    `crashed`, not `paused` (the STOP after GUEST_PANICKED); a reset then
    leaves it in prelaunch (`paused`) until resume boots it again."""
    g = guests("g3", extra=("-action", "panic=pause"))
    m = mount("--qmp-dir", qmp_dir)
    agrees(m, g, "running")
    g.type("echo c > /proc/sysrq-trigger")
    agrees(m, g, "guest-panicked")
    control(m, "g3", "reset")
    agrees(m, g, "prelaunch")
    control(m, "g3", "resume")
    g.wait_ready(count=2)
    agrees(m, g, "running")


PREFIX = "hvt-ug-"
VIRSH_STATE = {"running": "running", "paused": "paused",
               "shut off": "shutoff", "in shutdown": "shutdown",
               "crashed": "crashed", "pmsuspended": "pmsuspended"}


@pytest.fixture
def domain_guest(libvirtd):
    """domain_guest(name) defines and starts the guest as the libvirt
    domain PREFIX + name and waits for its ready line."""
    made = []

    def make(name):
        g = DomainGuest(PREFIX + name)
        made.append(g)
        g.wait_ready()
        return g
    remove_prefixed(PREFIX)
    yield make
    for g in made:
        g.remove()


def lv_agrees(m, name, want):
    """Waits until virsh domstate says `want`, and `cat state` with it."""
    wait_for(lambda: VIRSH_STATE[virsh("domstate", name)] == want,
             timeout=60, what=f"{name}: domstate {want}")
    wait_for(lambda: state(m, name) == want, timeout=20,
             what=f"{name}: state {want}")
    assert state(m, name) == VIRSH_STATE[virsh("domstate", name)] == want


def test_libvirt_guest(libvirtd, domain_guest, mount):
    """A libvirt domain of the guest: reboot and reset keep it `running`;
    powerdown shuts it off (it stays in the tree); events show each."""
    g = domain_guest("lv")
    m = mount("-c", libvirtd.uri)
    lv_agrees(m, g.name, "running")
    ev = subprocess.Popen(["cat", m.path(g.name, "events")],
                          stdout=subprocess.PIPE, text=True)
    try:
        control(m, g.name, "reboot")
        g.wait_ready(count=2)
        lv_agrees(m, g.name, "running")
        control(m, g.name, "reset")
        g.wait_ready(count=3)
        lv_agrees(m, g.name, "running")
        control(m, g.name, "powerdown")
        lv_agrees(m, g.name, "shutoff")
        assert g.name in m.ls()
    finally:
        out = drain(ev)
    assert '"state":"shutoff"' in out, out
