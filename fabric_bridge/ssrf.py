"""Webhook URLs must not reach into our own network: the checks, and a connection pinned to what was checked.

An agent chooses its webhook URL, and the ticker POSTs to it from inside our
network; without these rules an agent could make the ticker talk to the
database's admin port, a cloud metadata service (169.254.169.254) or
anything else only the server can reach (SSRF). ``vet_url`` runs when the
URL is set and again before every delivery (DNS answers change: a name that
was public yesterday may point at 10.0.0.5 today), and the delivery then
connects to the very address that was vetted (``PinnedAdapter``): re-resolving
between the check and the connection would reopen the hole (DNS rebinding).

Refused, in IPv4 and IPv6: loopback, private, link-local, shared (CGNAT),
multicast, reserved, unspecified and documentation ranges; IPv6 forms that
embed an IPv4 address (mapped ``::ffff:a.b.c.d``, compatible ``::a.b.c.d``,
6to4 ``2002::/16``, Teredo, NAT64 ``64:ff9b::/96``) are judged by the IPv4
address they carry. IPv4 literals in the spellings C's ``inet_aton`` accepts
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``) are refused outright
when they are not the plain dotted quad: resolvers read them as addresses,
people read them as names. ``allow_private`` (``WEBHOOK_ALLOW_PRIVATE_NETWORKS``,
development and tests only) lifts the address rules, not the others.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# What inet_aton would read as an IPv4 address: digits, hex and dots only.
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+", re.ASCII)


class UnsafeUrl(ValueError):
    """The URL may not be used as a webhook; the message says why, for the agent."""


@dataclass(frozen=True)
class Vetted:
    """A URL that passed, and the addresses its host resolved to: connect to one of these, nothing else."""

    url: str
    scheme: str
    host: str  # as it goes into Host and SNI (IDNA-encoded, no brackets)
    port: int
    addresses: tuple[IPAddress, ...]

    def pinned_url(self, address: IPAddress) -> str:
        """The URL with its host replaced by ``address``; the request carries the real host in Host and SNI."""
        parts = urlsplit(self.url)
        literal = f"[{address}]" if address.version == 6 else str(address)
        return urlunsplit((parts.scheme, f"{literal}:{self.port}", parts.path or "/", parts.query, ""))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """The scheme, host and port of ``url``, or UnsafeUrl naming what is wrong with its shape."""
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"the URL cannot be parsed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise UnsafeUrl("the URL must use https" if scheme == "http" else f"the scheme must be https, not {scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("the URL must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the URL has no host")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise UnsafeUrl("the host is not a valid domain name") from None
    return scheme, host.rstrip(".").lower() if ":" not in host else host, port or (443 if scheme == "https" else 80)


def vet_url(url: str, *, allow_http: bool, allow_private: bool, resolve: Resolver | None = None) -> Vetted:
    """Check ``url`` and resolve its host; every address must be public. Raises UnsafeUrl with the reason."""
    scheme, host, port = parse_url(url, allow_http=allow_http)
    literal = _ip_literal(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        if _NUMERIC_HOST.fullmatch(host) and _inet_aton(host) is not None:
            raise UnsafeUrl(
                f"the host {host!r} is an IPv4 address in an unusual spelling ({_inet_aton(host)}); "
                "write it as a dotted quad, or use a name"
            )
        try:
            # Looked up at call time, so whatever replaced socket.getaddrinfo (tests) is the resolver.
            answers = (resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise UnsafeUrl(f"the host {host!r} does not resolve ({exc})") from None
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in answers))
        if not addresses:
            raise UnsafeUrl(f"the host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if (reason := non_public_reason(address)) is not None:
                shown = host if literal is not None else f"{host!r} resolves to {address}, which"
                raise UnsafeUrl(f"{shown} is {reason}; webhooks must reach a public address")
    return Vetted(url=url, scheme=scheme, host=host, port=port, addresses=addresses)


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    if address.version == 6:
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = non_public_reason(embedded)
            return f"an IPv6 form of {embedded}, {inner}" if inner else None
        if address in _NAT64_LOCAL:
            return "a local-use NAT64 address"
    for test, reason in (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    ):
        if getattr(address, test):
            return reason
    if address.version == 4 and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (carrier-grade NAT) address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, 6to4, Teredo client, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)  # ::a.b.c.d, "IPv4-compatible"
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        server, client = address.teredo
        return client if non_public_reason(server) is None else server
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None


def _inet_aton(host: str) -> str | None:
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class PinnedAdapter(HTTPAdapter):
    """Connects to the IP literal in the URL while TLS checks the certificate for the Host header's name (SNI too).

    The sender puts the vetted address in the URL and the real host in
    ``Host``; connection pools are keyed by address *and* server name, so two
    hosts on one address never share a connection.
    """

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[no-untyped-def]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params["scheme"] == "https":
            name = urlsplit(f"//{request.headers['Host']}").hostname
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs
