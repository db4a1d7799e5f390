# SPDX-License-Identifier: GPL-2.0-or-later
"""The live view: events files, poll() on state, caches kept true by events,
and blocked readers that must not hold FUSE workers."""

import errno
import os
import select
import signal
import subprocess
import time

from hvtest import errno_of, read_events, sh, wait_for


def test_domain_events(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY)
    try:
        sh(f"echo pause > {m.path('vm-a', 'control')}")
        seen = []
        ev = read_events(fd, lambda e: e["kind"] == "state", seen=seen)
        assert ev["domain"] == "vm-a" and ev["state"] == "paused"
        assert any(e["kind"] == "qemu" and e["event"] == "STOP"
                   for e in seen)
        assert isinstance(ev["timestamp"]["seconds"], int)
        # A change behind hvfs's back arrives the same way.
        vm.oracle.execute("cont")
        ev = read_events(fd, lambda e: e["kind"] == "state")
        assert ev["state"] == "running"
        assert m.read("vm-a", "state") == "running\n"
    finally:
        os.close(fd)


def test_root_events_hidden_from_globs(qmp_dir, vms, mount):
    vms("vm-a")
    vm_b = vms("vm-b")
    m = mount("--qmp-dir", qmp_dir)
    assert sorted(os.listdir(m.dir)) == [".error", ".events", ".metrics",
                                         "vm-a", "vm-b"]
    _, out, _ = sh(f"ls {m.dir}")
    assert out.split() == ["vm-a", "vm-b"]
    _, out, _ = sh(f"ls -A {m.dir}")
    assert ".events" in out.split()
    _, out, _ = sh(f"cat {m.dir}/*/state")
    assert out == "running\nrunning\n"
    fd = os.open(m.path(".events"), os.O_RDONLY)
    try:
        vm_b.oracle.execute("stop")
        ev = read_events(fd, lambda e: e["kind"] == "state")
        assert ev["domain"] == "vm-b" and ev["state"] == "paused"
    finally:
        os.close(fd)


def test_nonblocking_and_poll(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    fd = os.open(m.path("vm-a", "events"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        # The watcher's first connection to vm-a may come after the open
        # on a loaded machine: the state it learns then is an event. Let
        # that pass; then, with nothing happening, nothing is readable.
        deadline = time.monotonic() + 10
        while p.poll(500):
            assert b'"kind":"state"' in os.read(fd, 65536)
            assert time.monotonic() < deadline
        assert errno_of(os.read, fd, 4096) == errno.EAGAIN
        assert p.poll(100) == []
        vm.oracle.execute("stop")
        ready = p.poll(5000)
        assert ready and ready[0][1] & select.POLLIN
        data = os.read(fd, 65536)
        assert data.endswith(b"\n") and b'"STOP"' in data
    finally:
        os.close(fd)


def test_poll_state_for_change(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    fd = os.open(m.path("vm-a", "state"), os.O_RDONLY)
    try:
        assert os.read(fd, 100) == b"running\n"
        p = select.poll()
        p.register(fd, select.POLLPRI)
        assert p.poll(100) == []
        vm.oracle.execute("stop")
        ready = p.poll(5000)
        assert ready and ready[0][1] & select.POLLPRI
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 100) == b"paused\n"
        # Read again: no change since, so no POLLPRI.
        assert p.poll(100) == []
    finally:
        os.close(fd)


def test_blocked_readers_hold_no_worker(qmp_dir, vms, mount):
    """More blocked readers than hvfs has FUSE threads (128): every other
    file must still answer at once."""
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    readers = [subprocess.Popen(["cat", m.path("vm-a", "events")],
                                stdout=subprocess.DEVNULL)
               for _ in range(150)]
    try:
        time.sleep(0.5)
        assert all(r.poll() is None for r in readers)
        t = time.monotonic()
        assert m.read("vm-a", "state") == "running\n"
        assert m.read("vm-a", "version").count(".") == 2
        elapsed = time.monotonic() - t
        # Not a speed test: it must merely not wait for a free worker,
        # which would block it until the readers end.
        assert elapsed < 4, elapsed
        sh(f"echo pause > {m.path('vm-a', 'control')}")
        assert vm.status() == "paused"
    finally:
        for r in readers:
            r.send_signal(signal.SIGINT)
        for r in readers:
            r.wait(timeout=10)
    # Interrupted readers leave nothing behind: the mount still serves.
    assert m.read("vm-a", "state") == "paused\n"


def test_cache_follows_changes_behind_our_back(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    for _ in range(3):
        assert m.read("vm-a", "state") == "running\n"
        vm.oracle.execute("stop")
        wait_for(lambda: m.read("vm-a", "state") == "paused\n",
                 timeout=2, what="paused")
        vm.oracle.execute("cont")
        wait_for(lambda: m.read("vm-a", "state") == "running\n",
                 timeout=2, what="running")
