"""Which callback URLs OpenTIM POSTs to: pure rules on the URL, the host and its addresses.

A callback URL is set by the operator (``opentim app create/update --callback-url``) and
checked there with :func:`check_callback_url`. Delivery checks it again (a row written by an
older version was never checked), once per distinct URL, and the HTTP client's resolver
applies :func:`refused_address` to every address a host name resolves to, so a name that
points at a cloud metadata service or back at this server is refused at connect time too.

Refused: anything but http(s); no host; ``user:pass@`` (credentials would travel in every
request, and ``http://good@evil`` misleads readers); a ``#fragment`` (the appended
``Sign``/``SdkAppid`` query would land in it and never be sent); OpenTIM's own query
parameter names in the URL's own query (a receiver reading the first ``Sign`` would read
the operator's); a path under ``/v4/`` (OpenTIM's REST API: a callback loop, or admin calls
made with the receiver's reply); link-local addresses (169.254.0.0/16, fe80::/10), where
cloud metadata services live, the well-known metadata names and addresses outside that
range; unspecified, multicast, broadcast and reserved addresses; IPv4 in the legacy forms
(``2852039166``, ``0xa9fea9fe``, ``127.1``) that hide which address is meant; whitespace,
control characters and backslashes (request splitting, parser disagreements); more than
2048 characters; this server's own port on a loopback address or on its ``host`` setting.

Allowed on purpose: loopback (a receiver next to the server, as in the tests and the
bench) and private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10), where
self-hosted backends live.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import unquote

import yarl

MAX_URL_LENGTH = 2048

# The names of the parameters OpenTIM appends (compared case-insensitively).
RESERVED_PARAMETERS = frozenset({"sdkappid", "callbackcommand", "contenttype", "clientip",
                                 "optplatform", "sign", "requesttime"})

# Metadata services reachable by name (GCP, AWS EC2, Tencent CVM, Alibaba ECS, OpenStack...).
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data",
    "instance-data.ec2.internal", "metadata.tencentyun.com", "metadata.aliyuncs.com",
    "metadata.platformequinix.com",
})

# Metadata services outside the link-local ranges (those are refused as a whole).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "100.100.100.200",  # Alibaba Cloud ECS
    "fd00:ec2::254",  # AWS EC2 IMDS over IPv6
    "fd20:ce::254",  # Google Compute Engine over IPv6
))

_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # 0.x.y.z: "this host" on Linux
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # embeds an IPv4 address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class OwnAddress:
    """Where this server listens (``Settings.host``/``port``): callbacks never go there."""

    host: str = ""
    port: int = 0  # 0: unknown, no self-target check

    def is_own(self, host: str, port: int) -> bool:
        if not self.port or port != self.port:
            return False
        host = _normal_host(host)
        return host == _normal_host(self.host) or _is_loopback_name(host) or \
            _is_loopback_ip(host)


def check_callback_url(url: str, own: OwnAddress | None = None) -> str:
    """``url`` normalised (percent-encoded, lower-case scheme and host), or ValueError.

    The error's text says what is wrong and never repeats the URL's query (it may hold
    the operator's own credentials).
    """
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    if any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("contains whitespace or a control character")
    if "\\" in url:
        raise ValueError("contains a backslash")
    if "#" in url:
        raise ValueError("has a #fragment: OpenTIM's query (Sign, SdkAppid) would be cut off")
    try:
        parsed = yarl.URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise ValueError(f"is not a valid URL ({type(exc).__name__})") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError("must be an absolute http:// or https:// URL")
    if not parsed.raw_host:
        raise ValueError("has no host")
    if parsed.raw_user is not None or parsed.raw_password is not None or \
            "@" in url.split("//", 1)[-1].split("/", 1)[0].split("?", 1)[0]:
        raise ValueError("must not carry a user name or password (user:pass@)")
    if not port:
        raise ValueError("has port 0")
    refusal = refused_host(parsed.raw_host)
    if refusal:
        raise ValueError(refusal)
    if _is_rest_path(parsed.raw_path):
        raise ValueError("points at /v4/, OpenTIM's own REST API (a callback loop)")
    for name in parsed.query:
        if name.lower() in RESERVED_PARAMETERS:
            raise ValueError(f"its query has {name!r}, a parameter OpenTIM appends itself")
    if own is not None and own.is_own(parsed.raw_host, port):
        raise ValueError(f"points at this server's own address (port {port})")
    return str(parsed)


def refused_host(host: str) -> str | None:
    """Why a URL's host is refused, or None. ``host`` as yarl gives it (no brackets)."""
    host = _normal_host(host)
    if host in METADATA_HOSTS:
        return f"host {host} is a cloud metadata service"
    if "%" in host:
        return "an IPv6 zone (%...) names a link-local address"
    address = _ip(host)
    if address is None:
        if _is_legacy_ipv4(host):
            return f"host {host} is an IPv4 address in a legacy form: write a.b.c.d"
        return None
    return refused_address(address)


def refused_address(address: IPAddress) -> str | None:
    """Why OpenTIM must not connect to ``address``, or None. Loopback and private pass."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or \
            (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None)
        if embedded is not None:
            return refused_address(embedded)
    if address in METADATA_ADDRESSES:
        return f"address {address} is a cloud metadata service"
    if address.is_link_local:
        return f"address {address} is link-local (where cloud metadata services live)"
    if address.is_loopback:
        return None
    if address.is_unspecified or address in _THIS_NETWORK:
        return f"address {address} is not a host (use 127.0.0.1 for this machine)"
    if address.is_multicast or (isinstance(address, ipaddress.IPv4Address)
                                and address.is_reserved):
        return f"address {address} is multicast, broadcast or reserved"
    return None


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, for logs: no path (it can be a capability), no
    query (Sign, RequestTime, the operator's own parameters), no credentials."""
    try:
        parsed = yarl.URL(url)
        if parsed.raw_host:
            return str(parsed.origin())
    except (ValueError, TypeError):
        pass
    return "(an unparsable URL)"


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".").strip("[]")


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_legacy_ipv4(host: str) -> bool:
    """True for what inet_aton accepts but is not a.b.c.d: 2852039166, 0xa9.254.1, 127.1."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True  # canonical dotted quads were parsed by ipaddress before this


def _is_loopback_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def _is_loopback_ip(host: str) -> bool:
    address = _ip(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address is not None and (address.is_loopback or address.is_unspecified)


def _is_rest_path(raw_path: str) -> bool:
    """The path's first segment is ``v4``, however it is encoded or padded."""
    path = raw_path
    for _ in range(3):  # a proxy may decode more than once
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    segments: list[str] = []
    for segment in path.split("/"):  # dot segments resolved, empty ones dropped
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    return bool(segments) and segments[0].lower() == "v4"
