# SPDX-License-Identifier: GPL-2.0-or-later
"""Several libvirt connections in one tree: one directory per host.

The tests' private libvirtd (tests/libvirtd.sh) is reached twice, over its
UNIX socket and over TCP on 127.0.0.1 (a port of its own, auth_tcp = "none"),
with virsh over each URI as the oracle. Hosts that are
down, slow or come back are TCP proxies in front of that libvirtd.
"""

import errno
import json
import os
import select
import socket
import threading
import time

import pytest

from conftest import remove_prefixed
from hvtest import Proxy, errno_of, sh, virsh, wait_for

UNIX = TCP = None  # the private libvirtd's URIs, set by clean()
PREFIX = "hvt-mh-"


@pytest.fixture(scope="module", autouse=True)
def clean(libvirtd):
    global UNIX, TCP
    UNIX, TCP = libvirtd.uri, libvirtd.tcp_uri
    for uri in (UNIX, TCP):
        if virsh("version", uri=uri, check=False) == "":
            pytest.fail(f"no libvirtd at {uri}")
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def state_of(name, uri):
    s = virsh("domstate", name, uri=uri)
    return {"running": "running", "paused": "paused",
            "shut off": "shutoff"}[s]


def test_two_connections_one_dir_each(domains, mount):
    on = domains("on")
    off = domains("off", start=False)
    m = mount("-c", "unix=" + UNIX, "-c", "tcp=" + TCP)
    assert m.ls() == ["tcp", "unix"]
    assert sorted(os.listdir(m.dir)) == [".events", ".metrics", "tcp", "unix"]
    for host, uri in (("unix", UNIX), ("tcp", TCP)):
        names = sorted(virsh("list", "--all", "--name", uri=uri).split())
        assert m.ls(host) == names
        assert on in names and off in names
        assert sorted(os.listdir(m.path(host)))[:4] == [
            ".create", ".define", ".error", ".events"]
        assert m.read(host, ".error") == ""
        for name in (on, off):
            assert m.read(host, name, "state") == state_of(name, uri) + "\n"
            assert m.read(host, name, "uuid") == \
                virsh("domuuid", name, uri=uri) + "\n"
        assert m.read(host, on, "version").count(".") == 2
        # The rich files work per connection too.
        assert json.loads(m.read(host, on, "query", "status"))["status"] \
            == "running"
        assert m.read(host, on, "cpus").split()[0] == "0"
    # The domains of one host are not at the root or in the other's place.
    assert errno_of(m.read, on, "state") == errno.ENOENT
    assert errno_of(m.read, "nohost", on, "state") == errno.ENOENT
    # A shell drives it the same way.
    _, out, _ = sh(f"cat {m.dir}/*/{on}/state")
    assert out == "running\nrunning\n"
    # Control goes to the connection of that directory.
    m.write("pause\n", "tcp", on, "control")
    wait_for(lambda: m.read("unix", on, "state") == "paused\n",
             what="the pause seen through the other connection")
    assert virsh("domstate", on) == "paused"


def test_events_per_host(domains, mount):
    on = domains("ev")
    m = mount("-c", "unix=" + UNIX, "-c", "tcp=" + TCP)
    fds = {p: os.open(m.path(*p), os.O_RDONLY | os.O_NONBLOCK)
           for p in [(".events",), ("tcp", ".events"), ("unix", ".events")]}
    try:
        virsh("suspend", on)
        # Both connections see the change, each in its own directory.
        for host in ("unix", "tcp"):
            wait_for(lambda: m.read(host, on, "state") == "paused\n",
                     what=f"paused in {host}")

        def lines(fd, want):
            got = b""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                select.select([fd], [], [], 0.5)
                try:
                    got += os.read(fd, 65536)
                except BlockingIOError:
                    pass
                evs = [json.loads(l) for l in got.decode().splitlines()]
                evs = [e for e in evs if e["domain"] == on and
                       e.get("state") == "paused"]
                if len(evs) >= want:
                    return evs
            raise AssertionError(f"events: {got!r}")
        everything = lines(fds[(".events",)], 2)
        assert sorted(e["host"] for e in everything[:2]) == ["tcp", "unix"]
        assert [e["host"] for e in lines(fds[("tcp", ".events")], 1)] == \
            ["tcp"]
        assert [e["host"] for e in lines(fds[("unix", ".events")], 1)] == \
            ["unix"]
        # A host's stream has none of the other host's events.
        time.sleep(0.3)
        try:
            rest = os.read(fds[("tcp", ".events")], 65536).decode()
        except BlockingIOError:
            rest = ""
        assert all(json.loads(l)["host"] == "tcp" for l in rest.splitlines())
    finally:
        for fd in fds.values():
            os.close(fd)


def test_bare_connections_named_after_hosts(mount):
    m = mount("-c", UNIX, "-c", TCP)
    assert m.ls() == sorted([socket.gethostname(), "127.0.0.1"])
    # One connection: the tree is as it always was, domains at the root.
    one = mount("-c", TCP)
    assert one.ls() == sorted(virsh("list", "--all", "--name").split())


def test_two_connections_with_one_name_fail(tmp_path):
    p = sh(f"{os.environ['HVFS_BIN']} -f -c 'a={UNIX}' -c 'a={TCP}' {tmp_path}",
           check=False)
    assert p[0] != 0 and "two connections" in p[2]
    assert not os.path.ismount(tmp_path)


def test_unreachable_host_then_back(domains, mount):
    on = domains("back")
    proxy = Proxy()  # nothing listens on its port yet
    try:
        m = mount("-c", "unix=" + UNIX,
                  "-c", f"far=qemu+tcp://127.0.0.1:{proxy.port}/system")
        assert m.ls() == ["far", "unix"]
        assert m.ls("far") == []
        err = m.read("far", ".error")
        assert "ECONNREFUSED" in err and str(proxy.port) in err
        # The other host is served at full speed meanwhile.
        t = time.monotonic()
        for _ in range(50):
            assert m.read("unix", on, "state") == "running\n"
        assert time.monotonic() - t < 2
        # It comes up: hvfs reconnects on its own (backoff of at most 8 s).
        proxy.start()
        wait_for(lambda: on in m.ls("far"), timeout=20,
                 what="the host's domains after it came up")
        assert m.read("far", ".error") == ""
        assert m.read("far", on, "state") == "running\n"
        # Events are registered on the new connection too.
        virsh("suspend", on)
        wait_for(lambda: m.read("far", on, "state") == "paused\n",
                 what="an event through the late connection")
    finally:
        proxy.close()


def test_wedged_host_leaves_others_alone(domains, mount):
    on = domains("wedge")
    proxy = Proxy()
    proxy.start()
    try:
        m = mount("-c", "unix=" + UNIX,
                  "-c", f"slow=qemu+tcp://127.0.0.1:{proxy.port}/system",
                  timeout=2)
        assert on in m.ls("slow")
        proxy.up = False
        # Uncached reads of the wedged host time out...
        result = {}

        def slow_read():
            t = time.monotonic()
            result["errno"] = errno_of(m.read, "slow", on, "xml")
            result["secs"] = time.monotonic() - t
        readers = [threading.Thread(target=slow_read) for _ in range(4)]
        for r in readers:
            r.start()
        # ...while the other host answers at once.
        time.sleep(0.2)
        t = time.monotonic()
        for _ in range(20):
            assert "<domain" in m.read("unix", on, "xml")
        fast = time.monotonic() - t
        for r in readers:
            r.join(timeout=15)
        assert result["errno"] in (errno.ETIMEDOUT, errno.ENOTCONN,
                                   errno.EIO), result
        assert 1 < result["secs"] < 8, result
        assert fast < 1.5, fast
        # Unwedged, the same mount serves that host again.
        proxy.up = True
        wait_for(lambda: errno_of(m.read, "slow", on, "xml") == 0,
                 timeout=20, what="the host after it unwedged")
    finally:
        proxy.close()
