# SPDX-License-Identifier: GPL-2.0-or-later
"""A libvirtd that asks for SASL, as a stock one does on TCP.

The module starts a private libvirtd (tests/libvirtd.sh) of its own with
auth_tcp = "sasl" and auth_unix_rw = "sasl", its own Cyrus SASL
configuration (mech_list digest-md5 scram-sha-256, read through
SASL_CONF_PATH: the host's /etc/sasl2 is never touched) and a sasldb made
here with saslpasswd2. Credentials are in libvirt's auth.conf format, passed
with authfile= in the URI, which virsh (the oracle) reads too.

Over TCP the daemon demands a security layer of at least 56 bits, so the
only mechanism it offers there is DIGEST-MD5 with its encryption (every
packet then goes through sasl_encode/sasl_decode); over the UNIX socket no
layer is wanted and the client picks SCRAM-SHA-256.
"""

import os
import subprocess

import pytest

from hvtest import (Libvirtd, assert_host_refused, define_domain,
                    remove_domain, virsh, wait_for)

PREFIX = "hvt-sasl-"
USER, PASSWORD = "hvfs-tester", "correct horse battery"
SLOW = 30


def write_sasl_conf(d, mechs):
    os.makedirs(os.path.join(d, "sasl2"), exist_ok=True)
    with open(os.path.join(d, "sasl2", "libvirt.conf"), "w") as f:
        f.write(f"mech_list: {mechs}\n"
                f"sasldb_path: {d}/sasl2/passwd.db\n")


def write_authfile(path, user, password, host="127.0.0.1"):
    with open(path, "w") as f:
        f.write(f"# libvirt auth.conf\n[credentials-test]\n"
                f"authname = {user}\npassword = {password}\n\n"
                f"[auth-libvirt-{host}]\ncredentials=test\n\n"
                f"[auth-libvirt-localhost]\ncredentials=test\n")


@pytest.fixture(scope="module")
def sasld(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("sasl-libvirtd"))
    write_sasl_conf(d, "digest-md5 scram-sha-256")
    subprocess.run(["saslpasswd2", "-p", "-c", "-a", "libvirt", "-f",
                    f"{d}/sasl2/passwd.db", USER], input=PASSWORD.encode(),
                   check=True)
    write_authfile(os.path.join(d, "auth.conf"), USER, PASSWORD)
    lv = Libvirtd(d, sasl=True)
    lv.start()
    yield lv
    lv.teardown()


@pytest.fixture
def sdomains(sasld):
    """sdomains(name, start=True): a domain on the SASL daemon."""
    made = []

    def make(name, start=True):
        name = PREFIX + name
        define_domain(name, uri=sasld.uri)
        made.append(name)
        if start:
            virsh("start", name, uri=sasld.uri)
        return name
    yield make
    for name in made:
        remove_domain(name, uri=sasld.uri)


def uris(lv):
    return {"tcp": lv.tcp_uri, "unix": lv.uri}


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_sasl_tree_matches_virsh(sdomains, mount, sasld, transport):
    on = sdomains("on")
    off = sdomains("off", start=False)
    uri = uris(sasld)[transport]
    m = mount("-c", uri, timeout=SLOW)
    assert m.read(".error") == ""
    assert m.ls() == sorted(virsh("list", "--all", "--name",
                                  uri=uri).split())
    for name in (on, off):
        # virsh says "shut off" for the tree's "shutoff"
        assert m.read(name, "state") == \
            virsh("domstate", name, uri=uri).replace(" ", "") + "\n"
        assert m.read(name, "uuid") == virsh("domuuid", name, uri=uri) + "\n"
    xml = m.read(on, "xml")
    assert f"<name>{on}</name>" in xml
    assert f"<uuid>{virsh('domuuid', on, uri=uri)}</uuid>" in xml
    # Control through the layer, seen by virsh; the event comes back.
    m.write("pause\n", on, "control")
    wait_for(lambda: virsh("domstate", on, uri=uri) == "paused",
             what="the pause over SASL")
    virsh("resume", on, uri=uri)
    wait_for(lambda: m.read(on, "state") == "running\n",
             what="the resume event over SASL")


def test_sasl_layer_carries_big_packets(mount, sasld, tmp_path):
    """Packets larger than the layer's buffer (64 KiB) both ways: a
    domain XML of about 300 KiB, defined with cp and read back."""
    name = PREFIX + "big"
    blob = "".join(f"line {i:06d} of a long description\n"
                   for i in range(8000))
    xml = tmp_path / "big.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name>"
                   "<memory unit='MiB'>32</memory>"
                   f"<description>{blob}</description>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>\n")
    m = mount("-c", sasld.tcp_uri, timeout=SLOW)
    try:
        subprocess.run(["cp", str(xml), m.path(".define")], check=True)
        assert blob in virsh("dumpxml", name, uri=sasld.tcp_uri)
        assert blob in m.read(name, "xml")
        assert m.read(name, "state") == "shutoff\n"
    finally:
        virsh("undefine", name, uri=sasld.uri, check=False)


def test_sasl_reconnects_after_restart(sdomains, mount, sasld):
    on = sdomains("back")
    m = mount("-c", sasld.tcp_uri, timeout=SLOW)
    assert m.read(on, "state") == "running\n"
    sasld.stop()
    try:
        wait_for(lambda: m.read(".error") != "", timeout=60,
                 what="the lost connection in .error")
    finally:
        sasld.start()
    wait_for(lambda: m.read(".error") == "" and on in m.ls(), timeout=90,
             what="the reconnect over SASL")
    assert m.read(on, "state") == "running\n"
    # Control and events work on the new connection's layer.
    m.write("pause\n", on, "control")
    wait_for(lambda: virsh("domstate", on, uri=sasld.uri) == "paused",
             what="the pause after the reconnect")
    virsh("resume", on, uri=sasld.uri)
    wait_for(lambda: m.read(on, "state") == "running\n",
             what="the resume event after the reconnect")


@pytest.mark.parametrize("case", ["wrong-password", "no-credentials",
                                  "no-authfile", "unknown-user"])
def test_sasl_refused_says_why(sdomains, mount, sasld, tmp_path, case):
    on = sdomains("ok")
    auth = str(tmp_path / "auth.conf")
    if case == "wrong-password":
        write_authfile(auth, USER, "wrong")
        says = "authentication failed"
    elif case == "unknown-user":
        write_authfile(auth, "nobody-here", PASSWORD)
        says = "authentication failed"
    elif case == "no-credentials":
        write_authfile(auth, USER, PASSWORD, host="elsewhere.example")
        with open(auth, "a") as f:
            f.write("[credentials-other]\nauthname=x\n")
        says = "no authname for host 127.0.0.1"
    else:
        auth = str(tmp_path / "missing.conf")
        says = "missing.conf"
    bad = f"qemu+tcp://127.0.0.1:{sasld.port}/system?authfile={auth}"
    if case != "no-credentials":
        # virsh refuses the same URI (a wrong password is no prompt).
        p = subprocess.run(["virsh", "-c", bad, "list"], capture_output=True,
                           text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert p.returncode != 0
    m = mount("-c", "bad=" + bad, "-c", "good=" + sasld.tcp_uri,
              timeout=SLOW)
    # The other host (the same daemon, right credentials) is served.
    assert_host_refused(m, "bad", "good", on, says, limit=10)
    assert m.read("good", ".error") == ""


def test_sasl_scram_only(sdomains, mount, sasld):
    """With SCRAM-SHA-256 the only mechanism: the UNIX socket works with
    it; TCP, where it gives no security layer, is refused clearly."""
    on = sdomains("scram")
    sasld.stop()
    write_sasl_conf(sasld.dir, "scram-sha-256")
    try:
        sasld.start()
        m = mount("-c", "unix=" + sasld.uri, "-c", "tcp=" + sasld.tcp_uri,
                  timeout=SLOW)
        assert m.read("unix", on, "state") == "running\n"
        assert m.read("unix", ".error") == ""
        err = m.read("tcp", ".error")
        assert "EACCES" in err and "SASL" in err, err
        p = subprocess.run(["virsh", "-c", sasld.tcp_uri, "list"],
                           capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=60)
        assert p.returncode != 0
    finally:
        sasld.stop()
        write_sasl_conf(sasld.dir, "digest-md5 scram-sha-256")
        sasld.start()
