"""Shared builders for the DNS unit tests (a helpers module, no tests): real settings models, no mocks."""

from __future__ import annotations

from mailstead.settings import EnvironmentSettings, build_environment, build_settings

MAIL = ("mail.example.org", {"ipv4": "198.51.100.10", "ipv6": "2001:db8:51::10"})
TRAP_FIRST = ("mx1.example.org", {"ipv4": "198.51.100.20", "ipv6": "2001:db8:51::20", "spamtrap_position": "first"})
TRAP_LAST = ("mx3.example.org", {"ipv4": "198.51.100.30", "spamtrap_position": "last"})


def make_env(hosts=(MAIL, TRAP_FIRST, TRAP_LAST), environment="production", **shared) -> EnvironmentSettings:
    """EnvironmentSettings from host tuples (fqdn, host data); ``shared`` = group_data keys for all hosts."""
    base = {"environment": environment, "domains": ["example.org"], "admin_email": "postmaster@example.org"}
    base.update(shared)
    settings = []
    for fqdn, data in hosts:
        role = "spamtraps" if "spamtrap_position" in data else "mailservers"
        settings.append(build_settings(fqdn, [role, environment], {**base, **data}, {}))
    return build_environment(environment, base, {}, settings)


def by_key(records):
    return {(r.name, r.type): r for r in records}


# ----------------------------------------------------------------------------- fake HTTP providers
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


class FakeAPI:
    """A local HTTP server on 127.0.0.1 for a provider API we cannot reach from here.

    Subclasses implement ``handle(method, path, query, headers, body) -> (status, headers, json_body)``.
    Every request is logged in ``requests``; ``fail_write`` = n answers the n-th write with a 500;
    ``throttle`` = n answers the next n requests with 429 + Retry-After."""

    token = "s3cret-token"

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.writes = 0
        self.fail_write: int | None = None
        self.throttle = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _do(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                url = urlsplit(self.path)
                with api.lock:
                    status, headers, payload = api.dispatch(self.command, unquote(url.path), parse_qs(url.query, keep_blank_values=True),
                                                           self.headers, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def dispatch(self, method, path, query, headers, body):
        self.requests.append((method, path))
        if self.throttle:
            self.throttle -= 1
            return self.throttled()
        if method != "GET":
            self.writes += 1
            if self.fail_write is not None and self.writes == self.fail_write:
                return 500, {}, {"error": {"code": "server_error", "message": "injected failure"}}
        return self.handle(method, path, query, headers, body)

    def throttled(self):
        return 429, {"Retry-After": "1"}, {"detail": "Request was throttled."}

    def write_requests(self):
        return [r for r in self.requests if r[0] != "GET"]


def no_sleep(record):
    """A sleep stand-in that records the requested waits instead of waiting."""
    def sleep(seconds):
        record.append(seconds)
    return sleep


def run_stage(env, provider, dry=False):
    """The deploy's DNS stage against ``provider``, its printed plan discarded; returns the Plan."""
    import io

    from mailstead.dns import stage

    return stage(env, dry=dry, provider=provider, out=io.StringIO())
