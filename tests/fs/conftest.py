# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures shared by the mounted-tree tests."""

import os
import signal
import stat
import subprocess
import tempfile

import pytest

from hvtest import (LIBVIRTD, Mount, Qemu, User, define_domain,
                    remove_domain, virsh)


@pytest.fixture
def qmp_dir():
    """A directory for QMP sockets, readable by other users too."""
    d = tempfile.mkdtemp(prefix="hvfs-qmp-")
    os.chmod(d, 0o755)
    yield d
    subprocess.run(["rm", "-rf", d])


@pytest.fixture
def vms(qmp_dir):
    """vms(name, *extra_qemu_args) starts a bare QEMU in qmp_dir."""
    started = []

    def start(name, *extra):
        vm = Qemu(qmp_dir, name, extra)
        started.append(vm)
        return vm
    yield start
    for vm in started:
        if vm.alive():
            os.kill(vm.proc.pid, signal.SIGCONT)
        vm.kill()


@pytest.fixture
def mount():
    """mount(*hvfs_args, timeout=None) mounts hvfs; each mount must unmount
    cleanly and the daemon exit 0 at the end of the test."""
    mounts = []

    def make(*args, **kw):
        m = Mount(*args, **kw)
        mounts.append(m)
        return m
    yield make
    for m in mounts:
        assert m.umount() == 0, m.logtext()


@pytest.fixture(scope="session")
def libvirtd():
    """The tests' private libvirtd (hvtest.Libvirtd: .uri, .tcp_uri, .sock,
    .port, .start(), .stop()), running. The one tests/run.sh started is
    used as it is; otherwise one is started for this session and torn down
    (its domains destroyed) at its end. Never the host's libvirtd."""
    own = "HVFS_TEST_LIBVIRTD" not in os.environ and LIBVIRTD.pid() is None
    LIBVIRTD.start()
    yield LIBVIRTD
    if own:
        LIBVIRTD.teardown()


@pytest.fixture(scope="module")
def user():
    """An unprivileged user (hvtest.User) with a temporary home; /dev/fuse
    has the 0666 mode of a stock Debian host meanwhile (restored after)."""
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o666)
    u = User()
    try:
        yield u
    finally:
        os.chmod("/dev/fuse", mode)
        subprocess.run(["rm", "-rf", u.home])


def remove_prefixed(prefix, uri=None):
    """Removes the libvirt domains a test module left behind."""
    for name in virsh("list", "--all", "--name", uri=uri).split():
        if name.startswith(prefix):
            remove_domain(name)


@pytest.fixture
def domains(request, libvirtd):
    """domains(name, start=True) defines (and starts) a small libvirt
    domain called PREFIX + name, PREFIX being the test module's; all are
    removed at the end of the test."""
    prefix = request.module.PREFIX
    made = []

    def make(name, start=True):
        name = prefix + name
        define_domain(name)
        made.append(name)
        if start:
            virsh("start", name)
        return name
    yield make
    for name in made:
        remove_domain(name)
