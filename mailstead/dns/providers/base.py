"""The provider interface and an HTTP helper shared by the API adapters.

A provider is small:

    list_records(zone, wanted=None) -> list[Record]    what the zone holds (one Record per RRset)
    apply(zone, changes: list[Change]) -> None         make each changed RRset hold ``change.new``
                                                        (empty = delete), in as few calls as possible
    calls: {"read": n, "write": n}                      requests made so far (tests and bench count them)

``wanted`` is the set of (name, type) pairs the plan needs; providers that can list a whole zone ignore
it, RFC 2136 uses it when zone transfers are not allowed. Errors are ``ProviderError`` (message from the
provider, the RRsets concerned) - ``plan.apply`` turns them into ``ApplyError``. Credentials are never
part of an error or a log line.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

import requests

from mailstead.dns.plan import ApplyError, Change
from mailstead.dns.records import Record, norm_name


class ProviderError(ApplyError):
    pass


# Documentation address ranges (RFC 5737, RFC 3849): never valid on the internet. The lab uses some of
# them inside its own network namespaces; a provider address in these ranges that is not on-link here
# would be routed out through the default gateway, so we refuse to contact it.
_DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def guard_address(host: str) -> None:
    """Refuse to talk to a documentation-range address unless it is on-link in this network namespace.

    Connecting a UDP socket sends nothing; it only asks the kernel which source address it would use.
    An on-link destination gets a source address in the same subnet; anything else would leave through
    the default route (e.g. a lab address contacted from outside the lab's network namespace)."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    net = next((n for n in _DOC_NETS if addr in n), None)
    if net is None:
        return
    fam = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.connect((str(addr), 9))
            src = ipaddress.ip_address(s.getsockname()[0].split("%")[0])
    except OSError:
        src = None
    prefix = 24 if addr.version == 4 else 64
    if src is None or src not in ipaddress.ip_network(f"{addr}/{prefix}", strict=False):
        raise ProviderError("", [], f"refusing to contact {addr}: a documentation/lab address that is not "
                                    "on-link in this network namespace (it would leave through the default "
                                    "route); run the DNS stage inside the lab network")


class Provider:
    name = "provider"
    min_ttl = 0  # providers with a minimum TTL (deSEC: 3600) raise lower TTLs to it

    def __init__(self) -> None:
        self.calls = {"read": 0, "write": 0}

    def list_records(self, zone: str, wanted: Iterable[tuple[str, str]] | None = None) -> list[Record]:
        raise NotImplementedError

    def apply(self, zone: str, changes: list[Change]) -> None:
        raise NotImplementedError


def relative(name: str, zone: str) -> str:
    """'www.example.com' in 'example.com' -> 'www'; the apex -> '' (callers map it to '@' if needed)."""
    name, zone = norm_name(name), norm_name(zone)
    if name == zone:
        return ""
    if not name.endswith("." + zone):
        raise ValueError(f"{name} is not in zone {zone}")
    return name[: -len(zone) - 1]


def absolute(sub: str, zone: str) -> str:
    sub = (sub or "").rstrip(".")
    if sub in ("", "@"):
        return norm_name(zone)
    return norm_name(f"{sub}.{zone}")


class HttpProvider(Provider):
    """requests.Session with a timeout, call counting and bounded 429 handling (Retry-After)."""

    max_retries = 5
    max_wait = 60.0

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 30.0, sleep=time.sleep):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.session.headers.setdefault("Accept", "application/json")
        self.timeout = timeout
        self._sleep = sleep
        self.waited = 0.0

    def request(self, method: str, path: str, *, records: Iterable[tuple[str, str]] = (), zone: str = "",
                ok: tuple[int, ...] = (200, 201, 202, 204), **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base_url + path
        guard_address(urlsplit(url).hostname or "")
        kind = "read" if method == "GET" else "write"
        for attempt in range(self.max_retries + 1):
            self.calls[kind] += 1
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kw)
            except requests.RequestException as exc:
                raise ProviderError(zone, records, f"{self.name}: {method} {path}: {type(exc).__name__}: {exc}") from None
            if resp.status_code == 429 and attempt < self.max_retries:
                self._sleep(self._retry_after(resp, attempt))
                continue
            if resp.status_code not in ok:
                raise ProviderError(zone, records, f"{self.name}: HTTP {resp.status_code}: {self.error_message(resp)}")
            return resp
        raise AssertionError("unreachable")

    def _retry_after(self, resp: requests.Response, attempt: int) -> float:
        ra = resp.headers.get("Retry-After")
        try:
            wait = float(ra) if ra is not None else 2.0 ** attempt
        except ValueError:
            wait = 2.0 ** attempt
        wait = min(max(wait, 0.0), self.max_wait)
        self.waited += wait
        return wait

    def error_message(self, resp: requests.Response) -> str:
        try:
            data = resp.json()
        except ValueError:
            return resp.text.strip()[:500] or resp.reason
        return str(data)[:500]
