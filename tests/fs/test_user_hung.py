# SPDX-License-Identifier: GPL-2.0-or-later
"""A hung VM, as a shell user meets it: many `cat` and `ls` in the
background (`&`, `wait`) on a SIGSTOPped QEMU. Every reader fails with
ETIMEDOUT within the deadline (plus a margin), however many wait; readers
of another VM get their answers at once meanwhile; after SIGCONT the hung
VM answers again within 2 s. On both drivers."""

import os
import re
import signal
import subprocess
import time

import pytest

from hvtest import LIBVIRTD, virsh, wait_for

PREFIX = "hvfs-hung-"
TIMEOUT = 2
MARGIN = 1.5       # the deadline plus this, for every reader
# A reader of a VM that answers: the median well under a second, none near
# the deadline (which waiting for the hung one would cost), on a loaded host.
QUICK_MEDIAN = 0.5
QUICK_MAX = TIMEOUT - 0.5

# One bash job per command in the background, timed; then, while they wait,
# the other VM's files read one after another, each timed too.
SCRIPT = r'''
cd "$1"; shift
err=$(mktemp -d)
trap 'rm -rf "$err"' EXIT
job() {  # timed with bash's own clock: no fork but the command's
    local t0=$EPOCHREALTIME t1 rc msg=
    eval "$1" >/dev/null 2>"$err/$3"; rc=$?
    t1=$EPOCHREALTIME
    read -r msg <"$err/$3"
    printf '%s\t%d\t%d\t%s\n' "$2" "$rc" \
        $(( (10#${t1/./} - 10#${t0/./}) / 1000 )) "$msg"
}
i=0
while [ "$1" != -- ]; do i=$((i + 1)); job "$1" hung $i & shift; done
shift
end=$(( ${EPOCHSECONDS} + 3 ))
while [ "$EPOCHSECONDS" -lt "$end" ]; do
    for c in "$@"; do job "$c" ok ok; done
done
wait
'''


def wave(mnt, hung_cmds, ok_cmds=()):
    """Runs hung_cmds all at once in the background and ok_cmds in a loop
    meanwhile (for 3 s); returns ({'hung': [...], 'ok': [...]}) of
    (rc, ms, message, ...) per run."""
    p = subprocess.run(["bash", "-c", SCRIPT, "wave", mnt, *hung_cmds, "--",
                        *ok_cmds], capture_output=True, text=True,
                       timeout=120)
    out = {"hung": [], "ok": []}
    for line in p.stdout.splitlines():
        kind, rc, ms, msg = (line.split("\t") + [""])[:4]
        out[kind].append((int(rc), int(ms) / 1000, msg))
    return out


def warm(mnt, cmds):
    """Runs cmds once, so that the wave times the answers, not first
    fetches (a QEMU's schema takes a while on a loaded host)."""
    for c in cmds:
        subprocess.run(["bash", "-c", c], cwd=mnt, capture_output=True,
                       timeout=60)


def check_wave(out, n, ok_cmds):
    hung = out["hung"]
    assert len(hung) == n, out
    for rc, secs, msg in hung:
        assert rc != 0 and "Connection timed out" in msg, hung
        assert secs < TIMEOUT + MARGIN, hung
    assert len(out["ok"]) >= len(ok_cmds), out
    for rc, secs, msg in out["ok"]:
        assert rc == 0, out["ok"]
        assert secs < QUICK_MAX, out["ok"]
    secs = sorted(secs for _, secs, _ in out["ok"])
    assert secs[len(secs) // 2] < QUICK_MEDIAN, out["ok"]


def answers_again(mnt, rel, within=2.0):
    """After SIGCONT, the hung VM answers `cat rel` within `within` s."""
    t0 = time.monotonic()
    while True:
        p = subprocess.run(["cat", os.path.join(mnt, rel)],
                           capture_output=True, text=True)
        if p.returncode == 0:
            return time.monotonic() - t0
        assert "Connection timed out" in p.stderr, p.stderr
        assert time.monotonic() - t0 < within, p.stderr
        time.sleep(0.05)


# ---- direct QMP ----

def test_qmp_readers_of_a_hung_vm(qmp_dir, vms, mount):
    """6 and 12 readers of query/status of a QEMU stopped after the mount,
    before its query list was fetched; ls query/ and cpus too."""
    hung = vms("vm-hung")
    vms("vm-ok")
    m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    wait_for(lambda: m.read("vm-hung", "state") == "running\n" and
             m.read("vm-ok", "state") == "running\n", what="both running")
    ok_cmds = ["cat vm-ok/query/status", "cat vm-ok/cpus",
               "cat vm-ok/version", "ls vm-ok/query"]
    warm(m.dir, ok_cmds)
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        for n in (6, 12):
            out = wave(m.dir, ["cat vm-hung/query/status"] * n, ok_cmds)
            check_wave(out, n, ok_cmds)
        mixed = (["cat vm-hung/query/status", "ls vm-hung/query",
                  "cat vm-hung/cpus", "cat vm-hung/query/name"] * 3)
        check_wave(wave(m.dir, mixed, ok_cmds), len(mixed), ok_cmds)
        error = m.read("vm-hung", "error")
        assert "not responding" in error and "(ETIMEDOUT)" in error, error
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
    answers_again(m.dir, "vm-hung/query/status")
    assert '"running"' in m.read("vm-hung", "query", "status")
    m.read("vm-hung", "cpus")  # -machine none: no CPUs, but an answer


def test_qmp_vm_stopped_before_the_mount(qmp_dir, vms, mount):
    """Nothing of it was ever fetched, its greeting never read: `cat
    version`, query/status and state of it all fail in time, whatever the
    number of readers, and a second VM does not wait for it."""
    hung = vms("vm-hung")
    ok = vms("vm-ok")
    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
        # The mount waits for the hung VM one deadline at most.
        assert time.monotonic() - t0 < TIMEOUT + 3
        assert m.read("vm-ok", "state") == "running\n"
        ok_cmds = ["cat vm-ok/version", "cat vm-ok/query/status",
                   "cat vm-ok/state"]
        warm(m.dir, ok_cmds)
        cmds = (["cat vm-hung/version", "cat vm-hung/query/status",
                 "cat vm-hung/cpus"] * 4)
        check_wave(wave(m.dir, cmds, ok_cmds), len(cmds), ok_cmds)
        # A QEMU started meanwhile is found, while the hung one still is.
        vms("vm-new")
        wait_for(lambda: "vm-new" in m.ls(), timeout=TIMEOUT + 3,
                 what="vm-new in the tree")
        assert m.read("vm-new", "state") == "running\n"
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)
    answers_again(m.dir, "vm-hung/version")
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", m.read("vm-hung", "version"))
    assert '"running"' in m.read("vm-hung", "query", "status")
    assert ok.status() == "running"


# ---- libvirt ----

def qemu_pid(name):
    """The PID of the QEMU of libvirt domain `name`: the pidfile of the
    tests' private libvirtd (its /run/libvirt is DIR/run), checked against
    the process's command line."""
    with open(os.path.join(LIBVIRTD.dir, "run", "qemu", name + ".pid")) as f:
        pid = int(f.read().strip())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f"guest={name},".encode() in f.read()
    return pid


def test_libvirt_readers_of_a_hung_domain(domains, mount):
    """A domain whose QEMU is SIGSTOPped: libvirtd's monitor call for it
    hangs, the connection stays alive. Its readers fail in time; another
    domain's readers do not wait."""
    hung = domains("a")
    ok = domains("b")
    m = mount("-c", LIBVIRTD.uri, timeout=TIMEOUT)
    wait_for(lambda: hung in m.ls() and ok in m.ls(), what="domains")
    assert m.read(ok, "state") == "running\n"
    pid = qemu_pid(hung)
    ok_cmds = [f"cat {ok}/query/status", f"cat {ok}/state",
               f"cat {ok}/cpus"]
    warm(m.dir, ok_cmds)
    os.kill(pid, signal.SIGSTOP)
    try:
        for n in (6, 12):
            out = wave(m.dir, [f"cat {hung}/query/status"] * n, ok_cmds)
            check_wave(out, n, ok_cmds)
        mixed = [f"ls {hung}/query", f"cat {hung}/cpus",
                 f"cat {hung}/query/name"] * 3
        check_wave(wave(m.dir, mixed, ok_cmds), len(mixed), ok_cmds)
        error = m.read(hung, "error")
        assert "not responding" in error and "(ETIMEDOUT)" in error, error
        # libvirtd answers what it knows without the QEMU.
        assert m.read(hung, "state") == "running\n"
        assert virsh("domstate", hung) == "running"
    finally:
        os.kill(pid, signal.SIGCONT)
    answers_again(m.dir, f"{hung}/query/status")
    assert '"running"' in m.read(hung, "query", "status")


def test_libvirt_many_readers_of_a_hung_domain(domains, mount):
    """24 readers at once of a domain whose QEMU was just stopped, before
    anything marked it: libvirtd must not spend every worker thread on it,
    so another domain's readers still get their answers."""
    hung = domains("a")
    ok = domains("b")
    m = mount("-c", LIBVIRTD.uri, timeout=TIMEOUT)
    wait_for(lambda: hung in m.ls() and ok in m.ls(), what="domains")
    pid = qemu_pid(hung)
    ok_cmds = [f"cat {ok}/cpus", f"cat {ok}/query/name"]
    warm(m.dir, ok_cmds)
    os.kill(pid, signal.SIGSTOP)
    try:
        cmds = [f"cat {hung}/cpus", f"cat {hung}/memory"] * 12
        check_wave(wave(m.dir, cmds, ok_cmds), len(cmds), ok_cmds)
    finally:
        os.kill(pid, signal.SIGCONT)
    answers_again(m.dir, f"{hung}/cpus")
