"""The two programs on smtpd's AUTH path, run as smtpd runs them: table-dovecot and filter-authguard.

table-dovecot is started as a real process speaking smtpd's table protocol on stdin/stdout; Dovecot's side is
a small fake of its auth client protocol on a unix socket in a temporary directory (the lab tests use the
real Dovecot). filter-authguard's state machine is driven with smtpd's report/filter lines and a clock.
"""

from __future__ import annotations

import base64
import importlib.machinery
import importlib.util
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

FILES = Path(__file__).resolve().parents[2] / "files" / "opensmtpd"


def load(name: str):
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(FILES / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- a fake Dovecot auth socket


class FakeDovecot:
    """Dovecot's auth client protocol (VERSION/MECH/DONE, AUTH -> OK/FAIL) with one account."""

    def __init__(self, path: Path, user: bytes, password: bytes):
        self.path, self.user, self.password = path, user, password
        self.requests: list[list[bytes]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn):
        conn.sendall(b"VERSION\t1\t3\nMECH\tPLAIN\tplaintext\nMECH\tLOGIN\tplaintext\nSPID\t1\nCUID\t1\n"
                     b"COOKIE\tx\nDONE\n")
        buf = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                fields = line.split(b"\t")
                if fields[0] != b"AUTH":
                    continue
                self.requests.append(fields)
                resp = next(f[5:] for f in fields if f.startswith(b"resp="))
                _, user, password = base64.b64decode(resp).split(b"\0", 2)
                verdict = b"OK" if (user, password) == (self.user, self.password) else b"FAIL"
                conn.sendall(verdict + b"\t" + fields[1] + b"\tuser=" + user + b"\n")

    def close(self):
        self.sock.close()


@pytest.fixture
def table(tmp_path):
    dovecot = FakeDovecot(tmp_path / "auth-smtpd", b"alice@example.org", b"right pass")
    proc = subprocess.Popen([sys.executable, str(FILES / "table-dovecot"), str(tmp_path / "auth-smtpd")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(b"config|smtpd-version|7.9.0\nconfig|protocol|0.1\nconfig|tablename|dovecot\nconfig|ready\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == b"register|auth\n"
    assert proc.stdout.readline() == b"register|ready\n"

    def ask(key: bytes, rid: bytes = b"0000abcd") -> bytes:
        proc.stdin.write(b"table|0.1|1700000000.000000|dovecot|check|auth|" + rid + b"|" + key + b"\n")
        proc.stdin.flush()
        return proc.stdout.readline()

    yield ask, proc, dovecot
    proc.stdin.close()
    proc.wait(timeout=5)
    dovecot.close()


HOSTILE_PASSWORDS = [
    b"\xff\xfe\xfd",                      # not UTF-8
    b"caf\xc3",                           # truncated UTF-8
    b"tab\there\tand\tthere",
    b"pipe|found|x",
    b"colon:colon:colon",
    b"%s%s%s%n%x%p",
    b"{format}{0}",
    b"\x01\x02\x1b[2J",
    b"a" * 5000,
    b"",
]


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS, ids=range(len(HOSTILE_PASSWORDS)))
def test_table_answers_every_hostile_password_with_a_plain_failure_and_keeps_running(table, password):
    ask, proc, _ = table
    assert ask(b"alice@example.org:" + password, b"00c0ffee") == b"check-result|00c0ffee|not-found\n"
    assert proc.poll() is None
    assert ask(b"alice@example.org:right pass") == b"check-result|0000abcd|found\n"


@pytest.mark.parametrize("user", [b"\xff@example.org", b"a|b@example.org", b"a\tb@example.org", b"", b"nobody",
                                  b"x" * 300 + b"@example.org", b"%n@example.org", b"alice@exa mple.org"])
def test_table_refuses_names_that_cannot_be_an_account_without_asking_dovecot(table, user):
    ask, proc, dovecot = table
    assert ask(user + b":right pass") == b"check-result|0000abcd|not-found\n"
    assert dovecot.requests == []
    assert proc.poll() is None


def test_table_asks_dovecot_without_its_shared_penalty_and_passes_bytes_unchanged(table):
    ask, _, dovecot = table
    assert ask(b"alice@example.org:\xff:|x") == b"check-result|0000abcd|not-found\n"
    fields = dovecot.requests[-1]
    assert b"no-penalty" in fields and b"service=smtp" in fields
    resp = next(f[5:] for f in fields if f.startswith(b"resp="))
    assert base64.b64decode(resp) == b"\0alice@example.org\0\xff:|x"


def test_table_without_dovecot_says_error_for_that_request_only(tmp_path):
    proc = subprocess.run([sys.executable, str(FILES / "table-dovecot"), str(tmp_path / "missing")],
                          input=b"config|ready\ntable|0.1|1.0|dovecot|check|auth|00000001|alice@example.org:pw\n"
                                b"table|0.1|1.0|dovecot|lookup|credentials|00000002|alice@example.org\n"
                                b"table|0.1|1.0|dovecot|update|00000003\n",
                          capture_output=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[2:] == [b"check-result|00000001|error|dovecot auth unavailable",
                                           b"lookup-result|00000002|not-found", b"update-result|00000003|ok"]
    assert b"pw" not in proc.stderr


# ----------------------------------------------------------------------------- filter-authguard

guard_mod = load("filter-authguard")


def connect(g, sid: str, src: str, now: float = 0.0):
    return g.feed(f"report|0.7|{now}|smtp-in|link-connect|{sid}|host.example|pass|{src}|198.51.100.11:465", now)


def auth(g, sid: str, token: str, now: float):
    return g.feed(f"filter|0.7|{now}|smtp-in|auth|{sid}|{token}|PLAIN c2VjcmV0", now)


def result(g, sid: str, verdict: str, now: float, user: str = "alice@example.org"):
    return g.feed(f"report|0.7|{now}|smtp-in|link-auth|{sid}|{verdict}|{user}", now)


def proceed(sid, token):
    return f"filter-result|{sid}|{token}|proceed"


def test_guard_lets_a_clean_source_proceed_at_once():
    g = guard_mod.Guard()
    connect(g, "s1", "198.51.100.1:40000")
    assert auth(g, "s1", "t1", 0.0) == [proceed("s1", "t1")]


def test_guard_holds_back_a_guessing_source_and_never_its_neighbour():
    g = guard_mod.Guard()
    connect(g, "bad", "198.51.100.250:40000")
    connect(g, "good", "198.51.100.1:40001")
    now = 0.0
    assert auth(g, "bad", "t0", now) == [proceed("bad", "t0")]
    result(g, "bad", "fail", now)
    # the guesser's next AUTH waits 1 s, then 2 s, 4 s ...
    for n, wait in enumerate([1.0, 2.0, 4.0, 8.0, 15.0, 15.0], start=1):
        assert auth(g, "bad", f"t{n}", now) == []
        # meanwhile another source's AUTH goes straight through
        assert auth(g, "good", f"g{n}", now) == [proceed("good", f"g{n}")]
        result(g, "good", "pass", now)
        assert g.due(now + wait - 0.01) == []
        now += wait
        assert g.due(now) == [proceed("bad", f"t{n}")]
        result(g, "bad", "fail", now)


def test_guard_serialises_a_sources_parallel_sessions():
    g = guard_mod.Guard()
    for i in range(8):
        connect(g, f"s{i}", f"198.51.100.250:{40000 + i}")
    out = [line for i in range(8) for line in auth(g, f"s{i}", f"t{i}", 0.0)]
    assert out == [proceed("s0", "t0")]  # one AUTH of that source at a time
    assert result(g, "s0", "fail", 0.1) == []  # the next waits its penalty
    assert g.due(1.1) == [proceed("s1", "t1")]


def test_guard_disconnects_after_the_limit_until_the_failures_age_out():
    g = guard_mod.Guard()
    connect(g, "s", "[2001:db8:51::99]:40000")
    now = 0.0
    for i in range(guard_mod.BLOCK_AFTER):
        out = auth(g, "s", f"t{i}", now) or g.due(now + guard_mod.MAX_DELAY)
        assert out and out[0].endswith("|proceed")
        now += guard_mod.MAX_DELAY
        result(g, "s", "fail", now)
    # the same /64, another address and session: refused without a password check
    connect(g, "s2", "[2001:db8:51::1234]:40001", now)
    assert auth(g, "s2", "x", now) == ["filter-result|s2|x|disconnect|" + guard_mod.BLOCKED_REPLY]
    later = now + guard_mod.WINDOW + 1
    assert auth(g, "s2", "y", later) == [proceed("s2", "y")]


def test_guard_frees_the_slot_when_the_client_leaves_or_never_answers():
    g = guard_mod.Guard()
    connect(g, "a", "198.51.100.7:1")
    connect(g, "b", "198.51.100.7:2")
    assert auth(g, "a", "ta", 0.0) == [proceed("a", "ta")]
    assert auth(g, "b", "tb", 0.0) == []
    assert g.feed("report|0.7|1|smtp-in|link-disconnect|a", 1.0) == [proceed("b", "tb")]
    connect(g, "c", "198.51.100.7:3")
    assert auth(g, "c", "tc", 2.0) == []              # b's AUTH LOGIN never finishes ...
    assert g.due(1.0 + guard_mod.HOLD) == [proceed("c", "tc")]  # ... and stops blocking after HOLD


@pytest.mark.parametrize("line", ["", "garbage", "filter|0.7|1|smtp-in", "report|0.7|1|smtp-in|link-auth|zz",
                                  "report|0.7|1|smtp-in|link-connect|s|a|b", "filter|0.7|1|smtp-in|auth|s|t|\udcff"])
def test_guard_survives_malformed_lines(line):
    g = guard_mod.Guard()
    g.feed(line, 0.0)


def test_guard_process_registers_and_answers(tmp_path):
    lines = ("config|smtpd-version|7.9.0\nconfig|protocol|0.7\nconfig|subsystem|smtp-in\nconfig|ready\n"
             "report|0.7|1|smtp-in|link-connect|00aa|rdns|pass|198.51.100.1:5000|198.51.100.11:587\n"
             "filter|0.7|1|smtp-in|auth|00aa|00bb|PLAIN \xff\n")
    proc = subprocess.run([sys.executable, str(FILES / "filter-authguard")], input=lines.encode("latin-1"),
                          capture_output=True, timeout=30)
    out = proc.stdout.decode().splitlines()
    assert out[-1] == "filter-result|00aa|00bb|proceed"
    assert "register|filter|smtp-in|auth" in out and "register|ready" in out
    assert proc.returncode == 0, proc.stderr


def test_source_key_groups_ipv6_by_64_and_unmaps_ipv4():
    assert guard_mod.source_key("[2001:db8:51::99]:25") == "2001:db8:51::/64"
    assert guard_mod.source_key("[::ffff:198.51.100.4]:25") == "198.51.100.4"
    assert guard_mod.source_key("198.51.100.4:25") == "198.51.100.4"
