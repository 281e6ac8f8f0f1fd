"""The one URL guard: what a worker may fetch, or hand to a provider to fetch.

Users' URLs (sources) and providers' answers (result URLs) are hostile input. Every such
URL passes this guard, which refuses with ``InvalidInput`` naming the rule:

- the scheme is ``http`` or ``https``; the host is a name or an IP literal in any spelling
  ``inet_aton`` accepts (``127.1``, ``0x7f000001``, ``2130706433``, ``0177.0.0.1``) or a
  bracketed IPv6 literal, read the way a resolver would read it;
- the host is resolved once and EVERY address is checked: unspecified, multicast,
  cloud metadata, IPv6 forms embedding IPv4 (mapped, compatible, 6to4, Teredo, NAT64),
  loopback, private, carrier-grade NAT, link-local and other non-global addresses are
  refused;
- ``GuardedAdapter`` connects to the address it checked (the connection pool is keyed on
  that address, the ``Host`` header and TLS name stay the URL's), so DNS cannot answer
  differently between the check and the connection.

An operator opens doors explicitly (``UrlPolicy``): ``allow_private`` opens loopback,
private and carrier-grade NAT ranges; an allow-list of CIDRs opens exactly those
addresses, an allow-list of host names (``sandbox``, ``.corp.example``) opens the
addresses those names resolve to. Unspecified and multicast addresses never open; cloud
metadata addresses open only through a CIDR entry naming them.

The technique of ``GuardedAdapter`` is the one of ``requests-hardened`` (pin the checked
address in ``build_connection_pool_key_attributes``); that library is not used because its
policy is a fixed "private or not" (no allow-list, so a sandbox on a container network
could be opened only by turning the filter off), it checks only the first address a name
resolves to, and it has no resolver hook for tests.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import SplitResult, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import parse_url

from providers.errors import InvalidInput, ResolverUnavailable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: host, port -> the addresses a connection could go to (``socket.getaddrinfo`` by default).
Resolver = Callable[[str, int], list[str]]

#: Where clouds serve instance credentials; refused unless a CIDR entry names them.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
    "169.254.169.253",  # AWS VPC DNS
    "169.254.170.2",  # AWS ECS task credentials
    "169.254.170.23",  # AWS EKS pod identity
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",  # Oracle Cloud (legacy)
    "fd00:ec2::254",  # AWS IMDS over IPv6
    "fd00:ec2::23",  # AWS EKS pod identity over IPv6
))
#: Names of metadata services, refused by name before any lookup.
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "metadata.azure.com",
    "instance-data", "instance-data.ec2.internal",
})
CGNAT = ipaddress.ip_network("100.64.0.0/10")
_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_NAT64 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_NUMERIC_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|[0-9]+)$")
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
SCHEMES = ("http", "https")
OPEN_HINT = "an operator opens it with ALLOW_PRIVATE_URLS or URL_ALLOWLIST"


def system_resolver(host: str, port: int) -> list[str]:
    """Every IPv4/IPv6 address ``host`` resolves to, as strings (``socket.getaddrinfo``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


@dataclass(frozen=True)
class UrlPolicy:
    """What an operator opened. The default opens nothing.

    Attributes:
        allow_private: Loopback, private and carrier-grade NAT addresses are allowed.
        allow_networks: Addresses in these networks are allowed (any kind but
            unspecified and multicast).
        allow_hosts: Host names whose addresses are allowed (any kind but unspecified,
            multicast and metadata); an entry starting with "." matches sub-domains.
        max_redirects: Redirects a download follows, each through the guard.
    """

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    max_redirects: int = 3

    @classmethod
    def parse(cls, allow_private: bool = False, allowlist: Iterable[str] = (),
              max_redirects: int = 3) -> UrlPolicy:
        """A policy from an allow-list of CIDRs, addresses and host names.

        Raises:
            ValueError: An entry is neither a network nor a host name.
        """
        networks, hosts = [], []
        for entry in (e.strip().lower() for e in allowlist):
            if not entry:
                continue
            network = _network_or_none(entry)
            if network is not None:
                networks.append(network)
            elif _HOST_NAME.match(entry.lstrip(".")):
                hosts.append(entry)
            else:
                raise ValueError(f"{entry!r} is neither a CIDR, an IP address nor a host name")
        return cls(allow_private, tuple(networks), tuple(hosts), max_redirects)

    @classmethod
    def from_settings(cls, settings: Any) -> UrlPolicy:
        """The policy of ``workers.settings.Settings`` (read by attribute)."""
        return cls.parse(settings.allow_private_urls, settings.url_allowlist,
                         settings.max_redirects)

    def host_allowed(self, host: str) -> bool:
        return any(host == h or (h.startswith(".") and host.endswith(h))
                   for h in self.allow_hosts)

    def network_allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allow_networks)


def _network_or_none(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry.strip("[]"), strict=False)
    except ValueError:
        return None


# --- Reading a host the way a resolver reads it ------------------------------------------


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address an IP literal names, in any ``inet_aton`` spelling; None for a name.

    Raises:
        InvalidInput: The host looks numeric but is no address (``1.2.3.4.5``, ``08``):
            resolvers disagree on such hosts, so none is accepted.
    """
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidInput(f"URL refused: malformed IPv6 host {host!r}") from None
    parts = host.split(".")
    if not all(_NUMERIC_PART.match(p) for p in parts):
        return None
    value = _inet_aton(parts)
    if value is None:
        raise InvalidInput(f"URL refused: malformed numeric host {host!r}")
    return ipaddress.IPv4Address(value)


def _inet_aton(parts: list[str]) -> int | None:
    """``inet_aton``'s reading of 1-4 numeric parts (the last fills the remaining bytes)."""
    if not 1 <= len(parts) <= 4:
        return None
    try:
        numbers = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if p.startswith("0")
                   else int(p) for p in parts]
    except ValueError:  # "08", "0x": not octal, not hex
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    return value * 256 ** (4 - len(head)) + last


def embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address carries, and the mechanism's name; else None."""
    if ip.version == 4:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:
        return low32, "IPv4-compatible"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    if any(ip in n for n in _NAT64):
        return low32, "NAT64"
    return None


def address_problem(ip: IPAddress, policy: UrlPolicy, host_allowed: bool = False) -> str | None:
    """Why a connection to ``ip`` is refused under ``policy``, or None when it is allowed."""
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if policy.network_allowed(ip):
        return None
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if host_allowed:
        return None
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return f"an IPv6 address embedding IPv4 {embedded[0]} ({embedded[1]})"
    return _range_problem(ip, policy.allow_private)


def _range_problem(ip: IPAddress, allow_private: bool) -> str | None:
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if any(ip.version == n.version and ip in n for n in _PRIVATE):
        return None if allow_private else "a private address"
    if ip.version == 4 and ip in CGNAT:
        return None if allow_private else "a carrier-grade NAT address"
    if ip.is_link_local:
        return "a link-local address"
    if not ip.is_global:
        return "a reserved or special-purpose address"
    return None


# --- The guard ------------------------------------------------------------------------


class HostNotFound(InvalidInput):
    """The resolver says the URL's host has no address: refused, though it may have one
    later (a caller that retries, such as a webhook delivery, tells it from a refused
    address by class). A resolver that cannot answer now is ``ResolverUnavailable``.
    A code of its own, so a failed job's code names the cause and maps back to the class."""

    code = "host_not_found"


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the guard, with the addresses its host resolved to."""

    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


class UrlGuard:
    """Decides whether a URL may be fetched, and which address to connect to.

    Args:
        policy: What the operator opened.
        resolver: ``host, port -> addresses``; tests pass their own.
    """

    def __init__(self, policy: UrlPolicy | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self.policy = policy or UrlPolicy()
        self.resolver = resolver

    @staticmethod
    def check_scheme(url: str) -> None:
        """Refuse anything but an http(s) URL without control characters (no DNS, no policy)."""
        _split(url)

    def check_static(self, url: str) -> SplitResult:
        """Every rule that needs no DNS lookup: scheme, host syntax, literal addresses.

        Raises:
            InvalidInput: Naming the rule the URL breaks.
        """
        parts = _split(url)
        host = _host_of(parts)
        literal = parse_ip_literal(host)
        if literal is not None:
            self._judge(host, [literal])
        elif host in METADATA_HOSTS and not self.policy.host_allowed(host):
            raise InvalidInput(f"URL refused: {host} is a cloud metadata service")
        elif _is_localhost(host):
            self._judge(host, [ipaddress.ip_address("127.0.0.1")])
        return parts

    def check(self, url: str) -> CheckedUrl:
        """``check_static``, then resolve the host once and check every address.

        Raises:
            InvalidInput: Naming the rule the URL or one of its addresses breaks.
        """
        parts = self.check_static(url)
        host = _host_of(parts)
        port = _port_of(parts)
        return CheckedUrl(url, host, port, tuple(self.addresses(host, port)))

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The checked addresses of ``host``, in the resolver's order (first = to use)."""
        literal = parse_ip_literal(host)
        found = [literal] if literal is not None else self._resolve(host, port)
        self._judge(host, found)
        return found

    def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            answers = self.resolver(host, port)
        except (OSError, UnicodeError) as exc:
            if isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN:
                # the resolver timed out or failed, not the name: nothing is wrong with the URL
                raise ResolverUnavailable(f"host {host} could not be resolved now ({exc})") from exc
            raise HostNotFound(f"URL refused: host {host} does not resolve ({exc})") from exc
        found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
        if not found:
            raise HostNotFound(f"URL refused: host {host} has no address")
        return found

    def _judge(self, host: str, found: list[IPAddress]) -> None:
        host_allowed = self.policy.host_allowed(host)
        for ip in found:
            problem = address_problem(ip, self.policy, host_allowed)
            if problem:
                where = f"{host} is" if str(ip) == host else f"{host} means {ip},"
                raise InvalidInput(f"URL refused: {where} {problem} ({OPEN_HINT})")


def _split(url: str) -> SplitResult:
    if not isinstance(url, str) or any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise InvalidInput("URL refused: empty, or has spaces or control characters")
    if "\\" in url:
        raise InvalidInput("URL refused: a backslash (URL parsers disagree on where its host "
                           "ends)")
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise InvalidInput(f"URL refused: scheme {parts.scheme or '(none)'!r} is not http or "
                           "https")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
        other_host = parse_url(url).host
    except ValueError as exc:  # urllib3's LocationParseError is a ValueError
        raise InvalidInput(f"URL refused: bad port or host ({exc})") from None
    if _idna((other_host or "").strip("[]")) != _idna(parts.hostname or ""):
        raise InvalidInput("URL refused: URL parsers disagree on its host")
    return parts


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError:
        return host.lower()


def _host_of(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput("URL refused: no host")
    if "%" in host:
        raise InvalidInput("URL refused: percent-encoding or an IPv6 zone in the host")
    if ":" in host:
        return host
    try:
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host
    except UnicodeError:
        raise InvalidInput("URL refused: host name is not valid IDNA") from None
    if not _HOST_NAME.match(host):
        raise InvalidInput(f"URL refused: {host!r} is not a valid host name")
    return host


def _port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


# --- Connecting to the checked address ---------------------------------------------------


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that connects only to an address the guard checked.

    The host is resolved here, once per request; the connection pool is keyed on that
    address, so urllib3 never resolves the name itself. The ``Host`` header and the TLS
    server name (SNI and certificate check) stay the URL's host.
    """

    def __init__(self, guard: UrlGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = guard

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        host = str(host_params["host"]).strip("[]").rstrip(".")
        scheme = str(host_params["scheme"]).lower()
        port = host_params.get("port") or (443 if scheme == "https" else 80)
        address = self.guard.addresses(host.lower(), port)[0]
        request.headers = requests.structures.CaseInsensitiveDict(request.headers or {})
        request.headers["Host"] = _host_header(host, host_params.get("port"))
        if scheme == "https":
            pool_kwargs["assert_hostname"] = host
            pool_kwargs["server_hostname"] = host
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs


def _host_header(host: str, port: int | None) -> str:
    value = f"[{host}]" if ":" in host else host
    return f"{value}:{port}" if port else value


def guarded_session(guard: UrlGuard, user_agent: str | None = None) -> requests.Session:
    """A ``requests.Session`` for fetching untrusted URLs through ``guard``.

    Both schemes go through ``GuardedAdapter``; proxies and ``.netrc`` from the environment
    are ignored (a proxy would resolve names past the guard); no cookies are kept;
    ``max_redirects`` is the policy's (``providers.download`` follows them itself).
    """
    session = requests.Session()
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    session.max_redirects = guard.policy.max_redirects
    for prefix in ("http://", "https://"):
        session.mount(prefix, GuardedAdapter(guard))
    if user_agent:
        session.headers["User-Agent"] = user_agent
    return session


def strip_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (other parts untouched)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
