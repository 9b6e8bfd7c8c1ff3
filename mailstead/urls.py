"""The one rule for provider API URLs, and origin checks for the links an API hands back.

Standard library only, so the settings model can import it without loading requests or dnspython.

``check_api_url(url) -> str`` is the rule the settings validator (``dns.api_url``) and every HTTP provider
apply: an API URL is ``https://host[:port][/path]``; plain ``http://`` is accepted only when the host is
an IP literal on loopback (127.0.0.0/8, ::1) or in a documentation range (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32 - never routed on the internet; the lab runs PowerDNS on one). Host
*names* never qualify for http, not even ``localhost``: what a name resolves to is not ours to know here.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

# Documentation address ranges (RFC 5737, RFC 3849): never valid on the internet.
DOC_NETS = tuple(ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
                                                    "2001:db8::/32"))
DOC_NETS_TEXT = "192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32"


def _ip(host: str | None):
    try:
        return ipaddress.ip_address((host or "").strip("[]").split("%")[0])
    except ValueError:
        return None


def plain_http_allowed(host: str | None) -> bool:
    """True for an IP literal on loopback or in a documentation range (the only hosts http may talk to)."""
    addr = _ip(host)
    return addr is not None and (addr.is_loopback or any(addr in n for n in DOC_NETS))


def show_url(url: str, limit: int = 70) -> str:
    """``repr`` of the URL for a message, any ``user:password@`` part replaced by ``***@``."""
    try:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            url = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
    except ValueError:
        if "@" in url:
            return "(value not shown)"
    text = repr(url)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_api_url(url: str) -> str:
    """``url`` without trailing slashes if it is an acceptable provider API URL; else ``ValueError`` whose
    message starts with the URL (credentials in it never shown) and says what is wrong."""
    if not isinstance(url, str):
        raise ValueError(f"{url!r} is not a URL")
    shown = show_url(url)
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError(f"{shown} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise ValueError(f"{shown} is not a URL with a valid host and port") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{shown} carries credentials in the URL; put the token in secret_file or secret_env")
    if parts.query or parts.fragment:
        raise ValueError(f"{shown} has a query or fragment; give the API's base URL only")
    if scheme == "http" and not plain_http_allowed(parts.hostname):
        if parts.hostname.lower().rstrip(".") == "localhost":
            raise ValueError(f"{shown} is plain http to a host name; for a local API write the address "
                             "(http://127.0.0.1:... or http://[::1]:...), otherwise use https")
        raise ValueError(
            f"{shown} is plain http to {parts.hostname}: the API token would cross the network unencrypted; "
            f"use https (http is accepted only to a loopback or documentation address: 127.0.0.1, ::1, "
            f"{DOC_NETS_TEXT})"
        )
    return url.rstrip("/")


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL without credentials in it; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username is not None \
            or parts.password is not None:
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80)


def same_origin(url: str, base: str) -> bool:
    """True when ``url`` has the scheme, host and port of ``base`` (and no credentials of its own)."""
    o = origin(url)
    return o is not None and o == origin(base)


def show_origin(url: str) -> str:
    """'https://host:port' of a URL for a message (no path, query or credentials)."""
    o = origin(url)
    if o is None:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            host = None
        return host or "(an invalid URL)"
    scheme, host, port = o
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


__all__ = ["DOC_NETS", "check_api_url", "plain_http_allowed", "same_origin", "origin", "show_origin", "show_url"]
