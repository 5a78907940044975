"""Whether an address is on the public internet: what Loom may be told to connect to by a user who does not run
the installation (a webhook receiver, a project's git remote). Loopback, private, link-local, shared, reserved and
multicast addresses are not, nor IPv4 carried inside IPv6 (mapped, 6to4, Teredo, NAT64, compatible) when that
IPv4 address is not; IPv4 in any spelling (2130706433, 0177.0.0.1, 127.1) is what the resolver makes of it.
"""
from __future__ import annotations

import ipaddress
import socket

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


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


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (raises OSError when it does not)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:
        raise OSError(f"{host} is not a valid host name") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))  # the resolver's order (its preference), once each


def first_private(host: str, port: int) -> str | None:
    """The first address of `host` that is not public (None: all are, or the name does not resolve now)."""
    try:
        return next((a for a in resolve(host, port) if not is_public(a)), None)
    except OSError:
        return None
