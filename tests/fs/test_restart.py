# SPDX-License-Identifier: GPL-2.0-or-later
"""libvirtd goes away under the mount and comes back: reads fail fast while
it is gone, and the same mount serves again afterwards, events included.
Also: libvirt's test driver, which refuses QEMU monitor events, still gives
lifecycle events.

The libvirtd stopped and started again is the tests' private one
(tests/libvirtd.sh): the host's is never touched. This file leaves it
running, also when a test fails."""

import errno
import os
import time

import pytest

from hvtest import (define_domain, errno_of, read_events, remove_domain,
                    virsh, wait_for)

PREFIX = "hvt-rst-"
TIMEOUT = 2
GONE = (errno.ENOTCONN, errno.ECONNREFUSED, errno.EIO)


def answers(libvirtd):
    return virsh("version", uri=libvirtd.uri, check=False) != ""


@pytest.fixture
def domain(libvirtd):
    """A running domain; at the end libvirtd is started again whatever
    happened (the test stops it), then the domain is removed."""
    name = PREFIX + "a"
    remove_domain(name)
    define_domain(name)
    virsh("start", name)
    try:
        yield name
    finally:
        libvirtd.start()
        assert answers(libvirtd)
        remove_domain(name)


def test_libvirtd_restart_under_the_mount(libvirtd, domain, mount):
    m = mount("-c", libvirtd.uri, timeout=TIMEOUT)
    assert m.read(domain, "state") == "running\n"
    all_fd = os.open(m.path(".events"), os.O_RDONLY)
    dom_fd = os.open(m.path(domain, "events"), os.O_RDONLY)
    try:
        libvirtd.stop()
        assert not answers(libvirtd)
        ev = read_events(all_fd, lambda e: e["kind"] == "lost")
        assert ev["domain"] == ""
        # No peer stamps a lost connection: hvfs does, with the time now.
        assert abs(ev["timestamp"]["seconds"] - time.time()) < 60, ev
        # Each domain of that connection is concerned: its own file says so.
        ev = read_events(dom_fd, lambda e: e["kind"] == "lost")
        assert ev["domain"] == ""

        # While it is gone: every read fails at once, none hangs; the
        # domains stay in the tree (hvfs cannot tell that they left).
        end = time.monotonic() + 2
        while time.monotonic() < end:
            for f in ("state", "version", "uuid"):
                t = time.monotonic()
                e = errno_of(m.read, domain, f)
                dt = time.monotonic() - t
                assert e in GONE or (f == "uuid" and e == 0), (f, e)
                assert dt < 1.0, (f, dt)
            t = time.monotonic()
            assert errno_of(m.write, "pause\n", domain, "control") in GONE
            assert time.monotonic() - t < 1.0
            time.sleep(0.1)
        assert domain in m.ls()
        err = m.read(domain, "error")
        assert "libvirtd" in err, err

        libvirtd.start()
        assert answers(libvirtd)
        # Backoff: hvfs retries at most 8 s apart; a read reconnects at once.
        wait_for(lambda: errno_of(m.read, domain, "state") == 0,
                 timeout=15, what="the mount to answer again")
        assert m.read(domain, "state") == "running\n"

        # Events again, both registrations replayed: the lifecycle event
        # changes `state` and shows in both events files, next to QEMU's
        # own STOP through the monitor-event registration.
        virsh("suspend", domain)
        seen = []
        stop = lambda e: e["kind"] == "qemu" and e["event"] == "STOP"
        ev = read_events(dom_fd, lambda e: e["kind"] == "state"
                         and e["state"] == "paused", seen=seen)
        assert ev["domain"] == domain
        if not any(stop(e) for e in seen):  # QEMU's came first, or after
            read_events(dom_fd, stop)
        read_events(all_fd, lambda e: e["kind"] == "state"
                    and e["domain"] == domain and e["state"] == "paused")
        wait_for(lambda: m.read(domain, "state") == "paused\n", timeout=5,
                 what="state to say paused")
        # And the other way, through the mount.
        m.write("resume\n", domain, "control")
        read_events(dom_fd, lambda e: e["kind"] == "state"
                    and e["state"] == "running")
        assert m.read(domain, "state") == "running\n"
    finally:
        os.close(all_fd)
        os.close(dom_fd)


def test_test_driver_has_lifecycle_events(libvirtd, mount):
    """test:///default refuses QEMU monitor events; hvfs subscribes anyway
    (lifecycle only) and says so at debug level, not as a notice."""
    uri = libvirtd.test_uri
    m = mount("-c", uri, "-d")
    assert "no events" not in m.logtext()
    assert "lifecycle events only" in m.logtext()
    fd = os.open(m.path("test", "events"), os.O_RDONLY)
    try:
        if virsh("domstate", "test", uri=uri) != "running":
            virsh("start", "test", uri=uri, check=False)
            virsh("resume", "test", uri=uri, check=False)
        virsh("suspend", "test", uri=uri)
        ev = read_events(fd, lambda e: e["kind"] == "state")
        assert ev["state"] == "paused" and ev["event"] == "lifecycle"
        assert m.read("test", "state") == "paused\n"
        virsh("resume", "test", uri=uri)
        ev = read_events(fd, lambda e: e["kind"] == "state")
        assert ev["state"] == "running"
    finally:
        os.close(fd)
