"""Where a notification webhook may point: by default only at public addresses.

Any user can set a webhook URL for their notifications, and the worker POSTs to it from inside the installation's
network. Left open, that lets a user make the worker reach what only it can reach (the database host, Redis, a
cloud metadata service, an admin page on localhost) and learn from the answers which ports are open. So a URL
whose host is, or resolves to, a non-public address (app/services/public_addresses.py) is refused when it is
saved; at each attempt the name is resolved once, every address checked, and the request sent to the checked
address (the Host header and the TLS server name keep the name), so a name that answers differently the second
time gains nothing. An installation whose receivers live on its own network turns this off with
LOOM_WEBHOOK_ALLOW_PRIVATE=true.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from app.services.public_addresses import is_public, resolve

ALLOW_SETTING = "LOOM_WEBHOOK_ALLOW_PRIVATE"


class Refused(ValueError):
    """The target is not a public address (the message says which and how to allow it)."""


@dataclass(frozen=True)
class Target:
    """Where to send a webhook: the URL with the checked address in place of the name, the Host header, and the
    TLS server name (request extensions) that go with it."""

    url: str
    headers: dict = field(default_factory=dict)
    extensions: dict = field(default_factory=dict)


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
        _refuse(host, resolve(host, _port(parts)))
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
    addresses = resolve(host, port)
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
