"""Rebuild a server from scratch without losing its identity (README, "Rebuild a server").

mail.staging.test is wiped back to the pristine Debian 13 base image (`labctl rebuild`: same name, addresses
and SSH host keys) and deployed again from the deploy machine alone: it must come back with the same DKIM
selectors and keys, the same TLS key (the DANE "3 1 1" pin), the users' passwords, DNS that needs no write,
and — carried across as the README says — the mail it held. The test ends with staging fully deployed again,
since test files that run after this one use it.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

from helpers import (LABCTL, drive, env_host, find_in_maildir, installed_dkim_keys, lab_ca, net_python, password,
                     run_deploy, swaks, token)

DOMAIN = "staging.test"
USER = "alice@staging.test"

TLS_SCRIPT = r"""
import base64, socket, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
with socket.create_connection((ARGS["ip"], ARGS["port"]), timeout=10) as raw:
    with ctx.wrap_socket(raw, server_hostname=ARGS["name"]) as s:
        print(json.dumps({"der": base64.b64encode(s.getpeercert(binary_form=True)).decode()}))
"""

IMAP_SEARCH_SCRIPT = r"""
import imaplib, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
out = {"login": m.login(ARGS["user"], ARGS["password"])[0]}
m.select("INBOX", readonly=True)
for t in ARGS["tokens"]:  # the subjects of what SEARCH finds (full-text search answers it: flatcurve)
    typ, data = m.search(None, "SUBJECT", t)
    out[t] = []
    for n in data[0].split():
        typ, d = m.fetch(n, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out[t].append(d[0][1].decode().strip())
print(json.dumps(out))
"""


def _spki_sha256(der: bytes) -> str:
    """The DANE "3 1 1" pin of a certificate: sha256 of its SubjectPublicKeyInfo."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    spki = x509.load_der_x509_certificate(der).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _served_pins(lab, host: dict, status) -> dict[int, str]:
    pins = {}
    for port in (465, 993):
        r = net_python(lab, TLS_SCRIPT, {"ip": host["ipv4"], "port": port, "name": host["name"], "ca": lab_ca(status)})
        pins[port] = _spki_sha256(base64.b64decode(r["der"]))
    return pins


def _imap(lab, host: dict, status, tokens: list[str]) -> dict:
    return net_python(lab, IMAP_SEARCH_SCRIPT, {"ip": host["ipv4"], "ca": lab_ca(status), "user": USER,
                                                "password": password(status, USER), "tokens": tokens})


def _exists(lab, host: str, path: str) -> bool:
    return lab.exec(host, "test", "-e", path, check=False).returncode == 0


def _labctl_exec(host: str, *cmd: str, stdin=None, stdout=None) -> None:
    """`labctl exec HOST -- CMD` with binary stdio (the README's copy of /var/vmail through a pipe)."""
    proc = subprocess.run([LABCTL, "exec", host, "--", *cmd], stdin=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]


def test_rebuilt_staging_host_keeps_its_identity_and_its_mail(lab, deployed, status, mail_hosts, tmp_path):
    from mailstead import dkim

    staging = env_host(mail_hosts, "staging")
    host = staging["name"]
    secrets = Path(status["state_dir"]) / "secrets"
    want_keys = {f"{DOMAIN}.{k.selector}.key": hashlib.sha256(k.path.read_bytes()).hexdigest()
                 for k in dkim.published_keys(secrets, DOMAIN)}
    want_txt = {k.selector: k.txt() for k in dkim.published_keys(secrets, DOMAIN)}
    assert {k.algorithm for k in dkim.active_keys(secrets, DOMAIN)} == {"rsa", "ed25519"}

    # ---- the identity before: DKIM on the host and in DNS, TLS key, IMAP login, the zone in PowerDNS
    assert {n: v[2] for n, v in installed_dkim_keys(lab, host).items()} == want_keys
    records = [r for r in drive(lab, env="staging", records=True)["records"]
               if r[0] == DOMAIN or r[0].endswith("." + DOMAIN)]
    names = [[n, t] for n, t, _, _ in records]
    dns_before = drive(lab, resolve=names)["answers"]
    for sel, txt in want_txt.items():
        assert dns_before[f"{sel}._domainkey.{DOMAIN} TXT"], f"DKIM selector {sel} not in DNS"
    key_file = secrets / "lab-ca" / "hosts" / f"{host}.key"
    from cryptography.hazmat.primitives import serialization

    kept_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    kept_pin = hashlib.sha256(kept_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    assert _served_pins(lab, staging, status) == {465: kept_pin, 993: kept_pin}
    machine_id = lab.exec(host, "cat", "/etc/machine-id").stdout

    # ---- mail held by the old server, copied off it as the README says (delivery stopped first)
    old = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--from", "before@outside.example", "--to", USER,
                 "--header", f"Subject: {old}")
    assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, host, USER, old)
    assert _imap(lab, staging, status, [old]) == {"login": "OK", old: [f"Subject: {old}"]}
    progress = "stopped"
    try:
        lab.exec(host, "systemctl", "stop", "opensmtpd", "dovecot")
        backup = tmp_path / "vmail.tar"
        with backup.open("wb") as f:
            _labctl_exec(host, "tar", "-C", "/var/vmail", "-cpf", "-", ".", stdout=f)

        # ---- rebuild: a fresh disk from the base image, same name, addresses and SSH host keys
        progress = "rebuilt"  # (a rebuild that fails part-way leaves the host wiped too)
        took = lab.rebuild("mail-staging")
        print(f"\nrebuild of {host}: {took:.1f} s")
        for path in ("/opt/opensmtpd", "/etc/dovecot/dovecot.conf", "/var/vmail", "/etc/mailstead"):
            assert not _exists(lab, host, path), f"{path} survived the rebuild"
        assert lab.ssh(host, "hostname", "-f").stdout.strip() == host  # strict known_hosts: same host keys
        assert lab.exec(host, "cat", "/etc/machine-id").stdout == machine_id
        assert lab.exec(host, "systemctl", "is-system-running", check=False).stdout.strip() == "running"

        # ---- the real deploy, limited to staging, from nothing but the deploy machine's files
        run = run_deploy("--limit", "staging")
        assert run.returncode == 0, f"redeploy of the rebuilt host failed:\n{run.stderr[-6000:]}"
        print(f"redeploy of {host} after the rebuild: {run.seconds:.1f} s")
        out = run.stdout + run.stderr
        assert f"zone {DOMAIN} (powerdns): up to date" in out, out[-3000:]
        assert not [n for n in run.changed() if n.startswith("DNS")], run.changed()
        plan = drive(lab, env="staging", stage="plan")
        assert plan["changes"] == [] and plan["calls"]["write"] == 0

        assert {n: v[2] for n, v in installed_dkim_keys(lab, host).items()} == want_keys  # same selectors, same keys
        assert drive(lab, resolve=names)["answers"] == dns_before                   # the zone as it was
        assert _served_pins(lab, staging, status) == {465: kept_pin, 993: kept_pin}  # same TLS key: DANE pin holds

        # mail from the outside world is delivered again, and alice logs in with the same password
        new = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "after@outside.example", "--to", USER,
                     "--header", f"Subject: {new}")
        assert "Message accepted" in proc.stdout, proc.stdout
        assert find_in_maildir(lab, host, USER, new)
        assert _imap(lab, staging, status, [old, new]) == {"login": "OK", old: [], new: [f"Subject: {new}"]}

        # ---- the old mail copied back (README): next to what arrived since, owned by this host's vmail user.
        # The copied uid lists renumber what arrived since, so every full-text index (old and new) is dropped and
        # rebuilt: a stale one makes SEARCH answer with the wrong messages.
        lab.exec(host, "systemctl", "stop", "opensmtpd", "dovecot")
        with backup.open("rb") as f:
            _labctl_exec(host, "tar", "-C", "/var/vmail", "-xpf", "-", stdin=f)
        lab.exec(host, "sh", "-c", "find /var/vmail -type d -name fts-flatcurve -prune -exec rm -rf {} + && "
                 "chown -R vmail:vmail /var/vmail && systemctl start dovecot opensmtpd && "
                 "doveadm force-resync -A '*' && doveadm index -A '*'")
        assert _imap(lab, staging, status, [old, new]) == {"login": "OK", old: [f"Subject: {old}"],
                                                           new: [f"Subject: {new}"]}

        # ---- and a second deploy changes nothing
        again = run_deploy("--limit", "staging")
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.changed() == {}, f"the second deploy after the rebuild changed: {again.changed()}"
        assert lab.exec(host, "systemctl", "is-system-running", check=False).stdout.strip() == "running"
        t = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "later@outside.example", "--to", USER,
                     "--header", f"Subject: {t}")
        assert "Message accepted" in proc.stdout and find_in_maildir(lab, host, USER, t), proc.stdout
        progress = "done"
    finally:  # whatever failed, leave staging deployed and serving for the test files that run after this one
        if progress == "rebuilt":
            run_deploy("--limit", "staging")
        elif progress == "stopped":
            lab.exec(host, "systemctl", "start", "dovecot", "opensmtpd", check=False)
