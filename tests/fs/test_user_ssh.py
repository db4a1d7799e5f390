# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu+ssh:// as its users have it: a real sshd, real keys, known_hosts.

The test starts a private sshd on a free 127.0.0.1 port (sshd.py: its own
config, host key and authorized key, made with ssh-keygen, and an `ssh`
first on PATH that adds the client's config); the remote end is this
machine, reaching the tests' private libvirtd with socket= (so netcat runs
there). The oracle is virsh on the same daemon.
"""

import os
import subprocess
import time

import pytest

from conftest import remove_prefixed
from hvtest import (assert_host_refused, survives_libvirtd_restart,
                    virsh, wait_for)
from sshd import Sshd

PREFIX = "hvt-ssh-"
# An ssh login takes seconds on a loaded 2-core machine; the read deadline
# covers connecting, so the mounts get a generous one.
SLOW = 30


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, libvirtd):
    remove_prefixed(PREFIX)
    s = Sshd(str(tmp_path_factory.mktemp("sshd")))
    yield s
    s.close()
    remove_prefixed(PREFIX)


@pytest.fixture(autouse=True)
def client_path(sshd, monkeypatch):
    monkeypatch.setenv("PATH", sshd.bin + ":" + os.environ["PATH"])


def ssh_children(pid):
    """The ssh processes hvfs (pid) started, with their states."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid and "ssh" in st[:st.rindex(")")]:
            out.append(fields[0])
    return out


def test_ssh_tree_matches_virsh(domains, mount, sshd, libvirtd):
    on = domains("on")
    off = domains("off", start=False)
    m = mount("-c", sshd.uri("good", libvirtd.sock), timeout=SLOW)
    oracle = libvirtd.uri
    assert m.ls() == sorted(virsh("list", "--all", "--name",
                                  uri=oracle).split())
    for name, state in ((on, "running"), (off, "shutoff")):
        assert m.read(name, "state") == state + "\n"
        assert m.read(name, "uuid") == virsh("domuuid", name,
                                             uri=oracle) + "\n"
    assert "<name>%s</name>" % on in m.read(on, "xml")
    # Control over ssh, seen by virsh; the event comes back over ssh.
    m.write("pause\n", on, "control")
    wait_for(lambda: virsh("domstate", on, uri=oracle) == "paused",
             what="the pause through ssh")
    virsh("resume", on, uri=oracle)
    wait_for(lambda: m.read(on, "state") == "running\n",
             what="the resume event through ssh")
    # One ssh child, alive; none left as a zombie.
    kids = ssh_children(m.proc.pid)
    assert kids == ["S"] or kids == ["R"], kids


def test_ssh_reconnects_after_libvirtd_restart(domains, mount, sshd,
                                               libvirtd):
    on = domains("back")
    m = mount("-c", "far=" + sshd.uri("good", libvirtd.sock),
              "-c", "near=" + libvirtd.uri, timeout=SLOW)
    survives_libvirtd_restart(m, "far", on, libvirtd, "ssh")
    # Old children are reaped: one ssh left, no zombie.
    wait_for(lambda: ssh_children(m.proc.pid) in (["S"], ["R"]),
             what="one live ssh child")


@pytest.mark.parametrize("host,says", [
    ("badhost", "host key"),
    ("badkey", "Permission denied"),
])
def test_ssh_refused_says_why(domains, mount, sshd, libvirtd, host, says):
    on = domains("ok")
    m = mount("-c", "bad=" + sshd.uri(host, libvirtd.sock),
              "-c", "good=" + libvirtd.uri, timeout=SLOW)
    # The other host is served meanwhile.
    assert_host_refused(m, "bad", "good", on, says)
    # The failed children are reaped.
    assert "Z" not in ssh_children(m.proc.pid)


def test_ssh_bad_uris(tmp_path):
    for uri in ("qemu+ssh:///system", "qemu+ssh://-oProxyCommand=x/system",
                "qemu+ssh://h/system?proxy=magic",
                "qemu+ssh://h/system?no_verify=yes",
                "qemu+ssh://h/system?bogus=1"):
        p = subprocess.run([os.environ["HVFS_BIN"], "-f", "-c", uri,
                            str(tmp_path)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0, uri
        assert uri.split("?")[0] in p.stderr or "URI" in p.stderr, p.stderr
        assert not os.path.ismount(tmp_path)


def test_hung_ssh_child_within_deadline(domains, mount, libvirtd, tmp_path,
                                        monkeypatch):
    """An ssh that never answers and ignores SIGTERM: reads of that host
    fail within the deadline, the other host is served, and the child is
    killed and reaped (no zombie) on reconnect and unmount."""
    on = domains("hung")
    hung = tmp_path / "bin"
    hung.mkdir()
    (hung / "ssh").write_text("#!/bin/sh\ntrap '' TERM\nexec sleep 600\n")
    (hung / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{hung}:{os.environ['PATH']}")
    m = mount("-c", "hung=qemu+ssh://nowhere/system",
              "-c", "good=" + libvirtd.uri, timeout=2)
    t = time.monotonic()
    assert m.ls("hung") == []
    assert time.monotonic() - t < 15
    wait_for(lambda: "ETIMEDOUT" in m.read("hung", ".error"), timeout=20,
             what="the hung ssh in .error")
    for _ in range(20):
        assert m.read("good", on, "state") == "running\n"
    assert "Z" not in ssh_children(m.proc.pid) and \
        "Z" not in [s for s in sleep_children(m.proc.pid)]
    pid = m.proc.pid
    assert m.umount() == 0
    assert sleep_children(pid) == []


def sleep_children(pid):
    """The states of pid's children running sleep (the hung ssh)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid and "(sleep)" in st:
            out.append(fields[0])
    return out
