"""Certificates from an ACME CA: the lab's production host (mail.production.test, tls.mode 'acme') gets its
certificate from pebble on infra during the deploy and renews it on the host with mailstead's own client.

One module, in this order (each step builds on the one before, to keep `make test` short):
  1. after the deploy, a client in the outside world that trusts only pebble's current root (fetched from
     pebble's management interface) verifies every TLS listener, each for the right name;
  2. a second deploy changes nothing and asks for no certificate (same serial);
  3. a forced renewal by the timer's own service puts a new serial on every listener, mail is accepted before
     and right after; with pebble stopped the run fails with one clear journal line and the old certificate
     keeps serving; with pebble back (a new root: pebble forgets everything) the next run succeeds, with the
     same account key and certificate key;
  4. DNS-01 through the PowerDNS adapter (the production host switched to it for one run, then back);
  5. a host that lost its ACME files (what a rebuild does to them) and is deployed again finds its ACME account
     again (no new registration) and keeps its certificate key.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from helpers import (drive, env_host, find_in_maildir, pebble_root, probe_tls, run_deploy, run_tasks, swaks,
                     tls_listeners, token)
from mailstead import acme_keys

ACME_SERVICE = "mailstead-acme.service"
RENEW_NOW = "/var/lib/mailstead/acme/renew-now"
KEY = "/etc/mailstead/tls/privkey.pem"


@pytest.fixture(scope="module")
def prod(mail_hosts):
    return env_host(mail_hosts, "production")


@pytest.fixture(scope="module")
def listeners(prod):
    return tls_listeners(prod["name"], "production.test")


def assert_all_verified(results, host_name, serial=None) -> str:
    bad = [r for r in results if not r["ok"]]
    assert not bad, f"listeners that did not verify against pebble's root: {bad}"
    serials = {r["serial"] for r in results}
    assert len(serials) == 1, f"listeners disagree on the certificate: {results}"
    for r in results:
        assert host_name in r["sans"] and "mta-sts.production.test" in r["sans"], r
    (got,) = serials
    if serial is not None:
        assert got == serial, results
    return got


def run_acme_service(lab, host: str):
    """Start the timer's own service once (as the timer does) and wait for it; its exit status and journal."""
    since = lab.exec(host, "date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    t0 = time.monotonic()
    p = lab.exec(host, "systemctl", "start", ACME_SERVICE, check=False, timeout=300)
    took = time.monotonic() - t0
    journal = lab.exec(host, "journalctl", "-u", ACME_SERVICE, "--since", since, "--no-pager", "-o", "cat",
                       check=False).stdout
    return p.returncode, journal, took


def test_every_listener_presents_the_acme_certificate_for_the_right_name(lab, deployed, status, prod, listeners,
                                                                          tmp_path):
    root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
    results = probe_tls(lab, prod["ipv4"], root, listeners)
    assert_all_verified(results, prod["name"])
    # the certificate is not from the lab CA: that CA alone verifies none of them
    lab_ca = f"{status['state_dir']}/secrets/lab-ca/ca.crt"
    assert not any(r["ok"] for r in probe_tls(lab, prod["ipv4"], lab_ca, listeners[:1]))


def test_second_deploy_changes_nothing_and_asks_for_no_certificate(lab, deployed, redeployed, status, prod,
                                                                    listeners, tmp_path):
    assert redeployed.returncode == 0, redeployed.stderr[-3000:]
    assert redeployed.changed() == {}, redeployed.changed()
    # the certificate in place was issued before the second deploy started
    state = json.loads(lab.exec(prod["short"], "cat", "/var/lib/mailstead/acme/state.json").stdout)
    now = float(lab.exec(prod["short"], "date", "+%s").stdout)
    issued = dt.datetime.fromisoformat(state["issued_at"]).timestamp()
    assert issued < now - redeployed.seconds, (state, redeployed.seconds)
    root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
    assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"], serial=state["serial"])


def test_forced_renewal_then_a_failing_ca_then_recovery(lab, deployed, status, prod, listeners, tmp_path):
    host = prod["short"]
    root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
    first = assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"])
    key_before = lab.exec(host, "sha256sum", KEY).stdout.split()[0]
    account_before = lab.exec(host, "sha256sum", "/var/lib/mailstead/acme/account.key").stdout.split()[0]

    # 1. forced renewal through the timer's service: a new serial everywhere, mail accepted before and after
    t_before = token()
    assert swaks(lab, "--server", prod["ipv4"], "--to", "bob@production.test", "--from", "x@outside.example",
                 "--header", f"Subject: {t_before}").returncode == 0
    lab.exec(host, "touch", RENEW_NOW)
    rc, journal, took = run_acme_service(lab, host)
    assert rc == 0, journal
    assert "using the existing ACME account" in journal and "installed certificate serial" in journal, journal
    t_after = token()
    assert swaks(lab, "--server", prod["ipv4"], "--to", "bob@production.test", "--from", "x@outside.example",
                 "--header", f"Subject: {t_after}").returncode == 0
    second = assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"])
    assert second != first
    for t in (t_before, t_after):
        assert find_in_maildir(lab, prod["name"], "bob@production.test", t, timeout=30), t
    print(f"forced renewal run: {took:.1f}s")

    # 2. the CA is down: the run fails, says why in the journal, the old certificate keeps serving
    lab.exec("infra", "systemctl", "stop", "pebble")
    try:
        lab.exec(host, "touch", RENEW_NOW)
        rc, journal, _ = run_acme_service(lab, host)
        assert rc != 0
        failed = [ln for ln in journal.splitlines() if "FAILED" in ln]
        assert failed and f"serial {second}" in failed[0] and "keeps serving" in failed[0], journal
        state = lab.exec(host, "systemctl", "is-failed", ACME_SERVICE, check=False).stdout.strip()
        assert state == "failed"
        assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"], serial=second)
    finally:
        lab.provision_pebble()  # back, with a new root (pebble keeps nothing across restarts)

    # 3. the next run succeeds (renew-now is still there), same keys; the old root no longer verifies it
    rc, journal, _ = run_acme_service(lab, host)
    assert rc == 0, journal
    new_root = pebble_root(lab, status, tmp_path / "pebble-root-2.pem")
    third = assert_all_verified(probe_tls(lab, prod["ipv4"], new_root, listeners), prod["name"])
    assert third not in (first, second)
    assert lab.exec(host, "sha256sum", KEY).stdout.split()[0] == key_before  # DANE: the key stays
    assert lab.exec(host, "sha256sum", "/var/lib/mailstead/acme/account.key").stdout.split()[0] == account_before
    assert lab.exec(host, "test", "-e", RENEW_NOW, check=False).returncode != 0


DNS01_BODY = """
from pyinfra.operations import server
from tasks import certificate_issue, certificates
settings = settings.model_copy(update={"tls": settings.tls.model_copy(update={"acme_challenge": "%s"})})
certificates.deploy(settings, env, results)
if %r:
    server.shell(name="renew at the next run", commands=["touch /var/lib/mailstead/acme/renew-now"])
    certificate_issue.deploy(settings, env, results)
"""


def test_dns_01_through_the_powerdns_adapter(lab, deployed, status, prod, listeners, tmp_path):
    """tls.acme_challenge = 'dns-01' on the production host (the real tasks with that one setting changed):
    the host gets the lab PowerDNS credential (root only) and the provider adapters, and its client proves the
    names with _acme-challenge TXT records through mailstead's PowerDNS adapter; pebble validates them over
    lab DNS, every listener gets the new certificate, the TXT records are gone afterwards. Then back to
    http-01 (the credential leaves the host)."""
    host = prod["short"]
    since = lab.exec(host, "date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    old = json.loads(lab.exec(host, "cat", "/var/lib/mailstead/acme/state.json").stdout)["serial"]
    try:
        run = run_tasks(tmp_path, prod["name"], DNS01_BODY % ("dns-01", True))
        assert run.returncode == 0, run.stderr[-4000:]
        assert lab.exec(host, "stat", "-c", "%a %U", "/etc/mailstead/acme-dns.secret").stdout.split() == ["600", "root"]
        journal = lab.exec(host, "journalctl", "-u", ACME_SERVICE, "--since", since, "--no-pager", "-o", "cat").stdout
        assert "dns-01: published 3 TXT record(s) in production.test through powerdns" in journal, journal
        assert "dns-01: removed 3 TXT record(s)" in journal and "installed certificate" in journal, journal
        root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
        new = assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"])
        assert new != old
        left = drive(lab, resolve=[[f"_acme-challenge.{n}", "TXT"] for n in (prod["name"], "mta-sts.production.test")])
        assert not any(left["answers"].values()), left
    finally:
        back = run_tasks(tmp_path, prod["name"], DNS01_BODY % ("http-01", False))
        assert back.returncode == 0, back.stderr[-4000:]
    assert lab.exec(host, "test", "-e", "/etc/mailstead/acme-dns.secret", check=False).returncode != 0


def test_a_host_without_its_acme_files_gets_the_same_account_and_key_back(lab, deployed, status, prod, listeners,
                                                                         tmp_path):
    """Last in this module. What a rebuild does to the ACME identity, without the ~4 minutes of a real rebuild
    (bench/acme_time.py rebuilds mail.production.test for real and checks the same): the host loses its ACME
    state, account key, client, configuration, certificate and key; a deploy (`--limit production`) restores
    the keys from the deploy machine's secrets_dir, and the client finds its account at pebble again (the same
    account URL: no new registration) and gets a new certificate for the same key (a TLSA 3 1 1 record would
    stay valid). Leaves production deployed."""
    host = prod["short"]
    state_before = json.loads(lab.exec(host, "cat", "/var/lib/mailstead/acme/state.json").stdout)
    spki = f"openssl pkey -in {KEY} -pubout -outform DER | sha256sum"
    spki_before = lab.exec(host, "sh", "-c", spki).stdout
    lab.exec(host, "sh", "-c", "systemctl stop mailstead-acme.timer && journalctl --rotate -q && "
             "journalctl --vacuum-time=1s -q; rm -rf /var/lib/mailstead/acme /etc/mailstead/acme.json "
             "/usr/local/lib/mailstead/mailstead /etc/mailstead/tls/fullchain.pem /etc/mailstead/tls/privkey.pem")

    run = run_deploy("--limit", "production")
    assert run.returncode == 0, run.stderr[-4000:]
    print(f"deploy --limit production: {run.seconds:.1f}s")

    state_after = json.loads(lab.exec(host, "cat", "/var/lib/mailstead/acme/state.json").stdout)
    assert state_after["account"] == state_before["account"]
    journal = lab.exec(host, "journalctl", "-u", ACME_SERVICE, "--no-pager", "-o", "cat").stdout
    assert "using the existing ACME account" in journal and "registered a new ACME account" not in journal, journal
    spki_after = lab.exec(host, "sh", "-c", spki).stdout
    assert spki_after == spki_before
    secrets = Path(status["state_dir"]) / "secrets"
    assert spki_after.split()[0] == acme_keys.cert_key_spki_sha256(secrets, prod["name"])  # the TLSA data
    root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
    serial = assert_all_verified(probe_tls(lab, prod["ipv4"], root, listeners), prod["name"])
    assert serial != state_before["serial"]
    assert lab.exec(host, "systemctl", "is-active", "mailstead-acme.timer").stdout.strip() == "active"
