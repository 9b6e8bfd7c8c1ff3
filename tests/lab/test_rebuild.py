"""Rebuild a server from scratch without losing its identity (README, "Rebuild a server").

mail.staging.test is wiped back to the pristine Debian 13 base image (`labctl rebuild`: same name, addresses
and SSH host keys) and deployed again from the deploy machine alone: it must come back with the same DKIM
selectors and keys, the same TLS key (the DANE "3 1 1" pin), the users' passwords, DNS that needs no write,
and — through the backup (restic, the SFTP repository on the infra host) and `restore --host` — the mail it
held in several folders and the user's Sieve script, with full-text search rebuilt, and rspamd's Bayes data; `check --env staging` is
green afterwards. The test ends with staging fully deployed again, since test files that run after this one use
it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from pathlib import Path

from helpers import (drive, env_host, find_in_maildir, installed_dkim_keys, lab_ca, mailstead_cmd, net_python,
                     password, run_deploy, swaks, token)

DOMAIN = "staging.test"
SIEVE = """require ["fileinto", "mailbox"];
if header :contains "subject" "sieve-file-" { fileinto :create "Filed"; }
"""
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
m.select(ARGS.get("folder", "INBOX"), readonly=True)
for t in ARGS["tokens"]:  # the subjects of what SEARCH finds (full-text search answers it: flatcurve)
    typ, data = m.search(None, ARGS.get("key", "SUBJECT"), t)
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


def _imap(lab, host: dict, status, tokens: list[str], folder: str = "INBOX", key: str = "SUBJECT") -> dict:
    return net_python(lab, IMAP_SEARCH_SCRIPT, {"ip": host["ipv4"], "ca": lab_ca(status), "user": USER,
                                                "password": password(status, USER), "tokens": tokens,
                                                "folder": folder, "key": key})


def _exists(lab, host: str, path: str) -> bool:
    return lab.exec(host, "test", "-e", path, check=False).returncode == 0


def _bayes_spam_learned(lab, host: str, want: int | None = None, timeout: float = 120) -> int:
    """How many messages rspamd's Bayes learned as spam (`rspamc stat`, statfile BAYES_SPAM: the count kept in
    Valkey, which rspamd re-reads every few seconds); with ``want``, waits up to ``timeout`` for that count."""
    deadline = time.monotonic() + timeout
    while True:
        out = lab.exec(host, "rspamc", "stat", check=False).stdout
        m = re.search(r"Statfile: BAYES_SPAM\b.*?learned: (\d+)", out)
        count = int(m.group(1)) if m else None
        if want is None and count is not None or count == want or time.monotonic() > deadline:
            assert count is not None, out
            return count
        time.sleep(2)


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

    # ---- mail held by the old server in two folders (one filed there by the user's Sieve script), backed up
    # with restic to the repository on the infra host (README: "Rebuild a server")
    home = f"/var/vmail/{DOMAIN}/{USER.split('@')[0]}"
    lab.exec(host, "sh", "-c", f"install -d -o vmail -g vmail {home}/sieve && cat > {home}/sieve/filing.sieve && "
             f"ln -sfn sieve/filing.sieve {home}/.dovecot.sieve && chown -h vmail:vmail {home}/sieve/filing.sieve "
             f"{home}/.dovecot.sieve", input=SIEVE)
    old, filed = token(), "sieve-file-" + token()
    for subject in (old, filed):
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "before@outside.example", "--to", USER,
                     "--header", f"Subject: {subject}", "--body", f"body{subject}")
        assert "Message accepted" in proc.stdout, proc.stdout
    assert find_in_maildir(lab, host, USER, old) and find_in_maildir(lab, host, USER, filed, folder="Filed")
    assert _imap(lab, staging, status, [old]) == {"login": "OK", old: [f"Subject: {old}"]}
    # rspamd's Bayes data (in Valkey): one more message learned as spam, as a user's move into Junk does
    learned = _bayes_spam_learned(lab, host)
    t = token()  # a Message-ID of its own: rspamd learns a message id once
    spam = f"From: x@outside.example\nTo: {USER}\nMessage-ID: <{t}@outside.example>\nSubject: cheap {t}\n\n" + " ".join(
        f"offer{i} {token()} winner prize casino" for i in range(12)) + "\n"
    lab.exec(host, "rspamc", "learn_spam", input=spam)
    learned += 1
    assert _bayes_spam_learned(lab, host, want=learned) == learned
    run = mailstead_cmd("backup", "now", "--host", host, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    progress = "backed up"
    try:
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
        # the OpenSMTPD build used the verified tarball the deploy machine kept (secrets/opensmtpd/), uploaded
        assert any(n.startswith("OpenSMTPD ") and "tarball from the deploy machine" in n for n in run.changed()), \
            run.changed()

        assert {n: v[2] for n, v in installed_dkim_keys(lab, host).items()} == want_keys  # same selectors, same keys
        assert drive(lab, resolve=names)["answers"] == dns_before                   # the zone as it was
        assert _served_pins(lab, staging, status) == {465: kept_pin, 993: kept_pin}  # same TLS key: DANE pin holds

        # mail from the outside world is delivered again, and alice logs in with the same password
        new = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "after@outside.example", "--to", USER,
                     "--header", f"Subject: {new}", "--body", f"body{new}")
        assert "Message accepted" in proc.stdout, proc.stdout
        assert find_in_maildir(lab, host, USER, new)
        assert _imap(lab, staging, status, [old, new]) == {"login": "OK", old: [], new: [f"Subject: {new}"]}

        # ---- restore from the backup (README): the old mail comes back next to what arrived since, in its
        # folders, with the Sieve script; every full-text index is rebuilt (body search finds old and new)
        assert _bayes_spam_learned(lab, host, want=0, timeout=30) == 0  # a fresh Valkey: Bayes knows nothing yet
        run = mailstead_cmd("restore", "--host", host, timeout=900)
        assert run.returncode == 0, run.stdout + run.stderr
        print(f"restore of {host}: {run.seconds:.1f} s")
        assert _bayes_spam_learned(lab, host, want=learned) == learned, "rspamd's Bayes data did not come back"
        assert _imap(lab, staging, status, [old, new]) == {"login": "OK", old: [f"Subject: {old}"],
                                                           new: [f"Subject: {new}"]}
        assert _imap(lab, staging, status, [filed], folder="Filed") == {"login": "OK",
                                                                       filed: [f"Subject: {filed}"]}
        body = _imap(lab, staging, status, [f"body{old}", f"body{new}"], key="BODY")
        assert all(len(body[f"body{t}"]) == 1 for t in (old, new)), body
        again_filed = "sieve-file-" + token()
        proc = swaks(lab, "--server", staging["ipv4"], "--from", "after@outside.example", "--to", USER,
                     "--header", f"Subject: {again_filed}")
        assert "Message accepted" in proc.stdout, proc.stdout
        assert find_in_maildir(lab, host, USER, again_filed, folder="Filed"), "the restored Sieve script did not run"
        check = mailstead_cmd("check", "--env", "staging", timeout=600)
        assert check.returncode == 0, f"check is not green after the rebuild:\n{check.stdout[-4000:]}"

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
