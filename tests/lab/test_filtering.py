"""Filtering and signing: rspamd in OpenSMTPD's path on 25 and 465/587, proven with real mail between the lab's
environments and from its outside world.

- a broken rspamd option injected through a setting fails at `rspamadm configtest`; the running rspamd keeps
  its configuration (same process) and keeps filtering and signing (the tests after it)
- mail submitted on 587 by alice@staging.test to bob@production.test carries two DKIM signatures (rsa-sha256
  and ed25519-sha256) that dkimpy verifies against the keys published in the lab's DNS; the receiving rspamd
  says R_DKIM_ALLOW and DMARC pass; mail forwarded through an alias for an outside sender is not signed as ours,
  and leaves with an SRS-rewritten envelope sender that passes SPF at the receiver
- GTUBE from the outside world is refused at SMTP; a clean message lands in INBOX with rspamd's
  Authentication-Results; a client listed in the lab's "junk" blocklist lands in Junk (X-Spam: yes); both carry
  exactly one Return-Path and one Delivered-To
- the lab's blocklist zone: a listed client is refused, an unlisted one is not (rspamd asks through the host's
  Unbound, which forwards to the lab DNS)
- greylisting: a never-seen client whose score reaches the greylist action gets 451, and its retry after the
  lab's timeout (15 s) is accepted
- IMAPSieve learning: a move into Junk raises rspamd's learned count, a move back to INBOX too (ham), a move
  from Junk to Trash does not
- Unbound answers on 127.0.0.1 and is the host's and rspamd's resolver
- the spamtrap sources map: a listed client gets MAILSTEAD_SPAMTRAP_SOURCE; rspamd starts without the file
- DKIM rotation: after `rotate` + `activate` and a deploy, mail is signed with the new selectors and verifies
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailstead import dkim
from helpers import (
    drive,
    env_host,
    find_in_maildir,
    lab_ca,
    net_python,
    password,
    replies,
    run_deploy,
    run_tasks,
    swaks,
    token,
    verify_signatures,
)

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# outside clients (198.51.100.240-249, the lab's pool) and the lab blocklist each is listed in
LISTED = {"198.51.100.241": "grey", "198.51.100.242": "block", "198.51.100.243": "junk"}
UNLISTED = "198.51.100.244"
GREYLIST_TIMEOUT = 15  # tests/lab/group_data/all.py

IMAP_MOVE_SCRIPT = r"""
import imaplib, ssl
ctx = ssl.create_default_context(cafile=ARGS["ca"])
m = imaplib.IMAP4_SSL(ARGS["ip"], 993, ssl_context=ctx, timeout=30)
m.login(ARGS["user"], ARGS["password"])
m.select(ARGS["src"])
typ, data = m.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
uids = []
for item in data:
    if isinstance(item, tuple) and ARGS["subject"].encode() in item[1]:
        uids.append(item[0].split(b"UID ")[1].split()[0])
res = m.uid("MOVE", uids[-1], ARGS["dst"])[0] if uids else "NOTFOUND"
m.logout()
print(json.dumps({"result": res if isinstance(res, str) else res.decode()}))
"""


def send(lab, server_ip: str, to: str, subject: str, body: str = "hello", source: str | None = None,
         sender: str = "someone@outside.example", extra: tuple = ()):
    args = ["--server", server_ip, "--from", sender, "--to", to, "--h-Subject", subject, "--body", body, *extra]
    if source:
        args += ["--local-interface", source]
    return swaks(lab, *args)


def rspamd_learned(lab, host: str) -> int:
    out = lab.exec(host, "rspamc", "stat").stdout
    for line in out.splitlines():
        if line.startswith("Messages learned:"):
            return int(line.split(":")[1])
    raise AssertionError(out)


def list_in_lab_blocklists(lab):
    """The lab's DNS blocklists under lab.test (PowerDNS on infra): <reversed address>.<kind>.dnsbl.lab.test A 127.0.0.2."""
    seed = []
    for ip, kind in LISTED.items():
        rev = ".".join(reversed(ip.split(".")))
        seed.append(["lab.test", f"{rev}.{kind}.dnsbl.lab.test", "A", 60, ["127.0.0.2"]])
    drive(lab, env="production", seed=seed)


@pytest.fixture(scope="module")
def filtering(lab, deployed, mail_hosts):
    list_in_lab_blocklists(lab)
    return env_host(mail_hosts, "staging"), env_host(mail_hosts, "production")


# ----------------------------------------------------------------------------- configtest before activation


def test_broken_rspamd_option_fails_configtest_and_rspamd_keeps_running(lab, filtering, tmp_path):
    staging, _ = filtering
    name = staging["name"]
    before = lab.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "rspamd").stdout.strip()
    run = run_tasks(tmp_path, name, """
        from tasks import rspamd as rspamd_stage
        broken = settings.rspamd.model_copy(update={"local_config": {"phishing.conf": "openphish_enabled = [\\n"}})
        rspamd_stage.deploy(settings.model_copy(update={"rspamd": broken}), env, results)
    """)
    assert run.returncode != 0, "a deploy with a broken rspamd option succeeded"
    assert "/etc/rspamd/local.d/phishing.conf failed its check" in run.stdout + run.stderr
    assert lab.exec(name, "test", "-e", "/etc/rspamd/local.d/phishing.conf", check=False).returncode != 0
    after = lab.exec(name, "systemctl", "show", "-p", "MainPID", "--value", "rspamd").stdout.strip()
    assert before == after and lab.exec(name, "systemctl", "is-active", "rspamd").stdout.strip() == "active"
    # still filtering: GTUBE refused
    proc = send(lab, staging["ipv4"], "alice@staging.test", "gtube-after-broken " + token(), body=GTUBE)
    assert any(r.startswith("550") and "Gtube" in r for r in replies(proc)), proc.stdout[-2000:]


def test_local_config_file_is_written_and_removed_with_the_setting(lab, filtering, tmp_path):
    staging, _ = filtering
    name, path = staging["name"], "/etc/rspamd/local.d/phishing.conf"
    try:
        run = run_tasks(tmp_path, name, """
            r = settings.rspamd.model_copy(update={"local_config": {"phishing.conf": "openphish_enabled = false;"}})
            rspamd.deploy(settings.model_copy(update={"rspamd": r}), env, results)
        """)
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert "openphish_enabled = false;" in lab.exec(name, "cat", path).stdout
    finally:
        run = run_tasks(tmp_path, name, "rspamd.deploy(settings, env, results)\n")
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert lab.exec(name, "test", "-e", path, check=False).returncode != 0, "the dropped local_config file stayed"
    assert lab.exec(name, "systemctl", "is-active", "rspamd").stdout.strip() == "active"


# ----------------------------------------------------------------------------- DKIM signing


def rspamd_log_for(lab, host: str, needle: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = lab.exec(host, "sh", "-c", f"grep -h -F -- '{needle}' /var/log/rspamd/rspamd.log || true").stdout
        if out.strip() or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


def test_submitted_mail_is_dual_signed_and_verifies_against_lab_dns(lab, filtering, status):
    staging, prod = filtering
    t = token()
    pw = password(status, "alice@staging.test")
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "-tls", "--tls-ca-path", lab_ca(status),
                 "-au", "alice@staging.test", "-ap", pw, "--from", "alice@staging.test",
                 "--to", "bob@production.test", "--h-Subject", f"signed {t}", "--body", f"body {t}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    path = find_in_maildir(lab, prod["name"], "bob@production.test", t, timeout=30)
    assert path, "the submitted message did not arrive at production"
    message = lab.exec(prod["name"], "cat", path).stdout.encode()
    sigs = verify_signatures(lab, message)
    assert sorted(s["a"] for s in sigs) == ["ed25519-sha256", "rsa-sha256"], sigs
    assert all(s["ok"] and s["d"] == "staging.test" for s in sigs), sigs
    head = message.split(b"\n\n", 1)[0].decode()
    assert head.count("dkim=pass") == 2 and "dmarc=pass" in head, head
    # the receiving rspamd's own verdict (its log line of this message)
    msgid = next(line.split(":", 1)[1].strip() for line in head.splitlines() if line.lower().startswith("message-id:"))
    log = rspamd_log_for(lab, prod["name"], msgid.strip("<>"))
    assert "R_DKIM_ALLOW" in log and "DMARC_POLICY_ALLOW" in log, log[-2000:]


def submit_and_verify(lab, status, staging, prod) -> list[dict]:
    t = token()
    proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "-tls", "--tls-ca-path", lab_ca(status),
                 "-au", "alice@staging.test", "-ap", password(status, "alice@staging.test"),
                 "--from", "alice@staging.test", "--to", "bob@production.test", "--h-Subject", f"signed {t}",
                 "--body", f"body {t}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    path = find_in_maildir(lab, prod["name"], "bob@production.test", t, timeout=30)
    assert path, "the submitted message did not arrive at production"
    return verify_signatures(lab, lab.exec(prod["name"], "cat", path).stdout.encode())


def test_forwarded_mail_is_srs_rewritten_passes_spf_and_is_not_signed(lab, filtering):
    staging, prod = filtering
    t = token()
    proc = send(lab, staging["ipv4"], "fwd@staging.test", f"relayed {t}", body=f"body {t}")
    assert proc.returncode == 0, proc.stdout[-3000:]
    path = find_in_maildir(lab, prod["name"], "bob@production.test", t, timeout=30)
    assert path, "the forwarded message did not arrive at production"
    head = lab.exec(prod["name"], "sed", "-n", "1,/^$/p", path).stdout
    assert "DKIM-Signature" not in head, head
    # SRS: the envelope sender is ours now, so the receiver's SPF check of it passes
    return_path = next(line for line in head.splitlines() if line.startswith("Return-Path:"))
    assert "<SRS0=" in return_path and return_path.endswith("=someone@staging.test>"), return_path
    assert 'spf=pass' in head and 'smtp.mailfrom="SRS0=' in head, head


# ----------------------------------------------------------------------------- spam, blocklists, greylisting


def test_gtube_refused_clean_in_inbox_with_rspamd_headers_listed_client_in_junk(lab, filtering):
    staging, _ = filtering
    t = token()
    proc = send(lab, staging["ipv4"], "alice@staging.test", f"gtube {t}", body=GTUBE)
    assert any(r.startswith("550") for r in replies(proc)), proc.stdout[-2000:]
    clean = send(lab, staging["ipv4"], "alice@staging.test", f"clean {t}", body=f"clean {t}")
    assert clean.returncode == 0, clean.stdout[-2000:]
    junk = send(lab, staging["ipv4"], "alice@staging.test", f"junk {t}", body=f"junk {t}", source="198.51.100.243")
    assert junk.returncode == 0, junk.stdout[-2000:]
    path = find_in_maildir(lab, staging["name"], "alice@staging.test", f"clean {t}")
    assert path, "the clean message is not in INBOX"
    head = lab.exec(staging["name"], "sed", "-n", "1,/^$/p", path).stdout
    assert "Authentication-Results: mail.staging.test" in head and "X-Spam: yes" not in head, head
    assert not find_in_maildir(lab, staging["name"], "alice@staging.test", f"gtube {t}", timeout=1)
    spam = find_in_maildir(lab, staging["name"], "alice@staging.test", f"junk {t}", folder="Junk")
    assert spam, "the message of a client in the junk blocklist is not in Junk"
    spam_head = lab.exec(staging["name"], "sed", "-n", "1,/^$/p", spam).stdout
    assert "X-Spam: yes" in spam_head
    # one Return-Path and one Delivered-To (OpenSMTPD's LMTP client and Dovecot's LMTP both write them)
    for h in (head, spam_head):
        names = [line.split(":", 1)[0].lower() for line in h.splitlines() if not line[:1].isspace()]
        assert names.count("return-path") == 1 and names.count("delivered-to") == 1, h


def test_lab_blocklist_listed_client_refused_unlisted_accepted(lab, filtering):
    staging, _ = filtering
    t = token()
    listed = send(lab, staging["ipv4"], "bob@staging.test", f"listed {t}", source="198.51.100.242")
    unlisted = send(lab, staging["ipv4"], "bob@staging.test", f"unlisted {t}", source=UNLISTED)
    assert any(r.startswith("550") for r in replies(listed)), listed.stdout[-2000:]
    assert unlisted.returncode == 0, unlisted.stdout[-2000:]
    assert find_in_maildir(lab, staging["name"], "bob@staging.test", f"unlisted {t}")
    log = rspamd_log_for(lab, staging["name"], "RBL_BLOCK_DNSBL_LAB_TEST")
    assert "RBL_BLOCK_DNSBL_LAB_TEST" in log


def test_greylisting_451_then_accepted_after_the_timeout(lab, filtering):
    staging, _ = filtering
    t = token()
    body = f"greylist {t}"
    sender = f"{t}@outside.example"  # never seen: rspamd remembers a passed sender/recipient/client for days
    first = send(lab, staging["ipv4"], "bob@staging.test", f"grey {t}", body=body, source="198.51.100.241",
                 sender=sender, extra=("--h-Date", "Sun, 29 Nov 2026 05:00:00 +0000", "--h-Message-Id", f"<{t}@outside.example>"))
    assert any(r.startswith("451") for r in replies(first)), first.stdout[-2000:]
    time.sleep(GREYLIST_TIMEOUT + 2)
    retry = send(lab, staging["ipv4"], "bob@staging.test", f"grey {t}", body=body, source="198.51.100.241",
                 sender=sender, extra=("--h-Date", "Sun, 29 Nov 2026 05:00:00 +0000", "--h-Message-Id", f"<{t}@outside.example>"))
    assert retry.returncode == 0, retry.stdout[-2000:]
    assert find_in_maildir(lab, staging["name"], "bob@staging.test", body)


# ----------------------------------------------------------------------------- learning


def test_moves_into_and_out_of_junk_teach_rspamd_trash_does_not(lab, filtering, status):
    staging, _ = filtering
    host = staging["name"]
    t = token()
    for n in ("a", "b"):
        proc = send(lab, staging["ipv4"], "bob@staging.test", f"learn-{n} {t}", body=f"learn {n} {t} " * 30)
        assert proc.returncode == 0
        assert find_in_maildir(lab, host, "bob@staging.test", f"learn-{n} {t}")
    args = {"ip": staging["ipv4"], "ca": lab_ca(status), "user": "bob@staging.test",
            "password": password(status, "bob@staging.test")}

    def move(subject, src, dst):
        r = net_python(lab, IMAP_MOVE_SCRIPT, dict(args, subject=subject, src=src, dst=dst))
        assert r["result"] == "OK", r

    def learned_after(before, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            now = rspamd_learned(lab, host)
            if now != before or time.monotonic() > deadline:
                return now
            time.sleep(0.5)

    start = rspamd_learned(lab, host)
    move(f"learn-a {t}", "INBOX", "Junk")
    after_spam = learned_after(start)
    assert after_spam == start + 1, (start, after_spam)
    move(f"learn-a {t}", "Junk", "INBOX")
    after_ham = learned_after(after_spam)
    assert after_ham == after_spam + 1, (after_spam, after_ham)
    move(f"learn-b {t}", "INBOX", "Junk")
    after_spam2 = learned_after(after_ham)
    assert after_spam2 == after_ham + 1
    move(f"learn-b {t}", "Junk", "Trash")
    time.sleep(3)
    assert rspamd_learned(lab, host) == after_spam2, "a move from Junk to Trash taught rspamd"


# ----------------------------------------------------------------------------- the resolver, the controller


def test_unbound_is_the_hosts_and_rspamds_resolver_controller_on_localhost(lab, filtering, status):
    staging, _ = filtering
    host = staging["name"]

    def queries():
        out = lab.exec(host, "unbound-control", "stats_noreset").stdout
        return int(next(line.split("=")[1] for line in out.splitlines() if line.startswith("total.num.queries=")))

    before = queries()
    name = f"{token()}.production.test"
    lab.exec(host, "getent", "hosts", name, check=False)
    assert queries() > before, "the host's lookup did not go through Unbound"
    assert "nameserver 127.0.0.1" in lab.exec(host, "cat", "/etc/resolv.conf").stdout
    dump = lab.exec(host, "rspamadm", "configdump", "options").stdout
    assert "127.0.0.1:53" in dump
    listening = lab.exec(host, "ss", "-Htlnp").stdout
    for line in listening.splitlines():
        if ":11334 " in line or ":6379 " in line or ":11333 " in line:
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::1]:")), line
    assert lab.exec(host, "stat", "-c", "%a %U", "/etc/mailstead/rspamd/controller.password").stdout.split() == \
        ["600", "root"]
    inc = lab.exec(host, "cat", "/etc/rspamd/local.d/worker-controller.inc").stdout
    assert 'password = "$2$' in inc
    # the hash on the host is of the password kept in secrets_dir: `rspamadm pw -c` (it reads from a terminal)
    digest = next(line.split('"')[1] for line in inc.splitlines() if line.startswith("password = "))
    secret = Path(status["state_dir"], "secrets", "rspamd", "controller.password").read_text().strip()
    quoted = digest.replace("$", "\\$")  # inside the outer shell's double quotes
    check = f"(sleep 1; cat) | script -qc \"rspamadm pw -c -p '{quoted}'\" /dev/null"
    assert "password correct" in lab.exec(host, "sh", "-c", check, input=secret + "\n", timeout=30).stdout


def wait_rspamd(lab, host: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while lab.exec(host, "rspamc", "stat", check=False).returncode != 0:
        assert time.monotonic() < deadline, "rspamd does not answer"
        time.sleep(0.5)
    time.sleep(1)  # the normal workers come up with the controller


def test_spamtrap_sources_map_scores_a_listed_client_and_rspamd_starts_without_it(lab, filtering):
    staging, _ = filtering
    host, mapfile = staging["name"], "/var/lib/mailstead/spamtrap-sources.map"
    try:
        lab.exec(host, "sh", "-c", f"echo 198.51.100.245 > {mapfile} && systemctl reload rspamd")
        wait_rspamd(lab, host)
        t = token()
        proc = send(lab, staging["ipv4"], "bob@staging.test", f"trapped {t}", source="198.51.100.245")
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert "MAILSTEAD_SPAMTRAP_SOURCE" in rspamd_log_for(lab, host, "MAILSTEAD_SPAMTRAP_SOURCE(")
        lab.exec(host, "rm", "-f", mapfile)
        assert lab.exec(host, "/usr/local/lib/mailstead/rspamd-configtest", check=False).returncode == 0
        lab.exec(host, "systemctl", "restart", "rspamd")
        wait_rspamd(lab, host)
        proc = send(lab, staging["ipv4"], "alice@staging.test", f"gtube-no-map {t}", body=GTUBE)
        assert any(r.startswith("550") for r in replies(proc)), proc.stdout[-2000:]
    finally:  # as the deploy leaves it: an empty map
        lab.exec(host, "sh", "-c", f"umask 022; : > {mapfile} && systemctl reload rspamd")
        wait_rspamd(lab, host)


# ----------------------------------------------------------------------------- DKIM rotation (last: it changes the keys)


def test_after_rotate_and_activate_a_deploy_signs_with_the_new_selectors(lab, filtering, status):
    """The last test of this module: it leaves staging.test signing with a new pair (the old one published)."""
    staging, prod = filtering
    secrets_dir = status["state_dir"] + "/secrets"
    new = {k.selector for k in dkim.rotate(secrets_dir, "staging.test")}
    dkim.activate(secrets_dir, "staging.test")
    run = run_deploy("--limit", staging["name"])
    assert run.returncode == 0, run.stderr[-4000:]
    sigs = submit_and_verify(lab, status, staging, prod)
    assert {s["s"] for s in sigs} == new and all(s["ok"] for s in sigs), (new, sigs)
    assert sorted(s["a"] for s in sigs) == ["ed25519-sha256", "rsa-sha256"]
