# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu+tls:// as its users have it: a real libvirtd with listen_tls and
certificates made with certtool, laid out for libvirt's pkipath=.

The private libvirtd (tests/libvirtd.sh) listens for TLS on a loopback port
with a server certificate for localhost and 127.0.0.1 from the test CA, and
accepts only the client CN=hvfs-test-client (tls_allowed_dn_list). The bad
clients (another CA, an expired certificate, a stranger the CA signed) get
their own pkipath directories made here; hostile peers are tiny Python
servers. The oracle is virsh on the same URI. Nothing touches /etc/pki.
"""

import errno
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import remove_prefixed
from hvtest import errno_of, survives_libvirtd_restart, virsh, wait_for

PREFIX = "hvt-tls-"
# A TLS handshake with RSA keys on a loaded 2-core machine: seconds, not
# milliseconds; the read deadline covers connecting.
SLOW = 20


def certtool(*args):
    subprocess.run(["certtool", *args], check=True, capture_output=True)


def make_cert(d, name, template, ca_dir):
    """d/NAMEkey.pem and d/NAMEcert.pem, signed by the CA in ca_dir
    (ca-key.pem, cacert.pem)."""
    key, crt, tmpl = (os.path.join(d, name + s)
                      for s in ("key.pem", "cert.pem", ".tmpl"))
    with open(tmpl, "w") as f:
        f.write(template)
    certtool("--generate-privkey", "--key-type=rsa", "--bits=2048",
             "--outfile", key)
    certtool("--generate-certificate", "--load-privkey", key,
             "--load-ca-certificate", os.path.join(ca_dir, "cacert.pem"),
             "--load-ca-privkey", os.path.join(ca_dir, "ca-key.pem"),
             "--template", tmpl, "--outfile", crt)
    return key, crt


def client_dir(d, cacert, key, crt):
    """A pkipath= directory: cacert.pem, clientcert.pem, clientkey.pem."""
    os.makedirs(d)
    shutil.copy(cacert, os.path.join(d, "cacert.pem"))
    shutil.copy(crt, os.path.join(d, "clientcert.pem"))
    shutil.copy(key, os.path.join(d, "clientkey.pem"))
    return d


CLIENT = "tls_www_client\nencryption_key\nsigning_key\n"


@pytest.fixture(scope="module", autouse=True)
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


@pytest.fixture(scope="module")
def pki(tmp_path_factory, libvirtd):
    """pkipath directories: good (the libvirtd's own client), wrongca (a CA
    the server's certificate does not come from), expired (our CA, dates
    in the past), stranger (our CA, a DN the daemon does not allow); and
    othername, a server certificate from our CA for another host name."""
    d = str(tmp_path_factory.mktemp("pki"))
    ca = libvirtd.pki
    good = os.path.join(ca, "client")
    # Another CA with a client certificate of its own.
    other = os.path.join(d, "otherca")
    os.makedirs(other)
    certtool("--generate-privkey", "--key-type=rsa", "--bits=2048",
             "--outfile", os.path.join(other, "ca-key.pem"))
    with open(os.path.join(other, "ca.tmpl"), "w") as f:
        f.write('cn = "some other CA"\nca\ncert_signing_key\n'
                "expiration_days = 30\n")
    certtool("--generate-self-signed", "--load-privkey",
             os.path.join(other, "ca-key.pem"), "--template",
             os.path.join(other, "ca.tmpl"), "--outfile",
             os.path.join(other, "cacert.pem"))
    dirs = {"good": good}
    dirs["wrongca"] = client_dir(
        os.path.join(d, "wrongca"), os.path.join(other, "cacert.pem"),
        os.path.join(good, "clientkey.pem"),
        os.path.join(good, "clientcert.pem"))
    key, crt = make_cert(d, "expired", 'cn = "hvfs-test-client"\n' + CLIENT +
                         'activation_date = "2020-01-01 00:00:00"\n'
                         'expiration_date = "2020-02-01 00:00:00"\n', ca)
    dirs["expired"] = client_dir(os.path.join(d, "expired"),
                                 os.path.join(ca, "cacert.pem"), key, crt)
    key, crt = make_cert(d, "stranger", 'cn = "hvfs-test-stranger"\n' +
                         CLIENT + "expiration_days = 30\n", ca)
    dirs["stranger"] = client_dir(os.path.join(d, "stranger"),
                                  os.path.join(ca, "cacert.pem"), key, crt)
    dirs["othername"] = make_cert(
        d, "othername", 'cn = "other.example"\ndns_name = "other.example"\n'
        "tls_www_server\nencryption_key\nsigning_key\nexpiration_days = 30\n",
        ca)
    return dirs


def test_tls_tree_matches_virsh(domains, mount, libvirtd):
    on = domains("on")
    off = domains("off", start=False)
    uri = libvirtd.tls_uri
    m = mount("-c", uri, timeout=SLOW)
    assert m.ls() == sorted(virsh("list", "--all", "--name",
                                  uri=uri).split())
    for name, state in ((on, "running"), (off, "shutoff")):
        assert m.read(name, "state") == state + "\n"
        assert virsh("domstate", name, uri=uri) == {
            "shutoff": "shut off"}.get(state, state)
        assert m.read(name, "uuid") == virsh("domuuid", name,
                                             uri=uri) + "\n"
    for name in (on, off):
        assert m.read(name, "xml").strip() == virsh("dumpxml", name, uri=uri)
    # Control over TLS, seen by virsh; the event comes back over TLS.
    m.write("pause\n", on, "control")
    wait_for(lambda: virsh("domstate", on, uri=uri) == "paused",
             what="the pause through TLS")
    virsh("resume", on, uri=uri)
    wait_for(lambda: m.read(on, "state") == "running\n",
             what="the resume event through TLS")


def test_bare_qemu_uri_is_tls(domains, mount, libvirtd):
    """qemu://HOST/system is TLS, as libvirt reads it; virsh agrees."""
    on = domains("bare")
    uri = libvirtd.tls_uri_with(os.path.join(libvirtd.pki, "client"),
                                scheme="qemu")
    m = mount("-c", "bare=" + uri, "-c", "near=" + libvirtd.uri,
              timeout=SLOW)
    assert m.ls("bare") == sorted(virsh("list", "--all", "--name",
                                        uri=uri).split())
    assert m.read("bare", on, "state") == "running\n"
    assert m.read("bare", ".error") == ""


@pytest.mark.parametrize("which,says", [
    ("wrongca", "not trusted"),
    ("expired", "has expired"),
    ("stranger", "refused this client"),
    ("missing", "cacert.pem"),
])
def test_tls_refused_says_why(domains, mount, libvirtd, pki, which, says):
    on = domains("ok")
    path = pki.get(which, "/nonexistent/pki")
    uri = libvirtd.tls_uri_with(path)
    # virsh refuses it too.
    assert subprocess.run(["virsh", "-c", uri, "-q", "list"],
                          capture_output=True).returncode != 0
    m = mount("-c", "bad=" + uri, "-c", "good=" + libvirtd.uri,
              timeout=SLOW)
    assert m.ls("bad") == []
    err = m.read("bad", ".error")
    assert says in err and "EACCES" in err, err
    assert says in m.logtext()
    assert errno_of(m.read, "bad", on, "state") == errno.ENOENT
    # The other host is served meanwhile.
    t = time.monotonic()
    for _ in range(20):
        assert m.read("good", on, "state") == "running\n"
    assert time.monotonic() - t < 5


class Peer:
    """A hostile peer on 127.0.0.1: each connection gets `act(conn)`."""

    def __init__(self, act):
        self.act = act
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.run, args=(conn,),
                             daemon=True).start()

    def run(self, conn):
        try:
            self.act(conn)
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def closes_mid_handshake(conn):
    conn.recv(100)  # part of the ClientHello
    conn.close()


def garbage(conn):
    conn.recv(4096)
    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n" + os.urandom(2000))
    time.sleep(1)
    conn.close()


def silent(conn):
    time.sleep(60)


def tls_server(certkey, after):
    """A TLS server with certkey (key, cert) that then does after(tls)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certkey[1], certkey[0])

    def act(conn):
        tls = ctx.wrap_socket(conn, server_side=True)
        after(tls)
        time.sleep(5)
        tls.close()
    return act


def verdict_then_raw_garbage(tls):
    tls.sendall(b"\x01")
    time.sleep(0.2)
    # Bytes that are no TLS record, under the session.
    os.write(tls.fileno(), b"\x17\x03\x03\xff\xff" + os.urandom(500))


@pytest.mark.parametrize("kind,host,says,err", [
    ("closes", "127.0.0.1", "closed the connection", "ECONNRESET"),
    ("garbage", "127.0.0.1", "TLS handshake with 127.0.0.1 failed", "EPROTO"),
    ("silent", "127.0.0.1", "timed out", "ETIMEDOUT"),
    ("othername", "localhost", "does not match the host name localhost",
     "EACCES"),
    ("nullverdict", "127.0.0.1", "not libvirtd's 1", "EPROTO"),
    ("garbageafter", "127.0.0.1", "TLS 127.0.0.1", "EPROTO"),
])
def test_hostile_peer_fails_that_host_only(domains, mount, libvirtd, pki,
                                           kind, host, says, err):
    on = domains("calm")
    server = os.path.join(libvirtd.pki, "serverkey.pem"), \
        os.path.join(libvirtd.pki, "servercert.pem")
    acts = {
        "closes": closes_mid_handshake,
        "garbage": garbage,
        "silent": silent,
        "othername": tls_server(pki["othername"], lambda t: t.sendall(b"\1")),
        "nullverdict": tls_server(server, lambda t: t.sendall(b"\0")),
        "garbageafter": tls_server(server, verdict_then_raw_garbage),
    }
    peer = Peer(acts[kind])
    try:
        uri = f"qemu+tls://{host}:{peer.port}/system?pkipath={pki['good']}"
        t = time.monotonic()
        m = mount("-c", "bad=" + uri, "-c", "good=" + libvirtd.uri,
                  timeout=3)
        assert time.monotonic() - t < 20
        assert m.ls("bad") == []
        wait_for(lambda: err in m.read("bad", ".error"), timeout=20,
                 what=f"{err} in .error: " + m.read("bad", ".error"))
        assert says in m.read("bad", ".error"), m.read("bad", ".error")
        assert says in m.logtext()
        t = time.monotonic()
        for _ in range(20):
            assert m.read("good", on, "state") == "running\n"
        assert time.monotonic() - t < 5
        # Reads of the bad host fail within the deadline (3 s), whatever
        # the peer does.
        t = time.monotonic()
        assert errno_of(m.read, "bad", on, "state") == errno.ENOENT
        assert time.monotonic() - t < 12
        assert m.read("good", on, "state") == "running\n"
    finally:
        peer.close()


def test_tls_reconnects_after_libvirtd_restart(domains, mount, libvirtd):
    on = domains("back")
    m = mount("-c", "far=" + libvirtd.tls_uri, "-c", "near=" + libvirtd.uri,
              timeout=SLOW)
    survives_libvirtd_restart(m, "far", on, libvirtd, "TLS")
    m.write("pause\n", "far", on, "control")
    wait_for(lambda: virsh("domstate", on, uri=libvirtd.tls_uri) == "paused",
             what="the pause after the reconnect")
    virsh("resume", on, uri=libvirtd.tls_uri)


def test_tls_bad_uris(tmp_path):
    for uri in ("qemu+tls:///system", "qemu+tls://h/system?socket=/s",
                "qemu+tls://h/system?pkipath=",
                "qemu+tls://h/system?no_verify=2",
                "qemu+tls://h:99999/system"):
        p = subprocess.run([os.environ["HVFS_BIN"], "-f", "-c", uri,
                            str(tmp_path)], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode != 0, uri
        assert uri.split("?")[0] in p.stderr or "URI" in p.stderr, p.stderr
        assert not os.path.ismount(tmp_path)


def test_tls_host_hung_mid_session(domains, mount, libvirtd, qmp_dir, vms):
    """libvirtd stops answering (SIGSTOP) while the TLS session is up:
    reads of its domains fail within the deadline, a QMP VM in the same
    mount answers as before, and the host answers again once it runs."""
    on = domains("stall")
    vms("vm-local")
    m = mount("-c", "far=" + libvirtd.tls_uri, "--qmp-dir", qmp_dir,
              timeout=3)
    local = socket.gethostname()
    wait_for(lambda: m.read("far", on, "state") == "running\n" and
             m.read(local, "vm-local", "state") == "running\n",
             what="both hosts: " + str(m.ls()))
    pid = libvirtd.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        e = errno_of(m.read, "far", on, "xml")
        assert e in (errno.ETIMEDOUT, errno.ENOTCONN), e
        assert time.monotonic() - t < 3 + 5
        t = time.monotonic()
        for _ in range(20):
            assert m.read(local, "vm-local", "state") == "running\n"
        assert time.monotonic() - t < 5
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: m.read("far", on, "xml").startswith("<domain"),
             timeout=60, what="the TLS host again")
