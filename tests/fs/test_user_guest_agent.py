# SPDX-License-Identifier: GPL-2.0-or-later
"""guest/: the QEMU guest agent of the real guest (tests/guest) as files,
on both drivers, with the agent itself (direct) and virsh (libvirt) as
oracles. Each guest boots once per module (TCG boots are slow here)."""

import concurrent.futures
import errno
import itertools
import json
import os
import select
import subprocess
import tempfile
import time

import pytest

from conftest import remove_prefixed
from guest import READY, DomainGuest, Guest
from hvtest import (Mount, Qemu, errno_of, readme_block, sh, virsh,
                    wait_for)

PREFIX = "hvt-uga-"


def agent_addresses(ifaces):
    """guest/addresses as documented, from guest-network-get-interfaces."""
    return "".join(f"{i['name']} {a['ip-address']}/{a['prefix']}\n"
                   for i in ifaces for a in i.get("ip-addresses", []))


def shape(ifaces):
    """The interfaces without their statistics (they move)."""
    return [{k: v for k, v in i.items() if k != "statistics"}
            for i in ifaces]


class Direct:
    """A bare guest in a qmp-dir, the agent's answers read before hvfs
    holds the agent socket, and a mount of the qmp-dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hvfs-qmp-")
        os.chmod(self.dir, 0o755)
        self.g = Guest(self.dir, "ga")
        self.g.wait_ready()
        wait_for(lambda: self._try_ping(), timeout=60, what="agent ping")
        a = self.g.agent
        self.oracle = {
            "hostname": a("guest-get-host-name")["host-name"] + "\n",
            "os": a("guest-get-osinfo"),
            "interfaces": a("guest-network-get-interfaces"),
            "users": a("guest-get-users"),
            "filesystems": a("guest-get-fsinfo"),
            "info": a("guest-info"),
        }
        self.m = Mount("qmp-dir:" + self.dir)
        self.name = "ga"

    def _try_ping(self):
        try:
            self.g.agent("guest-ping", timeout=5)
            return True
        except (OSError, ValueError, RuntimeError):
            return False

    def live(self, cmd):
        """An agent command now, through hvfs's raw passthrough (the agent
        socket serves one client: hvfs holds it)."""
        p = self.m.path(self.name, "guest", "agent")
        with open(p, "r+b", buffering=0) as f:
            f.write(json.dumps({"execute": cmd}).encode())
            return json.loads(f.read())["return"]

    def close(self):
        code = self.m.umount()
        self.g.kill()
        subprocess.run(["rm", "-rf", self.dir])
        assert code == 0, self.m.logtext()


class Libvirt:
    """The guest as a libvirt domain, virsh as the oracle."""

    def __init__(self, libvirtd):
        remove_prefixed(PREFIX)
        self.name = PREFIX + "lv"
        self.g = DomainGuest(self.name)
        self.g.wait_ready()
        wait_for(lambda: self.agent("guest-ping") is not None, timeout=60,
                 what="agent ping through libvirt")
        self.oracle = {
            "hostname": self.agent("guest-get-host-name")["host-name"]
            + "\n",
            "os": self.agent("guest-get-osinfo"),
            "interfaces": self.agent("guest-network-get-interfaces"),
            "users": self.agent("guest-get-users"),
            "filesystems": self.agent("guest-get-fsinfo"),
            "info": self.agent("guest-info"),
        }
        self.m = Mount("-c", libvirtd.uri)

    def live(self, cmd):
        return self.agent(cmd)

    def agent(self, cmd):
        out = virsh("qemu-agent-command", self.name,
                    json.dumps({"execute": cmd}), check=False)
        return json.loads(out)["return"] if out.startswith("{") else None

    def close(self):
        code = self.m.umount()
        self.g.remove()
        assert code == 0, self.m.logtext()


@pytest.fixture(scope="module", params=["direct", "libvirt"])
def gt(request):
    if request.param == "direct":
        t = Direct()
    else:
        t = Libvirt(request.getfixturevalue("libvirtd"))
    yield t
    t.close()


def cat(t, f):
    return sh(f"cat {t.m.path(t.name, 'guest', f)}")[1]


def test_listing_and_modes(gt):
    assert gt.m.ls(gt.name, "guest") == sorted(
        "state hostname os interfaces addresses users filesystems time "
        "exec agent control".split())
    modes = {f: os.stat(gt.m.path(gt.name, "guest", f)).st_mode & 0o777
             for f in gt.m.ls(gt.name, "guest")}
    assert modes["state"] == 0o444
    assert modes["exec"] == modes["agent"] == 0o600
    assert modes["control"] == 0o200
    assert modes["hostname"] == modes["users"] == 0o400


def test_facts_agree_with_the_agent(gt):
    o = gt.oracle
    assert cat(gt, "state") == "connected\n"
    assert cat(gt, "hostname") == o["hostname"] == gt.name + "\n" or \
        cat(gt, "hostname") == o["hostname"]
    assert json.loads(cat(gt, "os")) == o["os"]
    # The interfaces move while the guest's IPv6 settles: equal to a live
    # answer taken around the read.
    wait_for(lambda: shape(gt.live("guest-network-get-interfaces")) ==
             shape(json.loads(cat(gt, "interfaces"))) ==
             shape(gt.live("guest-network-get-interfaces")), timeout=30,
             what="interfaces agree")
    wait_for(lambda: agent_addresses(gt.live("guest-network-get-interfaces"))
             == cat(gt, "addresses") ==
             agent_addresses(gt.live("guest-network-get-interfaces")),
             timeout=30, what="addresses agree")
    assert "10.0.2.15/24" in cat(gt, "addresses")
    assert json.loads(cat(gt, "users")) == o["users"]
    assert json.loads(cat(gt, "filesystems")) == o["filesystems"]
    if isinstance(gt, Libvirt):
        wait_for(lambda: domifaddr(gt.name) ==
                 set(cat(gt, "addresses").splitlines()), timeout=30,
                 what="addresses as virsh domifaddr --source agent")
    secs = float(cat(gt, "time"))
    assert abs(secs - time.time()) < 120
    # cut and grep, as documented.
    out = sh(f"grep -w eth0 {gt.m.path(gt.name, 'guest', 'addresses')}"
             " | cut -d' ' -f2")[1]
    assert "10.0.2.15/24\n" in out


def domifaddr(name):
    """`virsh domifaddr --source agent` as "IFACE ADDR/PREFIX" lines."""
    want, name_ = set(), None
    for ln in virsh("domifaddr", name, "--source", "agent").splitlines():
        parts = ln.split()
        # NAME MAC PROTOCOL ADDRESS; an interface's further addresses
        # come on lines whose name and MAC are "-".
        if len(parts) == 4 and parts[0] != "-":
            name_ = parts[0]
        if parts and parts[-1].count("/") == 1:
            want.add(f"{name_} {parts[-1]}")
    return want


def test_exec_round_trip(gt):
    p = gt.m.path(gt.name, "guest", "exec")
    out = sh(f"exec 3<>{p}; printf 'echo hi; echo oops >&2; exit 3' >&3;"
             " cat <&3")[1]
    assert out == "exit 3 3 5\nhi\noops\n"
    # Python, and a hostname read from inside.
    with open(p, "r+b", buffering=0) as f:
        f.write(b"hostname")
        assert f.read().decode() == f"exit 0 {len(gt.oracle['hostname'])}" \
            f" 0\n{gt.oracle['hostname']}"
    # A bad write: nothing run, EINVAL.
    assert errno_of(gt.m.write, "", gt.name, "guest", "exec") in (
        errno.EINVAL, 0)


def test_agent_passthrough(gt):
    p = gt.m.path(gt.name, "guest", "agent")
    out = sh(f"exec 3<>{p}; printf '{{\"execute\":\"guest-info\"}}' >&3;"
             " cat <&3")[1]
    assert json.loads(out)["return"]["version"] == gt.oracle["info"]["version"]


def test_fsfreeze_and_thaw(gt):
    c = gt.m.path(gt.name, "guest", "control")
    sh(f"echo fsfreeze > {c}")
    sh(f"echo fsthaw > {c}")
    # bash (dash's echo says "I/O error" for any failed write).
    p = subprocess.run(["bash", "-c", f"echo melt > {c}"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "Invalid argument" in p.stderr
    assert 'unknown guest verb "melt"' in gt.m.read(gt.name, "error")
    p = gt.m.path(gt.name, "guest", "agent")
    out = sh(f"exec 3<>{p}; printf '{{\"execute\":\"guest-fsfreeze-status\"}}'"
             " >&3; cat <&3")[1]
    assert json.loads(out)["return"] == "thawed"


_typed = itertools.count(1)


def type_line(gt, line, timeout=60):
    """Types line at the guest's shell, and waits until the shell ran
    it: then it prints a number only its arithmetic makes (the echo of
    what was typed does not hold it). A loaded host runs a TCG guest
    slowly."""
    k = next(_typed)
    for text in (line, f"echo typed-$((1000 + {k}))"):
        if isinstance(gt, Direct):
            gt.g.type(text)
        else:
            os.write(gt.g.fd, text.encode() + b"\n")
    wait_for(lambda: f"typed-{1000 + k}" in gt.g.console_text(),
             timeout=timeout, what=f"the guest ran {line!r}")


def wait_agent_state(gt, want, timeout=30):
    """poll() on guest/state as on state: POLLPRI, lseek, read again."""
    fd = os.open(gt.m.path(gt.name, "guest", "state"), os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, select.POLLPRI)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                if os.read(fd, 64).decode().strip() == want:
                    return True
            except OSError:
                pass
            p.poll(1000)
    finally:
        os.close(fd)
    return False


def test_wedged_agent_times_out(gt):
    """qemu-ga stopped (SIGSTOP) inside the guest: guest/ reads fail with
    ETIMEDOUT within the deadline (later ones at once), while state and
    the rest of the domain answer at once; continued, it answers again."""
    m, n = gt.m, gt.name
    type_line(gt, "kill -STOP $(pidof qemu-ga)")
    time.sleep(1)
    try:
        with concurrent.futures.ThreadPoolExecutor() as ex:
            t0 = time.monotonic()
            slow = ex.submit(errno_of, m.read, n, "guest", "hostname")
            time.sleep(0.5)
            t1 = time.monotonic()
            assert m.read(n, "state") == "running\n"
            assert m.read(n, "name").strip() == n
            assert time.monotonic() - t1 < 2
            assert slow.result(timeout=30) == errno.ETIMEDOUT
            assert time.monotonic() - t0 < 5 + 5  # -o timeout + margin
        t0 = time.monotonic()
        assert errno_of(m.read, n, "guest", "time") == errno.ETIMEDOUT
        assert time.monotonic() - t0 < 5 + 5
        ready = gt.g.console_text().count(READY)
        if isinstance(gt, Direct):
            # The direct reboot needs the agent: it fails within the
            # deadline, and nothing reaches the guest.
            t0 = time.monotonic()
            assert errno_of(m.write, "reboot\n", n, "control") == \
                errno.ETIMEDOUT
            assert time.monotonic() - t0 < 5 + 5
            assert "control reboot" in m.read(n, "error")
    finally:
        type_line(gt, "kill -CONT $(pidof qemu-ga)")
    wait_for(lambda: errno_of(m.read, n, "guest", "hostname") == 0,
             timeout=40, what="the agent answers again")
    assert cat(gt, "hostname") == gt.oracle["hostname"]
    time.sleep(2)
    assert gt.g.console_text().count(READY) == ready  # no reboot came


def test_agent_killed_and_back(gt):
    """qemu-ga killed inside the guest: guest/state turns disconnected (by
    its event), guest/ reads fail fast, state is unaffected; restarted,
    it is connected again."""
    m, n = gt.m, gt.name
    assert cat(gt, "state") == "connected\n"
    type_line(gt, "killall qemu-ga")
    assert wait_agent_state(gt, "disconnected")
    t0 = time.monotonic()
    e = errno_of(m.read, n, "guest", "hostname")
    assert e in (errno.ENODATA, errno.ETIMEDOUT)
    assert time.monotonic() - t0 < 8
    assert m.read(n, "state") == "running\n"
    type_line(gt, "qemu-ga -m virtio-serial -p "
              "/dev/virtio-ports/org.qemu.guest_agent.0 -t /run "
              "</dev/null >/dev/null 2>&1 &")
    assert wait_agent_state(gt, "connected")
    wait_for(lambda: errno_of(m.read, n, "guest", "hostname") == 0,
             timeout=30, what="hostname again")
    assert cat(gt, "hostname") == gt.oracle["hostname"]


def test_no_agent_is_enodata(gt, request):
    """A domain without an agent channel (or socket) has guest/ too; its
    files fail at once with ENODATA."""
    vm = None
    if isinstance(gt, Direct):
        vm = Qemu(gt.dir, "noagent")
        name = "noagent"
    else:
        name = request.getfixturevalue("domains")("noagent")
    try:
        wait_for(lambda: name in gt.m.ls(), what="noagent listed")
        for f in ("state", "hostname", "addresses", "time"):
            t0 = time.monotonic()
            assert errno_of(gt.m.read, name, "guest", f) == errno.ENODATA
            assert time.monotonic() - t0 < 3
        with open(gt.m.path(name, "guest", "exec"), "r+b",
                  buffering=0) as f:
            assert errno_of(f.write, b"true") == errno.ENODATA
        assert gt.m.read(name, "state") == "running\n"
    finally:
        if vm:
            vm.kill()


def bash(script, timeout):
    return subprocess.run(["bash", "-c", script], capture_output=True,
                          text=True, timeout=timeout)


# Last for each driver: it powers the guest down.
def test_reboot_then_readme_power_down(gt):
    """reboot (direct: through the agent, guest-shutdown mode reboot): the
    guest comes back (its ready line again), events show the reset, and
    guest/state turns connected again by its events; then the README's
    "power down and wait until off", as written: libvirt's domain reads
    shutoff and stays, the direct QEMU (no -no-shutdown) leaves the tree."""
    m, n = gt.m, gt.name
    ready = gt.g.console_text().count(READY)
    assert "reboot" in m.read(n, "control").split()
    assert cat(gt, "state") == "connected\n"
    ev = subprocess.Popen(["cat", m.path(n, "events")],
                          stdout=subprocess.PIPE, text=True)
    try:
        sh(f"echo reboot > {m.path(n, 'control')}")
        gt.g.wait_ready(count=ready + 1)
        assert wait_agent_state(gt, "connected", timeout=60)
    finally:
        ev.kill()
        out = ev.communicate()[0]
    # The agent went away and came back; directly, QEMU's RESET too (the
    # guest reset itself).
    assert '"agent-lifecycle"' in out and "disconnected" in out, out
    if isinstance(gt, Direct):
        assert '"event":"RESET"' in out, out
    wait_for(lambda: errno_of(m.read, n, "guest", "hostname") == 0,
             timeout=30, what="the agent after the reboot")
    assert cat(gt, "hostname") == gt.oracle["hostname"]
    assert m.read(n, "state") == "running\n"
    script = readme_block("Power a VM down").replace(
        "/mnt/hv", m.dir).replace("droplet-1", n)
    p = bash(script, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    if isinstance(gt, Libvirt):
        assert virsh("domstate", n) == "shut off"
        assert m.read(n, "state") == "shutoff\n"
        assert errno_of(m.read, n, "guest", "hostname") == errno.ENODATA
    else:
        gt.g.proc.wait(timeout=30)
        assert n not in m.ls()
