"""Where a notification webhook may point: by default only at public addresses.

Any user can set a webhook URL for their notifications, and the worker POSTs to it from inside the installation's
network. Left open, that lets a user make the worker reach what only it can reach (the database host, Redis, a
cloud metadata service, an admin page on localhost) and learn from the answers which ports are open. So a URL
whose host is, or resolves to, a loopback, private, link-local or otherwise non-public address (IPv4 written in
any form, IPv6, and IPv4 inside IPv6: mapped, 6to4, Teredo, NAT64) is refused when it is saved; at each attempt
the name is resolved once, every address checked, and the request sent to the checked address (the Host header
and the TLS server name keep the name), so a name that answers differently the second time gains nothing. An
installation whose receivers live on its own network turns this off with LOOM_WEBHOOK_ALLOW_PRIVATE=true.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

ALLOW_SETTING = "LOOM_WEBHOOK_ALLOW_PRIVATE"
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class Refused(ValueError):
    """The target is not a public address (the message says which and how to allow it)."""


@dataclass(frozen=True)
class Target:
    """Where to send a webhook: the URL with the checked address in place of the name, the Host header, and the
    TLS server name (request extensions) that go with it."""

    url: str
    headers: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


def _addresses_inside(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list:
    """The address itself and any IPv4 address an IPv6 one carries."""
    found = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(ip in net for net in _NAT64) or (ip in _V4_COMPATIBLE and int(ip) > 1):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        found += [v4 for v4 in embedded if v4 is not None]
    return found


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    return all(one.is_global and not one.is_multicast for one in _addresses_inside(ip))


def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (raises OSError when it does not)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"{host} is not a valid host name") from exc
    return sorted({info[4][0] for info in infos})


def _port(parts) -> int:
    try:
        return parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise Refused("its port is not a number from 0 to 65535") from None


def _refuse(host: str, addresses: list[str]) -> None:
    private = [a for a in addresses if not is_public(a)]
    if private:
        raise Refused(f"{host} is a private or local address ({private[0]}); webhooks go to public addresses only "
                      f"unless the installation sets {ALLOW_SETTING}=true")


def refusal(url: str) -> str | None:
    """Why `url` may not be saved as a webhook target (None: it may). A name that does not resolve now is not
    refused: each delivery checks again."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        _refuse(host, _resolve(host, _port(parts)))
    except Refused as exc:
        return str(exc)
    except OSError:
        return None
    return None


def pinned(url: str) -> Target:
    """The request to make for `url`, sent to an address checked to be public. Raises Refused (not public) or
    OSError (the name does not resolve: a failed attempt, retried like any other)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = _port(parts)
    addresses = _resolve(host, port)
    _refuse(host, addresses)
    address = addresses[0]
    literal = f"[{address}]" if ":" in address else address
    default = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + (literal if parts.port is None else f"{literal}:{port}")
    host_header = host if default or parts.port is None else f"{host}:{port}"
    if ":" in host:  # an IPv6 literal keeps its brackets in the Host header
        host_header = f"[{host}]" if default or parts.port is None else f"[{host}]:{port}"
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return Target(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
                  {"Host": host_header}, extensions)
