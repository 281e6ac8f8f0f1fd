"""The URL guard: its decisions (no connection made), and fetches through it on loopback.

NETWORK RULE: refusals of non-loopback ranges are tested by the guard's decision, which is
made before any connection; the only servers these tests talk to listen on 127.0.0.0/8.
"""

from __future__ import annotations

import ipaddress
import socket
from types import SimpleNamespace

import pytest

from providers.download import fetch_bytes, open_result
from providers.errors import InvalidInput, ProviderUnavailable, ResolverUnavailable, TransientError
from providers.urlguard import (
    UrlGuard,
    UrlPolicy,
    address_problem,
    guarded_session,
    parse_ip_literal,
    strip_credentials,
)

PUBLIC = "93.184.216.34"
SETTINGS = SimpleNamespace(http_connect_timeout_s=1.0, http_read_timeout_s=2.0,
                           download_max_bytes=1024 * 1024)


class FakeResolver:
    """A resolver hook: each name answers from a list, one answer per lookup (last repeats)."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


def no_network(host: str, port: int) -> list[str]:
    raise AssertionError(f"the decision looked up {host}: it must not need DNS")


# --- The decision matrix: every refusal is made before any connection ---------------------

HOSTILE = [
    # (URL, words the refusal must name)
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7f.0x0.0x0.0x1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST:8080/x.jpg", "loopback"),
    ("http://foo.localhost/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:7f00:1]/", "IPv4-mapped"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[2002:7f00:1::]/", "6to4"),
    ("http://[2002:a9fe:a9fe::]/", "6to4"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "Teredo"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://2852039166/", "metadata"),
    ("http://0251.0376.0251.0376/", "metadata"),
    ("http://169.254.170.2/v2/credentials", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.1/", "private"),
    ("http://10.1/", "private"),
    ("http://172.16.5.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fd12:3456::1]/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://192.0.2.1/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://[2001:db8::1]/", "reserved"),
    ("http://[fe80::1%25eth0]/", "zone|disagree"),
    ("http://127.0.0.1%09.example.com/", "percent-encod"),
    ("http://127.0.0.1\\@example.com/", "backslash"),
    ("http://127.0.0.1:80\\@example.com/", "backslash"),
    ("http://1.2.3.4.5/", "malformed numeric"),
    ("http://08.0.0.1/", "malformed numeric"),
    ("http://256.0.0.1/", "malformed numeric"),
    ("http://0x/", "malformed numeric"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "scheme"),
    ("ftp://example.com/a.jpg", "scheme"),
    ("dict://127.0.0.1:11211/", "scheme"),
    ("//example.com/a.jpg", "scheme"),
    ("http:///a.jpg", "no host"),
    ("http://exa mple.com/a.jpg", "spaces or control"),
    ("http://example.com/a.jpg\r\nX-Injected: 1", "spaces or control"),
    ("http://example.com:99999/", "bad port"),
    ("http://exa$mple.com/", "not a valid host name"),
]


def test_matrix_has_at_least_30_hostile_urls():
    assert len(HOSTILE) >= 30


@pytest.mark.parametrize(("url", "rule"), HOSTILE)
def test_hostile_url_refused_before_any_lookup(url, rule):
    guard = UrlGuard(UrlPolicy(), resolver=no_network)
    with pytest.raises(InvalidInput, match=rule) as caught:
        guard.check(url)
    assert caught.value.code == "invalid_input"
    assert caught.value.message.startswith("URL refused:")


@pytest.mark.parametrize(("answer", "rule"), [
    (["127.0.0.1"], "loopback"),
    (["169.254.169.254"], "metadata"),
    (["10.2.3.4"], "private"),
    (["::ffff:10.0.0.1"], "IPv4-mapped"),
    (["100.64.3.3"], "carrier-grade NAT"),
    ([PUBLIC, "192.168.0.10"], "private"),  # every address is checked, not the first
    (["2606:2800:220:1::1", "fe80::2"], "link-local"),
])
def test_name_resolving_to_forbidden_address_refused(answer, rule):
    guard = UrlGuard(UrlPolicy(), resolver=FakeResolver({"images.example": [answer]}))
    with pytest.raises(InvalidInput, match=rule) as caught:
        guard.check("https://images.example/cat.jpg")
    assert "images.example means" in caught.value.message


def test_public_addresses_pass():
    guard = UrlGuard(UrlPolicy(), resolver=FakeResolver(
        {"images.example": [[PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]]}))
    checked = guard.check("https://user@images.example:8443/a.jpg?x=1")
    assert checked.port == 8443
    assert [str(a) for a in checked.addresses] == [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]
    assert UrlGuard(resolver=no_network).check(f"http://{PUBLIC}/").addresses == (
        ipaddress.ip_address(PUBLIC),)


def test_international_host_names_are_checked_as_idna():
    resolver = FakeResolver({"xn--bcher-kva.example": [[PUBLIC]],
                             "xn--mnchen-3ya.example": [["10.0.0.1"]]})
    guard = UrlGuard(UrlPolicy(), resolver=resolver)
    assert guard.check("https://Bücher.example/a.jpg").host == "xn--bcher-kva.example"
    with pytest.raises(InvalidInput, match="private"):
        guard.check("https://München.example/a.jpg")


def test_unresolvable_host_refused_with_its_name():
    guard = UrlGuard(UrlPolicy(), resolver=FakeResolver({}))
    with pytest.raises(InvalidInput, match="nowhere.example does not resolve"):
        guard.check("http://nowhere.example/a.jpg")


def test_a_resolver_that_cannot_answer_now_is_transient_not_a_refusal():
    def failing(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with pytest.raises(ResolverUnavailable, match="images.example could not be resolved") as info:
        UrlGuard(UrlPolicy(), resolver=failing).check("https://images.example/a.jpg")
    assert isinstance(info.value, TransientError) and not isinstance(info.value, InvalidInput)


@pytest.mark.parametrize(("literal", "address"), [
    ("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"), ("10.1.2", "10.1.0.2"), ("0x0", "0.0.0.0"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"), ("images.example", None), ("1e100.net", None),
])
def test_ip_literals_read_as_inet_aton_reads_them(literal, address):
    parsed = parse_ip_literal(literal)
    assert (str(parsed) if parsed else None) == address
    if address and ":" not in literal:  # the C library agrees
        assert socket.inet_aton(literal) == ipaddress.ip_address(address).packed


# --- What an operator opens -------------------------------------------------------------


def test_allow_private_opens_loopback_private_cgnat_only():
    policy = UrlPolicy(allow_private=True)
    for open_ in ("127.0.0.1", "::1", "10.0.0.1", "192.168.1.1", "fd00::1", "100.64.0.1"):
        assert address_problem(ipaddress.ip_address(open_), policy) is None, open_
    for closed in ("169.254.169.254", "169.254.1.1", "fe80::1", "0.0.0.0", "224.0.0.1",
                   "::ffff:127.0.0.1", "240.0.0.1"):
        assert address_problem(ipaddress.ip_address(closed), policy), closed


def test_allowlist_of_networks_and_hosts():
    policy = UrlPolicy.parse(False, ["127.0.0.1", "10.8.0.0/16", "sandbox", ".corp.example"])
    resolver = FakeResolver({"sandbox": [["172.18.0.5"]], "s3.corp.example": [["10.9.0.1"]],
                             "other": [["172.18.0.6"]]})
    guard = UrlGuard(policy, resolver=resolver)
    guard.check("http://127.0.0.1:9000/x")
    guard.check("http://10.8.3.4/x")
    guard.check("http://sandbox:8080/result.png")
    guard.check("http://s3.corp.example/bucket/x")  # sub-domain entry: its addresses open
    for refused in ("http://127.0.0.2/", "http://10.9.0.1/", "http://other/"):
        with pytest.raises(InvalidInput):
            guard.check(refused)


def test_allowlisted_host_never_opens_metadata_unless_a_cidr_names_it():
    resolver = FakeResolver({"sandbox": [["169.254.169.254"]]})
    with pytest.raises(InvalidInput, match="metadata"):
        UrlGuard(UrlPolicy.parse(True, ["sandbox"]), resolver=resolver).check("http://sandbox/")
    UrlGuard(UrlPolicy.parse(False, ["169.254.169.254/32"]), resolver=resolver).check(
        "http://sandbox/")


def test_bad_allowlist_entry_is_a_start_up_error():
    with pytest.raises(ValueError, match="neither a CIDR"):
        UrlPolicy.parse(False, ["10.0.0.0/33x"])


def test_credentials_stripped_from_urls():
    assert strip_credentials("https://u:p%40ss@h.example:8/a.jpg?q=1") == "https://h.example:8/a.jpg?q=1"
    assert strip_credentials("https://h.example/a@b.jpg") == "https://h.example/a@b.jpg"


# --- Fetching through the guard (real HTTP, loopback only) ---------------------------------


def loopback_guard(resolver=no_network, **kwargs) -> UrlGuard:
    return UrlGuard(UrlPolicy.parse(False, ["127.0.0.1"], **kwargs), resolver=resolver)


def test_fetch_through_guard_reaches_allowlisted_loopback(canned):
    canned.add(200, b"image-bytes", headers={"Content-Type": "image/png"})
    session = guarded_session(loopback_guard())
    assert fetch_bytes(session, "hitpaw", canned.base_url + "/a.png", 100, SETTINGS) == b"image-bytes"


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/", "http://10.0.0.1/", "http://[::1]:1/",
    "http://127.0.0.2:{port}/", "http://0x7f000002:{port}/", "file:///etc/passwd",
])
def test_redirect_into_forbidden_range_refused_before_connecting(canned, target):
    canned.add(302, "", headers={"Location": target.format(port=canned.base_url.rsplit(":", 1)[1])})
    session = guarded_session(loopback_guard())
    with pytest.raises(InvalidInput, match="URL refused"):
        fetch_bytes(session, "picwish", canned.base_url + "/start", 100, SETTINGS)
    assert [r.path for r in canned.received] == ["/start"]  # nothing else was asked of it


def test_redirects_are_bounded(canned):
    for _ in range(5):
        canned.add(302, "", headers={"Location": "/again"})
    session = guarded_session(loopback_guard(max_redirects=3))
    with pytest.raises(InvalidInput, match="more than 3 redirects"):
        fetch_bytes(session, "picwish", canned.base_url + "/start", 100, SETTINGS)
    assert len(canned.received) == 4


def test_redirect_through_guard_followed(canned):
    canned.add(307, "", headers={"Location": "/final.png"}).add(200, b"done")
    session = guarded_session(loopback_guard())
    assert fetch_bytes(session, "picwish", canned.base_url + "/start", 100, SETTINGS) == b"done"
    assert [r.path for r in canned.received] == ["/start", "/final.png"]


def test_dns_answer_changing_between_lookups_cannot_reach_the_new_address(canned):
    """Rebinding: the name is public when the job is checked, loopback at download time."""
    port = canned.base_url.rsplit(":", 1)[1]
    resolver = FakeResolver({"rebind.example": [[PUBLIC], ["127.0.0.1"]]})
    guard = UrlGuard(UrlPolicy(), resolver=resolver)
    url = f"http://rebind.example:{port}/a.png"
    guard.check(url)  # the check before the paid call: public
    with pytest.raises(InvalidInput, match="loopback"):
        fetch_bytes(guarded_session(guard), "picwish", url, 100, SETTINGS)
    assert canned.received == []
    assert resolver.lookups == ["rebind.example", "rebind.example"]


def test_connection_goes_to_the_checked_address_not_a_second_lookup(canned):
    """The adapter connects to the address it checked; urllib3 never resolves the name."""
    canned.add(200, b"pinned")
    port = canned.base_url.rsplit(":", 1)[1]
    resolver = FakeResolver({"pinned.example": [["127.0.0.1"], ["169.254.169.254"]]})
    guard = UrlGuard(UrlPolicy.parse(False, ["127.0.0.1"]), resolver=resolver)
    url = f"http://pinned.example:{port}/a.png"
    assert fetch_bytes(guarded_session(guard), "picwish", url, 100, SETTINGS) == b"pinned"
    assert resolver.lookups == ["pinned.example"]
    assert canned.received[0].headers["Host"] == f"pinned.example:{port}"


def test_chunked_body_without_length_is_capped(canned):
    body = b"x" * 5000
    chunked = b"".join(b"%x\r\n%s\r\n" % (100, body[i:i + 100]) for i in range(0, 5000, 100))
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n"
           + chunked + b"0\r\n\r\n")
    canned.add(raw=raw)
    settings = SimpleNamespace(**{**vars(SETTINGS), "download_max_bytes": 1024 * 1024})
    with pytest.raises(InvalidInput, match="over 1000 bytes"), open_result(
            guarded_session(loopback_guard()), "hitpaw", canned.base_url + "/r.png", settings,
            max_bytes=1000) as download:
        while download.stream.read(256):
            pass


def test_content_length_over_cap_refused_before_reading(canned):
    canned.add(200, b"y" * 2000)
    with pytest.raises(InvalidInput, match="2000 bytes; at most 1000"), open_result(
            guarded_session(loopback_guard()), "hitpaw", canned.base_url + "/r.png", SETTINGS,
            max_bytes=1000):
        pass


def test_guarded_session_ignores_environment_proxies(monkeypatch, canned):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    canned.add(200, b"direct")
    session = guarded_session(loopback_guard())
    assert fetch_bytes(session, "hitpaw", canned.base_url + "/a", 100, SETTINGS) == b"direct"


@pytest.mark.parametrize("status", [404, 500, 503])
def test_source_answering_an_http_error_is_invalid_input_not_a_provider_failure(canned, status):
    canned.add(status, "nope")
    with pytest.raises(InvalidInput, match=f"source URL answered HTTP {status}"):
        fetch_bytes(guarded_session(loopback_guard()), "picwish", canned.base_url + "/a.png",
                    100, SETTINGS)


def test_download_errors_never_carry_the_signed_query(closed_port_url):
    url = closed_port_url + "/r.png?X-Amz-Signature=c0ffee5ecret&X-Amz-Credential=AKIAXYZ"
    with pytest.raises(ProviderUnavailable) as caught, open_result(
            guarded_session(loopback_guard()), "hitpaw", url, SETTINGS):
        pass
    assert "c0ffee5ecret" not in str(caught.value) and "AKIAXYZ" not in str(caught.value)
    assert "<query hidden>" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- HTTPS through the pinned address: SNI and certificate check stay the URL's host -------


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server on 127.0.0.1 whose certificate names only ``pinned.example``."""
    import datetime
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.example")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.example")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen_sni: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"tls-ok")

        def log_message(self, *args):
            pass

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda sock, server_name, ctx: seen_sni.append(server_name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    yield SimpleNamespace(port=server.server_port, ca=str(cert_path), sni=seen_sni)
    server.shutdown()
    server.server_close()


def test_https_to_the_pinned_address_checks_the_url_hosts_certificate(tls_server):
    resolver = FakeResolver({"pinned.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    session = guarded_session(UrlGuard(UrlPolicy.parse(False, ["127.0.0.1"]), resolver=resolver))
    session.verify = tls_server.ca
    url = f"https://pinned.example:{tls_server.port}/r.png"
    assert fetch_bytes(session, "hitpaw", url, 100, SETTINGS) == b"tls-ok"
    assert tls_server.sni == ["pinned.example"]
    with pytest.raises(ProviderUnavailable, match="certificate|hostname"):  # a name it lacks
        fetch_bytes(session, "hitpaw", f"https://other.example:{tls_server.port}/r.png", 100,
                    SETTINGS)


def test_pinned_ipv6_address_is_reachable():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.headers["Host"])))
            self.end_headers()
            self.wfile.write(self.headers["Host"].encode())

        def log_message(self, *args):
            pass

    try:
        server = Server(("::1", 0), Handler)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                     daemon=True).start()
    try:
        guard = UrlGuard(UrlPolicy.parse(False, ["::1"]), resolver=FakeResolver(
            {"six.example": [["::1"]]}))
        session = guarded_session(guard)
        port = server.server_port
        assert fetch_bytes(session, "hitpaw", f"http://six.example:{port}/", 100,
                           SETTINGS) == f"six.example:{port}".encode()
        assert fetch_bytes(session, "hitpaw", f"http://[::1]:{port}/", 100,
                           SETTINGS) == f"[::1]:{port}".encode()
    finally:
        server.shutdown()
        server.server_close()
