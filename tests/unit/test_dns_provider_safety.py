"""Provider credential safety: https-only API URLs, no redirects, same-origin bounded pagination, no
credential in any error, log line or printed output, strict secret files.

Network: every fake API here is a local HTTP server on 127.0.0.1 (an ephemeral port); nothing is sent
anywhere else. The documentation-range addresses (198.51.100.x, 2001:db8::/32) appear only as strings given
to the URL rule ``check_api_url``; no test connects to them. Hetzner pages by number (``next_page``) on the
same URL, so a foreign pagination host cannot occur there; its tests cover repeated, backwards and endless
pages instead. Cloudflare pages by number too (``total_pages``): bounded by ``max_pages``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from mailstead.settings import DnsProvider  # first: it imports pyinfra's CLI, which patches ssl (gevent)
from mailstead.dns.plan import ApplyError
from mailstead.dns.providers import CredentialError, from_settings, read_secret
from mailstead.dns.providers.base import ProviderError
from mailstead.dns.providers.cloudflare import Cloudflare
from mailstead.dns.providers.desec import DeSEC
from mailstead.dns.providers.hetzner import Hetzner
from mailstead.dns.providers.powerdns import PowerDNS
from mailstead.urls import check_api_url
from dns_helpers import make_env, no_sleep, run_stage

TOKEN = "tok9Xq2Lm7Vz4Rw8Kp3Nb6Hy1Jc5Td0Fg"  # distinctive: any 6-character piece of it is a leak
PIECES = [TOKEN[i:i + 6] for i in range(0, len(TOKEN) - 5, 3)]


def assert_no_token(*texts: str) -> None:
    for text in texts:
        for piece in PIECES:
            assert piece not in text, f"credential piece {piece!r} leaked: {text!r}"


def assert_error_clean(exc: BaseException) -> None:
    """str, repr, args and the whole printed traceback (chained exceptions included) hold no credential."""
    assert_no_token(str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc)))
    assert exc.__context__ is None or isinstance(exc.__context__, (ProviderError, ValueError))
    if exc.__context__ is not None:
        assert_no_token(str(exc.__context__))


class Server:
    """A local HTTP server on 127.0.0.1 answering with ``respond(method, path, query, headers)`` ->
    (status, headers, body: bytes | str | JSON value | None); every request is recorded in ``seen``."""

    def __init__(self, respond=None):
        self.respond = respond or (lambda *a: (200, {}, {}))
        self.seen: list[tuple[str, str, dict]] = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _do(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                url = urlsplit(self.path)
                srv.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, body = srv.respond(self.command, url.path,
                                                    parse_qs(url.query, keep_blank_values=True), self.headers)
                if body is None:
                    data = b""
                elif isinstance(body, bytes):
                    data = body
                elif isinstance(body, str):
                    data = body.encode()
                else:
                    data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _do

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(respond=None):
        s = Server(respond)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# provider name -> (factory(base URL of a fake server), an operation that makes a read request)
PROVIDERS = {
    "powerdns": (lambda url: PowerDNS(url, TOKEN, sleep=no_sleep([])), lambda p: p.list_records("example.org")),
    "hetzner": (lambda url: Hetzner(TOKEN, api_url=url + "/v1", sleep=no_sleep([])),
                lambda p: p.list_records("example.org")),
    "desec": (lambda url: DeSEC(TOKEN, api_url=url + "/api/v1", sleep=no_sleep([])),
              lambda p: p.list_records("example.org")),
    "cloudflare": (lambda url: Cloudflare(TOKEN, api_url=url + "/client/v4", sleep=no_sleep([])),
                   lambda p: p.zone_id("example.org")),
}


# ------------------------------------------------------------------------------------------ API URLs
@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081", "http://127.0.0.53", "http://[::1]:8081/", "http://198.51.100.10:8081",
    "http://192.0.2.1", "http://203.0.113.200:8080/api", "http://[2001:db8::10]:8081",
    "https://ns1.example.org:8081", "https://api.hetzner.cloud/v1", "HTTPS://desec.io/api/v1/",
])
def test_accepted_api_urls(url):
    assert check_api_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url, why", [
    ("http://ns1.example.org:8081", "plain http to ns1.example.org"),
    ("http://localhost:8081", "127.0.0.1"),
    ("http://10.0.0.5:8081", "plain http to 10.0.0.5"),
    ("http://198.51.101.1", "plain http"),  # just outside 198.51.100.0/24
    ("http://[2001:db9::1]", "plain http"),
    ("ftp://ns1.example.org", "is not an http(s) URL"),
    ("ns1.example.org:8081", "is not an http(s) URL"),
    ("https://ns1.example.org:99999", "valid host and port"),
    ("https://ns1.example.org/api?key=1", "query or fragment"),
    ("https://ns1.example.org/a b", "whitespace or control"),
])
def test_refused_api_urls(url, why):
    with pytest.raises(ValueError) as exc:
        check_api_url(url)
    assert why in str(exc.value)


def test_credentials_in_the_url_are_refused_and_not_shown():
    with pytest.raises(ValueError) as exc:
        check_api_url(f"https://admin:{TOKEN}@ns1.example.org:8081")
    assert "carries credentials" in str(exc.value)
    assert_no_token(str(exc.value))


def test_settings_use_the_same_rule():
    with pytest.raises(ValidationError) as exc:
        DnsProvider(provider="powerdns", api_url="http://ns1.example.org:8081", secret_file="k")
    assert "plain http" in str(exc.value) and "write api_url = 'https://ns1.example.org:8081'" in str(exc.value)
    # the lab's PowerDNS (a documentation address inside the lab network) and loopback stay allowed
    assert DnsProvider(provider="powerdns", api_url="http://198.51.100.10:8081/", secret_file="k").api_url \
        == "http://198.51.100.10:8081"
    assert DnsProvider(provider="powerdns", api_url="http://127.0.0.1:8081", secret_file="k").api_url \
        == "http://127.0.0.1:8081"
    assert DnsProvider(provider="desec", api_url="https://desec.io/api/v1", secret_env="T").api_url \
        == "https://desec.io/api/v1"


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_providers_refuse_plain_http_to_a_public_name_before_any_request(name):
    make, _ = PROVIDERS[name]
    with pytest.raises(ProviderError, match="plain http") as exc:
        make("http://dns-api.example.net")
    assert_error_clean(exc.value)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_credential_with_whitespace_or_control_characters_is_refused_unseen(name):
    make, _ = PROVIDERS[name]
    bad = {"powerdns": lambda: PowerDNS("http://127.0.0.1:9", TOKEN + "\nX-Other: 1"),
           "hetzner": lambda: Hetzner(TOKEN + "\r\n"),
           "desec": lambda: DeSEC(TOKEN + " second"),
           "cloudflare": lambda: Cloudflare("\x1b" + TOKEN)}[name]
    with pytest.raises(ProviderError, match="whitespace or control characters") as exc:
        bad()
    assert_error_clean(exc.value)


# ------------------------------------------------------------------------------------------ redirects
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_redirects_are_refused_and_the_target_never_sees_a_request(servers, name, status):
    other = servers()  # records every request; must stay empty
    target = f"{other.url}/steal?token={TOKEN}"
    api = servers(lambda *a: (status, {"Location": target}, None))
    make, op = PROVIDERS[name]
    p = make(api.url)
    with pytest.raises(ProviderError) as exc:
        op(p)
    msg = str(exc.value)
    assert f"HTTP {status} redirect to http://127.0.0.1:{other.port}" in msg and "refused" in msg
    assert other.seen == [] and len(api.seen) == 1
    assert_error_clean(exc.value)


def test_a_redirect_on_a_write_is_refused_too(servers):
    other = servers()
    api = servers(lambda method, *a: (307, {"Location": other.url + "/api/v1/x"}, None) if method == "PATCH"
                  else (200, {}, {"rrsets": []}))
    p = PowerDNS(api.url, TOKEN)
    from mailstead.dns.plan import Change

    with pytest.raises(ProviderError, match="HTTP 307 redirect") as exc:
        p.apply("example.org", [Change("add", "mail.example.org", "A", 300, new=("198.51.100.10",))])
    assert other.seen == [] and [m for m, _, _ in api.seen] == ["PATCH"]
    assert_error_clean(exc.value)


def test_an_absolute_url_of_another_origin_is_never_requested(servers):
    other = servers()
    p = PowerDNS(servers().url, TOKEN)
    for url in (other.url + "/api/v1/servers", f"https://127.0.0.1:{other.port}/x",
                f"http://user@127.0.0.1:{other.port}/x"):
        with pytest.raises(ProviderError, match="refusing to send the credential"):
            p.request("GET", url)
    assert other.seen == [] and p.calls == {"read": 0, "write": 0}


# ------------------------------------------------------------------------------------------ pagination
def desec_api(next_link, first=None):
    """A deSEC fake that requires pagination; page ``n`` answers one RRset and ``Link: next_link(n)``."""
    def respond(method, path, query, headers):
        if "cursor" not in query:
            return 400, {"Link": f'<{first or api.url + path + "?cursor=0"}>; rel="first"'}, {"detail": "paginate"}
        n = int(query["cursor"][0] or 0)
        link = next_link(n)
        rr = {"subname": f"h{n}", "type": "A", "ttl": 3600, "records": ["198.51.100.1"]}
        return 200, ({"Link": f'<{link}>; rel="next"'} if link else {}), [rr]

    api = Server(respond)
    return api


@pytest.fixture
def desec_servers():
    made = []

    def make(next_link, first=None):
        s = desec_api(next_link, first)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def test_desec_pagination_on_the_same_origin_works(desec_servers):
    api = desec_servers(lambda n: f"{api.url}/api/v1/domains/example.org/rrsets/?cursor={n + 1}" if n < 3 else None)
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    assert len(p.list_records("example.org")) == 4
    assert p.calls["read"] == 5


@pytest.mark.parametrize("where", ["next", "first"])
def test_desec_pagination_link_to_another_origin_is_refused(servers, desec_servers, where):
    other = servers()
    foreign = f"{other.url}/api/v1/domains/example.org/rrsets/?cursor=1"
    if where == "next":
        api = desec_servers(lambda n: foreign)
    else:
        api = desec_servers(lambda n: None, first=foreign)
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    with pytest.raises(ProviderError, match=f"next-page link points to http://127.0.0.1:{other.port}") as exc:
        p.list_records("example.org")
    assert other.seen == []
    assert all(h.get("Authorization") == f"Token {TOKEN}" for _, _, h in api.seen)  # only the API saw it
    assert_error_clean(exc.value)


def test_desec_pagination_link_with_another_scheme_or_port_is_refused(desec_servers):
    api = desec_servers(lambda n: f"https://127.0.0.1:{api.port}/api/v1/domains/example.org/rrsets/?cursor=9")
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    with pytest.raises(ProviderError, match="not the API's origin"):
        p.list_records("example.org")
    assert len(api.seen) == 2  # the refused plain GET and page 1, nothing over https


@pytest.mark.parametrize("cycle", [1, 3])
def test_desec_repeated_next_page_is_an_error_not_a_loop(desec_servers, cycle):
    # cursor n links to (n + 1) % cycle: with cycle 1 a page links to itself, with 3 pages 0 -> 1 -> 2 -> 0
    api = desec_servers(lambda n: f"{api.url}/api/v1/domains/example.org/rrsets/?cursor={(n + 1) % cycle}")
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    p.max_pages = 50
    with pytest.raises(ProviderError, match="same next page again"):
        p.list_records("example.org")
    assert p.calls["read"] == 1 + cycle


def test_desec_page_count_is_bounded(desec_servers):
    api = desec_servers(lambda n: f"{api.url}/api/v1/domains/example.org/rrsets/?cursor={n + 1}")  # endless
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    p.max_pages = 7
    with pytest.raises(ProviderError, match="more than 7 pages"):
        p.list_records("example.org")
    assert p.calls["read"] == 1 + 7


def hetzner_api(next_page):
    def respond(method, path, query, headers):
        page = int(query.get("page", ["1"])[0])
        return 200, {}, {"rrsets": [{"id": f"h{page}/A", "name": f"h{page}", "type": "A", "ttl": 300,
                                     "records": [{"value": "198.51.100.1", "comment": None}]}],
                         "meta": {"pagination": {"page": page, "next_page": next_page(page)}}}
    return respond


@pytest.mark.parametrize("next_page, why", [
    (lambda page: page, "refusing to loop"),  # the same page again
    (lambda page: 1 if page == 2 else page + 1, "refusing to loop"),  # backwards
    (lambda page: "2", "refusing to loop"),  # not a number
])
def test_hetzner_repeated_or_backward_next_page_is_an_error(servers, next_page, why):
    api = servers(hetzner_api(next_page))
    p = Hetzner(TOKEN, api_url=api.url + "/v1")
    with pytest.raises(ProviderError, match=why) as exc:
        p.list_records("example.org")
    assert p.calls["read"] <= 2
    assert_error_clean(exc.value)


def test_hetzner_page_count_is_bounded(servers):
    api = servers(hetzner_api(lambda page: page + 1))  # endless
    p = Hetzner(TOKEN, api_url=api.url + "/v1")
    p.max_pages = 6
    with pytest.raises(ProviderError, match="more than 6 pages"):
        p.list_records("example.org")
    assert p.calls["read"] == 6


def test_hetzner_pages_forward_normally(servers):
    api = servers(hetzner_api(lambda page: page + 1 if page < 4 else None))
    p = Hetzner(TOKEN, api_url=api.url + "/v1")
    assert len(p.list_records("example.org")) == 4 and p.calls["read"] == 4


def test_cloudflare_page_count_is_bounded(servers):
    def respond(method, path, query, headers):
        if path.endswith("/zones"):
            return 200, {}, {"success": True, "result": [{"id": "z1", "name": "example.org"}]}
        return 200, {}, {"success": True, "result": [], "result_info": {"total_pages": 10 ** 9}}

    api = servers(respond)
    p = Cloudflare(TOKEN, api_url=api.url + "/client/v4")
    p.max_pages = 5
    with pytest.raises(ProviderError, match="more than 5 pages"):
        p.list_records("example.org")
    assert p.calls["read"] == 1 + 5


# ------------------------------------------------------------------------------------------ no credential in errors
def echo_500(name):
    """A 500 whose body echoes the credential the way each API could (error fields, plain text, and
    straddling the 500-character cut of error messages)."""
    bodies = {
        "powerdns": {"error": f"Invalid X-API-Key {TOKEN}"},
        "hetzner": {"error": {"code": "unauthorized", "message": f"token {TOKEN} rejected"}},
        "desec": "x" * 495 + TOKEN,
        "cloudflare": {"success": False, "errors": [{"code": 9109, "message": f"Bearer {TOKEN} invalid"}]},
    }
    return lambda *a: (500, {}, bodies[name])


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_the_credential_never_appears_in_errors_logs_or_output(servers, name, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    make, op = PROVIDERS[name]
    failures = []

    # 1. connection refused
    failures.append(make(f"http://127.0.0.1:{closed_port()}"))
    # 2. HTTP 500 with the credential echoed in the body
    failures.append(make(servers(echo_500(name)).url))
    # 3. a redirect whose target URL carries the credential
    other = servers()
    failures.append(make(servers(lambda *a: (302, {"Location": f"{other.url}/?k={TOKEN}"}, None)).url))
    # 4. an invalid header value reaching requests (InvalidHeader quotes the value): forced past the
    #    constructor's check, as if the session header were set by other code
    p = make(servers().url)
    header = "X-API-Key" if name == "powerdns" else "Authorization"
    p.session.headers[header] = p.session.headers[header] + "\n"
    failures.append(p)

    messages = []
    for p in failures:
        with pytest.raises(ProviderError) as exc:
            op(p)
        assert_error_clean(exc.value)
        assert_no_token(repr(p))
        messages.append(str(exc.value))
    assert "ConnectionError" in messages[0] and "HTTP 500" in messages[1] and "***" in messages[1]
    assert "redirect" in messages[2] and "InvalidHeader" in messages[3]
    assert other.seen == []

    # the deploy's DNS stage with a failing provider: its printed output and log lines hold no credential
    with pytest.raises(ApplyError) as exc:
        run_stage(make_env(secrets_dir=str(tmp_path)), failures[1])
    assert_error_clean(exc.value)
    print(f"error: {exc.value}")  # what the CLI prints
    out = capsys.readouterr()
    assert_no_token(out.out, out.err, caplog.text)


def test_the_credential_never_appears_in_a_write_error(servers):
    from mailstead.dns.plan import Change

    api = servers(lambda method, *a: (400, {}, [{"records": [f"bad {TOKEN}"]}]) if method == "PATCH"
                  else (200, {}, []))
    p = DeSEC(TOKEN, api_url=api.url + "/api/v1")
    with pytest.raises(ProviderError) as exc:
        p.apply("example.org", [Change("add", "example.org", "TXT", 3600, new=('"x"',))])
    assert "***" in str(exc.value)
    assert_error_clean(exc.value)


# ------------------------------------------------------------------------------------------ secret files
def secret_file(tmp_path, text: str, mode: int = 0o600, name: str = "dns-token"):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def dns(path=None, env=None):
    return DnsProvider(provider="desec", secret_file=str(path) if path else None, secret_env=env)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o601])
def test_a_secret_file_readable_by_others_is_refused_with_the_chmod_fix(tmp_path, mode):
    path = secret_file(tmp_path, TOKEN + "\n", mode)
    with pytest.raises(CredentialError) as exc:
        read_secret(dns(path), tmp_path)
    msg = str(exc.value)
    assert str(path) in msg and f"chmod 600 {path}" in msg and f"mode {mode:04o}" in msg
    assert_no_token(msg, repr(exc.value))


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_private_secret_file_is_read(tmp_path, mode):
    path = secret_file(tmp_path, TOKEN + "\n", mode)
    assert read_secret(dns(path), tmp_path) == TOKEN
    assert read_secret(dns("dns-token"), tmp_path) == TOKEN  # relative to secrets_dir


@pytest.mark.parametrize("text", [
    f"{TOKEN}\nsecond-line-{TOKEN[::-1]}\n",  # the reported case: a second line
    f"{TOKEN}\r\n{TOKEN}\r\n",
    f"{TOKEN[:16]} {TOKEN[16:]}\n",  # a space inside
    f"{TOKEN[:16]}\t{TOKEN[16:]}",  # a tab inside
    f"{TOKEN[:16]}\x1b{TOKEN[16:]}\n",  # a control character
    f"{TOKEN[:16]}\x00{TOKEN[16:]}\n",
])
def test_a_malformed_secret_file_is_refused_without_showing_it(tmp_path, text):
    path = secret_file(tmp_path, text)
    with pytest.raises(CredentialError) as exc:
        read_secret(dns(path), tmp_path)
    msg = str(exc.value)
    assert str(path) in msg and "value not shown" in msg
    assert_no_token(msg, repr(exc.value), msg[::-1])


def test_the_reported_two_line_secret_no_longer_reaches_an_error(tmp_path, capsys):
    """The original report: a token file with a second line made requests quote the header in an error."""
    path = secret_file(tmp_path, f"{TOKEN}\nnote: rotate in May\n")
    with pytest.raises(CredentialError, match="more than one non-empty line") as exc:
        from_settings(DnsProvider(provider="powerdns", api_url="http://127.0.0.1:9", secret_file=str(path)),
                      tmp_path)
    assert_error_clean(exc.value)
    assert_no_token(*capsys.readouterr())


def test_blank_lines_around_a_token_are_fine(tmp_path):
    path = secret_file(tmp_path, f"\n  {TOKEN}  \n\n")
    assert read_secret(dns(path), tmp_path) == TOKEN


def test_json_and_bind_key_files_stay_supported(tmp_path):
    secret = "zUaXgY1QbWv3cJ4HkMn5pQ6rS7tU8vW9xY0zA1bC2dE="
    j = secret_file(tmp_path, json.dumps({"name": "mailstead", "algorithm": "hmac-sha256", "secret": secret},
                                         indent=2), name="tsig.json")
    assert read_secret(dns(j), tmp_path) == secret
    b = secret_file(tmp_path, f'key "mailstead" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n',
                    name="tsig.key")
    assert read_secret(dns(b), tmp_path) == secret
    bad = secret_file(tmp_path, json.dumps({"secret": f"{TOKEN}\n{TOKEN}"}), name="bad.json")
    with pytest.raises(CredentialError, match="value not shown") as exc:
        read_secret(dns(bad), tmp_path)
    assert_no_token(str(exc.value))
    loose = secret_file(tmp_path, json.dumps({"secret": secret}), mode=0o644, name="loose.json")
    with pytest.raises(CredentialError, match="chmod 600"):
        read_secret(dns(loose), tmp_path)


def test_secret_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MAILSTEAD_TEST_DNS_TOKEN", TOKEN + "\n")
    assert read_secret(dns(env="MAILSTEAD_TEST_DNS_TOKEN"), tmp_path) == TOKEN
    for bad in (f"{TOKEN}\n{TOKEN}", f"{TOKEN}\x07", f"{TOKEN[:10]} {TOKEN[10:]}"):
        monkeypatch.setenv("MAILSTEAD_TEST_DNS_TOKEN", bad)
        with pytest.raises(CredentialError) as exc:
            read_secret(dns(env="MAILSTEAD_TEST_DNS_TOKEN"), tmp_path)
        msg = str(exc.value)
        assert "MAILSTEAD_TEST_DNS_TOKEN" in msg and "value not shown" in msg
        assert_no_token(msg)


def test_secret_file_permissions_are_those_of_the_file_not_a_symlink(tmp_path):
    target = secret_file(tmp_path, TOKEN, mode=0o644, name="real")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(CredentialError, match="chmod 600"):
        read_secret(dns(link), tmp_path)
    os.chmod(target, 0o600)
    assert read_secret(dns(link), tmp_path) == TOKEN


def test_the_url_rule_module_imports_only_the_standard_library():
    """settings.py imports check_api_url; its module must stay light (no requests, no dnspython)."""
    import ast
    import sys
    from pathlib import Path

    import mailstead.urls as urls

    tree = ast.parse(Path(urls.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", *sys.stdlib_module_names}, names
