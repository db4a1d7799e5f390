# SPDX-License-Identifier: GPL-2.0-or-later
"""A host of many domains (issue 18), the way its admin meets it: the mount
shows every domain in its right state at once, from the bulk listing, and a
state that changes while hvfs lists the host is never lost. Libvirt's test
driver in the tests' private libvirtd is the peer, `virsh` the oracle."""

import os
import tempfile
import threading
import time

from hvtest import LIBVIRTD, HvMock, sh, virsh, wait_for

PREFIX = "hvt-fleet-"
NS = "http://libvirt.org/schemas/domain/test/1.0"
# The test driver's runstates (libvirt's virDomainState).
RUNSTATES = {"running": 1, "paused": 3, "shutoff": 5, "crashed": 6,
             "pmsuspended": 7}
VIRSH_STATES = {"running": "running", "paused": "paused",
                "shut off": "shutoff", "crashed": "crashed",
                "pmsuspended": "pmsuspended"}


def node_file(path, states):
    """A test driver node file: one domain per state, uuids fixed (the
    driver reads the file afresh for every connection)."""
    with open(path, "w") as f:
        f.write("<node>\n")
        for i, s in enumerate(states):
            f.write(f"<domain type='test' xmlns:test='{NS}'>"
                    f"<name>{PREFIX}{i:04d}</name>"
                    f"<uuid>00000000-0000-4000-8000-{i:012d}</uuid>"
                    "<memory>8192</memory><vcpu>1</vcpu>"
                    "<os><type>hvm</type></os>"
                    f"<test:runstate>{RUNSTATES[s]}</test:runstate>"
                    "</domain>\n")
        f.write("</node>\n")


def parse_states(out):
    return [VIRSH_STATES[line.strip()] for line in out.splitlines()
            if line.strip()]


def test_states_at_mount_are_virsh_states(libvirtd, mount):
    """Running, paused, shut off, crashed and pmsuspended domains read right
    the moment the mount appears: `ls` is `virsh list --all --name`, and
    `cat */state`, `cat */uuid` say what `virsh domstate`, `virsh domuuid`
    say over the same URI."""
    kinds = ["running", "paused", "shutoff", "running", "crashed",
             "running", "pmsuspended", "paused", "shutoff", "running"]
    states = [kinds[i % len(kinds)] for i in range(400)]
    work = tempfile.mkdtemp(prefix="hvfs-fleet-")
    xml = os.path.join(work, "node.xml")
    node_file(xml, states)
    uri = f"test+unix://{xml}?socket={LIBVIRTD.sock}"
    try:
        m = mount("-c", uri)
        names = sorted(virsh("list", "--all", "--name", uri=uri).split())
        assert len(names) == len(states)
        assert m.ls() == names
        cat = sh(f"cd {m.dir} && cat "
                 + " ".join(n + "/state" for n in names))[1]
        want = parse_states(virsh(" ; ".join(f"domstate {n}" for n in names),
                                  uri=uri))
        assert cat.split() == want
        assert want == states  # virsh agrees with the file
        uuids = sh(f"cd {m.dir} && cat */uuid")[1].split()
        assert uuids == virsh(" ; ".join(f"domuuid {n}" for n in names),
                              uri=uri).split()
    finally:
        sh(f"rm -rf {work}")


def test_state_changed_while_listing_is_not_lost(tmp_path, mount):
    """A domain pauses while hvfs lists the host at mount: the listing's
    word (running) is older than the pause's event and must not win.
    libvirt itself races so, but rarely; a small scripted libvirtd makes
    the timing certain: each listing call is answered 1 s late, and the
    pause comes after the last list that could see it was made. The other
    domains' states and uuids come from the listing alone: asking their
    state or uuid one by one fails."""
    sock = str(tmp_path / "libvirt-sock")
    others = [f"{PREFIX}o{i}" for i in range(3)]
    script = [f"domain {PREFIX}x running", f"domain {others[0]} running",
              f"domain {others[1]} paused", f"domain {others[2]} shutoff",
              "fault connect-list-all-domains late 1000"]
    for d in others:
        script += [f"fault get-state@{d} error 1 asked one by one",
                   f"fault lookup-by-name@{d} error 1 asked one by one"]
    mock = HvMock("libvirt", sock, "\n".join(script) + "\n")
    box = []
    try:
        t = threading.Thread(target=lambda: box.append(
            mount("-c", f"qemu+unix:///system?socket={sock}", timeout=10)))
        t.start()
        # The listing of every domain and of the paused ones were made
        # (their late answers are on their way): now x pauses.
        wait_for(lambda: mock.lines.count("fault connect-list-all-domains")
                 >= 2, what="two list calls")
        mock.tell(f"domain {PREFIX}x paused")
        mock.tell(f"event {PREFIX}x 3 0")  # VIR_DOMAIN_EVENT_SUSPENDED
        t.join()
        m = box[0]
        assert m.read(f"{PREFIX}x", "state") == "paused\n"
        time.sleep(1)
        assert m.read(f"{PREFIX}x", "state") == "paused\n"
        cat = sh(f"cd {m.dir} && cat "
                 + " ".join(d + "/state" for d in others))[1]
        assert cat.split() == ["running", "paused", "shutoff"]
        uuids = sh(f"cd {m.dir} && cat "
                   + " ".join(d + "/uuid" for d in others))[1]
        assert len(uuids.split()) == 3
        assert "asked one by one" not in m.logtext()
        assert not [l for l in mock.lines if "get-state" in l or
                    "lookup-by-name" in l], mock.lines
    finally:
        mock.close()
