"""Settings that change where OpenSMTPD comes from and what Dovecot listens on, proven on the staging host:

- opensmtpd.source = 'upstream' with opensmtpd.signify_pubkey: the host fetches the tarball and upstream's
  signed checksum list (opensmtpd-<version>.sum.sig next to opensmtpd-<version>.tar.gz, as upstream's archives
  publish them) and checks them with Debian's signify-openbsd before it builds. Upstream cannot be reached from
  the lab, so the infra host (the lab's outside world) serves the same layout: the bytes of the release tarball
  the host already fetched and verified from Debian's archive, and a checksum list signed with a key pair made
  here (real signify format; the verification on the host is the real signify-openbsd).
- imap_starttls: port 143 offers STARTTLS and refuses LOGIN/AUTHENTICATE before it; off (the default), 143 is
  closed.

Each test puts the host back on the normal settings when it ends, so the suite's idempotency still holds.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mailstead.settings import OpenSmtpd
from helpers import (STAMP, env_host, file_sha, find_in_maildir, lab_ca, net_python, password, run_tasks, swaks,
                     token, unit_since)

INFRA_IP = "198.51.100.10"
HTTP_PORT = 8099
SERVE_DIR = "/srv/mailstead-test-upstream"
HTTP_UNIT = "mailstead-test-upstream-http"
APT_DIRECT = "/etc/apt/apt.conf.d/99mailstead-test-upstream"
WORKDIR = "/var/cache/mailstead/opensmtpd"


# ----------------------------------------------------------------------------- signify (format of signify(1))


def signify_keypair(comment: str):
    """(private key, key number, public key file text): 'Ed' + 8-byte key number + 32-byte Ed25519 key."""
    sk = Ed25519PrivateKey.generate()
    keynum = os.urandom(8)
    raw = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pub = f"untrusted comment: {comment} public key\n{base64.b64encode(b'Ed' + keynum + raw).decode()}\n"
    return sk, keynum, pub


def signify_sign_embedded(sk, keynum: bytes, message: bytes) -> bytes:
    """`signify -S -e`: comment line, base64('Ed' + key number + Ed25519 signature), then the message."""
    sig = base64.b64encode(b"Ed" + keynum + sk.sign(message)).decode()
    return f"untrusted comment: verify with the test key\n{sig}\n".encode() + message


# ----------------------------------------------------------------------------- helpers


def _put(lab, host: str, path: str, data: bytes) -> None:
    lab.exec(host, "sh", "-c", f"mkdir -p {os.path.dirname(path)} && base64 -d > {path}",
             input=base64.b64encode(data).decode())


def _smtpd_pid(lab, host: str) -> str:
    return lab.exec(host, "systemctl", "show", "-p", "MainPID", "--value", "opensmtpd").stdout.strip()


def _upstream_deploy(tmp_path, host: str, url: str, key_file) -> object:
    body = f"""
        from mailstead.settings import OpenSmtpd
        o = OpenSmtpd.model_validate(settings.opensmtpd.model_dump() | {{
            "source": "upstream", "upstream_url": {url!r}, "signify_pubkey": {str(key_file)!r}}})
        opensmtpd.deploy(settings.model_copy(update={{"opensmtpd": o}}), env, results)
    """
    return run_tasks(tmp_path, host, body)


def _mail_is_delivered(lab, staging) -> None:
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "x@outside.example", "--to", "alice@staging.test",
                 "--header", f"Subject: {t}")
    assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, staging["name"], "alice@staging.test", t)


# ----------------------------------------------------------------------------- OpenSMTPD from upstream, signify


def test_upstream_source_builds_only_a_tarball_with_a_good_signify_signature(lab, deployed, mail_hosts, tmp_path):
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    version = OpenSmtpd().version
    name = f"opensmtpd-{version}.tar.gz"
    url = f"http://{INFRA_IP}:{HTTP_PORT}/{name}"
    # the release tarball's bytes, as the first deploy fetched them from Debian's archive and checked them
    tarball = base64.b64decode(lab.exec(host, "base64", "-w0", f"{WORKDIR}/{name}").stdout)
    assert len(tarball) > 100_000
    digest = hashlib.sha256(tarball).hexdigest()
    sk, keynum, pub = signify_keypair("mailstead lab upstream")
    _, _, wrong_pub = signify_keypair("some other")
    (tmp_path / "upstream.pub").write_text(pub)
    (tmp_path / "wrong.pub").write_text(wrong_pub)
    # upstream's signed list: `sha256` output ("SHA256 (<file>) = <hex>") signed with `signify -S -e`
    sum_sig = signify_sign_embedded(sk, keynum, f"SHA256 ({name}) = {digest}\n".encode())
    tampered = bytearray(tarball)
    tampered[len(tampered) // 2] ^= 0x01

    stamp_before = lab.exec(host, "cat", STAMP).stdout
    smtpd_before = file_sha(lab, host, "/opt/opensmtpd/sbin/smtpd")
    _put(lab, "infra", f"{SERVE_DIR}/{name.removesuffix('.tar.gz')}.sum.sig", sum_sig)
    _put(lab, "infra", f"{SERVE_DIR}/{name}", bytes(tampered))
    lab.exec("infra", "systemd-run", f"--unit={HTTP_UNIT}", "--collect", "python3", "-m", "http.server",
             "--bind", INFRA_IP, "--directory", SERVE_DIR, str(HTTP_PORT))
    # the lab's hosts send http through the apt cache; this server is reached directly (an apt setting)
    _put(lab, host, APT_DIRECT, f'Acquire::http::Proxy::{INFRA_IP} "DIRECT";\n'.encode())
    try:
        # 1. a tampered tarball with the real signed list: refused at verification, nothing built
        unit = unit_since(lab, host, "opensmtpd")
        run = _upstream_deploy(tmp_path, host, url, tmp_path / "upstream.pub")
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-3000:]
        assert "SIGNATURE CHECK FAILED" in out and f"{name}: FAIL" in out, out[-3000:]
        assert lab.exec(host, "cat", STAMP).stdout == stamp_before, "the stamp changed: something was built"
        assert file_sha(lab, host, "/opt/opensmtpd/sbin/smtpd") == smtpd_before, "smtpd was replaced"
        assert unit_since(lab, host, "opensmtpd") == unit, "smtpd was restarted"
        _mail_is_delivered(lab, staging)

        # 2. the real tarball, but the settings name another key: refused at verification
        _put(lab, "infra", f"{SERVE_DIR}/{name}", tarball)
        run = _upstream_deploy(tmp_path, host, url, tmp_path / "wrong.pub")
        out = run.stdout + run.stderr
        assert run.returncode != 0, out[-3000:]
        assert "SIGNATURE CHECK FAILED" in out and "checked against wrong key" in out, out[-3000:]
        assert lab.exec(host, "cat", STAMP).stdout == stamp_before, "the stamp changed: something was built"
        assert unit_since(lab, host, "opensmtpd") == unit, "smtpd was restarted"

        # 3. the real tarball and the right key: verified, built, installed, serving
        run = _upstream_deploy(tmp_path, host, url, tmp_path / "upstream.pub")
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        stamp = lab.exec(host, "cat", STAMP).stdout
        assert f"opensmtpd {version} source=upstream sha256=signify" in stamp, stamp
        assert unit_since(lab, host, "opensmtpd") != unit, "smtpd was not restarted on the new build"
        assert lab.exec(host, "systemctl", "is-active", "opensmtpd").stdout.strip() == "active"
        _mail_is_delivered(lab, staging)
    finally:
        lab.exec(host, "rm", "-f", APT_DIRECT, check=False)
        lab.exec("infra", "systemctl", "stop", HTTP_UNIT, check=False)
        lab.exec("infra", "rm", "-rf", SERVE_DIR, check=False)
        # back to the normal settings (Debian's archive copy): rebuilt, same stamp as the first deploy
        run = run_tasks(tmp_path, host, "opensmtpd.deploy(settings, env, results)\n")
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert lab.exec(host, "cat", STAMP).stdout == stamp_before
    _mail_is_delivered(lab, staging)


# ----------------------------------------------------------------------------- IMAP on 143 (STARTTLS only)


STARTTLS_SCRIPT = r"""
import imaplib, socket, ssl
out = {}
try:
    socket.create_connection((ARGS["ip"], 143), timeout=5).close()
    out["open"] = True
except (ConnectionRefusedError, TimeoutError):  # refused by the host, or dropped by the firewall
    out["open"] = False
if out["open"]:
    user, pw = ARGS["user"], ARGS["password"]
    m = imaplib.IMAP4(ARGS["ip"], 143, timeout=30)
    out["caps_before"] = list(m.capabilities)
    try:
        out["login_before"] = m.login(user, pw)[0]
    except imaplib.IMAP4.error as e:
        out["login_before"] = "refused: " + str(e)
    try:
        out["auth_before"] = m.authenticate("PLAIN", lambda _: f"\0{user}\0{pw}".encode())[0]
    except imaplib.IMAP4.error as e:
        out["auth_before"] = "refused: " + str(e)
    m.starttls(ssl_context=ssl.create_default_context(cafile=ARGS["ca"]))
    out["tls"] = m.sock.version()
    out["caps_after"] = list(m.capabilities)
    out["login_after"] = m.login(user, pw)[0]
    m.logout()
print(json.dumps(out))
"""


# The Dovecot stage with a setting under test, then the firewall, which opens what the stages before it serve
# (OpenSMTPD's and nginx's ports are added by hand: those stages do not run here)
FIREWALL_TOO = """
from tasks import firewall
results.open_ports += [25, 465, 587, 80, 443]
dovecot.deploy({settings}, env, results)
firewall.deploy(settings, env, results)
"""


def test_imap_starttls_setting_opens_143_with_starttls_required(lab, deployed, mail_hosts, status, tmp_path):
    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    args = {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "alice@staging.test",
            "password": password(status, "alice@staging.test")}
    conf = "/etc/dovecot/dovecot.conf"
    conf_before = file_sha(lab, host, conf)
    assert net_python(lab, STARTTLS_SCRIPT, args) == {"open": False}, "143 is open with the default settings"
    try:
        run = run_tasks(tmp_path, host, FIREWALL_TOO.format(settings='settings.model_copy(update={"imap_starttls": True})'))
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        r = net_python(lab, STARTTLS_SCRIPT, args)
        assert r["open"] is True
        assert "STARTTLS" in r["caps_before"] and "LOGINDISABLED" in r["caps_before"], r
        # refused for want of TLS (the credentials are right: they work after STARTTLS)
        assert r["login_before"].startswith("refused:") and "PRIVACYREQUIRED" in r["login_before"], r
        assert r["auth_before"].startswith("refused:") and "PRIVACYREQUIRED" in r["auth_before"], r
        assert r["tls"] in ("TLSv1.2", "TLSv1.3"), r
        assert "LOGINDISABLED" not in r["caps_after"] and "AUTH=PLAIN" in r["caps_after"], r
        assert r["login_after"] == "OK", r
    finally:
        run = run_tasks(tmp_path, host, FIREWALL_TOO.format(settings="settings"))
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert file_sha(lab, host, conf) == conf_before
    assert net_python(lab, STARTTLS_SCRIPT, args) == {"open": False}, "143 stayed open after the setting was off"
