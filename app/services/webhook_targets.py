"""Where a notification webhook may point: by default only at public addresses.

Any user can set a webhook URL for their notifications, and the worker POSTs to it from inside the installation's
network. Left open, that lets a user make the worker reach what only it can reach (the database host, Redis, a
cloud metadata service, an admin page on localhost) and learn from the answers which ports are open. So a URL
whose host is, or resolves to, a loopback, private, link-local or otherwise non-public address is refused when it
is saved and again when it is sent (a name can resolve differently later). An installation whose receivers live
on its own network turns this off with LOOM_WEBHOOK_ALLOW_PRIVATE=true.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

ALLOW_SETTING = "LOOM_WEBHOOK_ALLOW_PRIVATE"


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is link-local anyway
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def refusal(url: str, *, resolve: bool = True) -> str | None:
    """Why `url` may not be a webhook target (None: it may). A name that does not resolve is not refused here:
    the delivery reports it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if not resolve:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "its port is not a number from 0 to 65535"
        try:
            addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
        except (OSError, UnicodeError):
            return None
    private = [a for a in addresses if not _public(a)]
    if private:
        return (f"{host} is a private or local address ({private[0]}); webhooks go to public addresses only "
                f"unless the installation sets {ALLOW_SETTING}=true")
    return None
