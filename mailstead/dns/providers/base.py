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

HTTP safety (``HttpProvider``): the API URL passes ``urls.check_api_url`` (https, or http only to a
loopback/documentation IP literal); redirects are never followed (a 3xx is an error naming the status and
the target host); every absolute URL the API hands back (pagination links) must have the API's origin;
paging is bounded (``max_pages``) and a repeated page is an error, not a loop; every error message is
passed through ``redact`` (the credential and every header value, also in escaped/quoted forms -> ``***``)
and no requests exception is chained to a ProviderError.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
from typing import Any, Hashable, Iterable
from urllib.parse import quote, urljoin, urlsplit

import requests

from mailstead.dns.plan import ApplyError, Change
from mailstead.urls import DOC_NETS, check_api_url, same_origin, show_origin
from mailstead.dns.records import Record, norm_name


class ProviderError(ApplyError):
    pass


# Documentation address ranges (RFC 5737, RFC 3849): never valid on the internet. The lab uses some of
# them inside its own network namespaces; a provider address in these ranges that is not on-link here
# would be routed out through the default gateway, so we refuse to contact it.
_DOC_NETS = list(DOC_NETS)

REDACTED = "***"


def secret_forms(value: str) -> set[str]:
    """The ways a credential can show up in a message: as is, Python-repr escaped (requests quotes header
    values that way), JSON escaped, percent-encoded. Values shorter than 4 characters are not redacted
    (they are no secret, and replacing them would garble messages)."""
    if not value or len(value) < 4:
        return set()
    forms = {value, repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe=""),
             value.encode("unicode_escape").decode("ascii")}
    return {f for f in forms if len(f) >= 4}


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret replaced by ``***`` (longest first)."""
    forms: set[str] = set()
    for s in secrets:
        forms |= secret_forms(s)
    for f in sorted(forms, key=len, reverse=True):
        text = text.replace(f, REDACTED)
    return text


def printable_ascii(value: str) -> bool:
    """True when ``value`` is non-empty printable ASCII without spaces (what a token or key looks like)."""
    return bool(value) and all(0x21 <= ord(c) <= 0x7E for c in value)


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
    """requests.Session with a timeout, call counting, bounded 429 handling (Retry-After), no redirects,
    same-origin absolute URLs only, bounded paging, and credentials redacted from every error."""

    max_retries = 5
    max_wait = 60.0
    max_pages = 1000

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 30.0, sleep=time.sleep, *,
                 secret: str | None = None):
        super().__init__()
        self._secrets = tuple(v for v in [secret, *headers.values()] if v)
        forms = {f for v in self._secrets for f in secret_forms(v)}
        self._byte_forms = sorted((f.encode("utf-8", "replace") for f in forms), key=len, reverse=True)
        if (secret is not None and not printable_ascii(secret)) or any(
                not v.isascii() or not v.isprintable() for v in headers.values()):
            raise self.fail("", [], "the API credential is empty or contains whitespace or control characters "
                                    "(value not shown); check dns.secret_file / dns.secret_env")
        try:
            self.base_url = check_api_url(base_url)
        except ValueError as exc:
            raise self.fail("", [], f"api_url {exc}") from None
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.session.headers.setdefault("Accept", "application/json")
        self.timeout = timeout
        self._sleep = sleep
        self.waited = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    def redact(self, text: str) -> str:
        return redact(str(text), self._secrets)

    def fail(self, zone: str, records: Iterable[tuple[str, str]], message: str) -> ProviderError:
        """A ProviderError with ``message`` redacted (raise it)."""
        return ProviderError(zone, records, self.redact(message))

    def request(self, method: str, path: str, *, records: Iterable[tuple[str, str]] = (), zone: str = "",
                ok: tuple[int, ...] = (200, 201, 202, 204), **kw: Any) -> requests.Response:
        records = list(records)
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        if not same_origin(url, self.base_url):
            raise self.fail(zone, records, f"{self.name}: refusing to send the credential to {show_origin(url)}: "
                                           f"not the API's origin {show_origin(self.base_url)}")
        guard_address(urlsplit(url).hostname or "")
        kw["allow_redirects"] = False  # a redirect would carry the credential header to wherever it points
        kind = "read" if method == "GET" else "write"
        for attempt in range(self.max_retries + 1):
            self.calls[kind] += 1
            failure = None
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kw)
            except requests.RequestException as exc:
                # the text is built here, the error raised outside the except block: no chained context
                failure = f"{self.name}: {method} {path}: {type(exc).__name__}: {exc}"
            if failure is not None:
                raise self.fail(zone, records, failure)
            self._redact_body(resp)
            if 300 <= resp.status_code < 400:
                target = self._location(url, resp.headers.get("Location"))
                resp.close()
                raise self.fail(zone, records, f"{self.name}: HTTP {resp.status_code} redirect to {target} "
                                               "refused (redirects are not followed, the credential stays with "
                                               "api_url); set api_url to the API's final address")
            if resp.status_code == 429 and attempt < self.max_retries:
                self._sleep(self._retry_after(resp, attempt))
                continue
            if resp.status_code not in ok:
                raise self.fail(zone, records, f"{self.name}: HTTP {resp.status_code}: {self.error_message(resp)}")
            return resp
        raise AssertionError("unreachable")

    def _redact_body(self, resp: requests.Response) -> None:
        """A body that echoes the credential gets it replaced by ``***`` before anything reads it, so no
        message cut from it (error texts are truncated) can hold the credential or a piece of it."""
        try:
            content = resp.content
        except requests.RequestException:
            return
        if not content:
            return
        clean = content
        for form in self._byte_forms:
            clean = clean.replace(form, REDACTED.encode())
        if clean != content:
            resp._content = clean

    @staticmethod
    def _location(url: str, loc: str | None) -> str:
        if not loc:
            return "(no Location header)"
        try:
            return show_origin(urljoin(url, loc))
        except ValueError:
            return "(an invalid URL)"

    # -- paging
    def next_url(self, link: str, current: str, zone: str = "") -> str:
        """A pagination link resolved against the current page's URL; it must have the API's origin."""
        try:
            url = urljoin(current, link)
        except ValueError:
            url = ""
        if not same_origin(url, self.base_url):
            raise self.fail(zone, [], f"{self.name}: the next-page link points to {show_origin(url)}, not the "
                                      f"API's origin {show_origin(self.base_url)}; refusing to follow it")
        return url

    def count_page(self, seen: set, page: Hashable, zone: str = "") -> None:
        """Record one more page; a repeated page or more than ``max_pages`` pages is an error."""
        if page in seen:
            raise self.fail(zone, [], f"{self.name}: the API returned the same next page again (page "
                                      f"{len(seen) + 1}); refusing to loop")
        if len(seen) >= self.max_pages:
            raise self.fail(zone, [], f"{self.name}: more than {self.max_pages} pages of records; stopping")
        seen.add(page)

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
