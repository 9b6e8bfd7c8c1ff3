"""`python -m mailstead domain add` on the lab's staging environment: a new mail domain from nothing to mail
that arrives and leaves signed.

- before the zone exists at the lab's PowerDNS, `domain add` refuses and says to create the zone; nothing changed;
- the zone is created through the PowerDNS API (what an operator does at a provider; the lab's resolver forwards
  every `.test` name to PowerDNS, so it resolves at once); `domain add --dry` then plans and writes nothing;
- `domain add --apply-dns` prints the new domain's MX, SPF, DKIM and DMARC records in its plan, applies them, and
  deploys only the stages a domain lives in (staging.test authorizes the new domain's DMARC reports); a second
  `domain add` of the same domain is refused;
- `user add` of a user in the new domain; a real Postfix in the outside world (infra) delivers to that user
  through the MX it finds in DNS; mail the user submits on 587 to production is DKIM-signed as the new domain
  (rsa and ed25519), verified against the lab's DNS.
- in production (ACME certificates from the lab's pebble): `domain add --apply-dns` also gets a certificate
  for mta-sts.DOMAIN, and the new domain's MTA-STS policy is served over HTTPS, valid for that name.
The group_data files, the zones, the domains' DKIM keys and DNS state are removed again, and the hosts are
redeployed with the same stages.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import (
    ROOT,
    drive,
    env_host,
    find_in_maildir,
    lab_ca,
    mailstead_cmd,
    pebble_root,
    run_deploy,
    swaks,
    token,
    verify_signatures,
)
from mailstead.domain import STAGES

DOMAIN = "extra.test"
USER = f"carol@{DOMAIN}"
PASSWORD = "extra-Domain-pass-1"
GROUP_DATA = ROOT / "tests" / "lab" / "group_data" / "staging.py"
PROD_DOMAIN = "extra2.test"
PROD_GROUP_DATA = ROOT / "tests" / "lab" / "group_data" / "production.py"


def _forget(secrets: Path, domain: str) -> None:
    """The deploy machine's DKIM keys and DNS state of a domain the test added."""
    shutil.rmtree(secrets / "dkim" / domain, ignore_errors=True)
    for state in (secrets / "dns").glob(f"*/{domain}.json"):
        state.unlink()


def test_domain_add_plans_dns_deploys_and_the_new_domain_sends_and_receives(lab, deployed, postfix, status,
                                                                             mail_hosts):
    staging, prod = env_host(mail_hosts, "staging"), env_host(mail_hosts, "production")
    secrets = Path(status["state_dir"]) / "secrets"
    original = GROUP_DATA.read_text()
    drive(lab, delete_zones=[DOMAIN])
    try:
        # no zone at the provider yet: refused, nothing written
        run = mailstead_cmd("domain", "add", DOMAIN, "--env", "staging")
        assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
        assert f"has no zone {DOMAIN}" in run.stderr and f"Create the zone {DOMAIN}" in run.stderr, run.stderr
        assert GROUP_DATA.read_text() == original

        drive(lab, create_zones=[DOMAIN])  # the operator creates the zone at the provider
        # --dry: the plan and pyinfra --dry, and nothing written: group_data, DKIM keys, the zone stay as they were
        run = mailstead_cmd("domain", "add", DOMAIN, "--env", "staging", "--dry")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "<new-key-made-by-the-deploy>" in run.stdout and f"dry run: deploying {STAGES}" in run.stdout
        assert GROUP_DATA.read_text() == original and not (secrets / "dkim" / DOMAIN).exists()
        assert drive(lab, resolve=[[DOMAIN, "MX"]])["answers"][f"{DOMAIN} MX"] == []
        run = mailstead_cmd("domain", "add", DOMAIN.upper(), "--env", "staging", "--apply-dns")
        out = run.stdout + run.stderr  # pyinfra's operation table is on stderr
        assert run.returncode == 0, out[-5000:]
        print(f"domain add --apply-dns + deploy: {run.seconds:.1f} s")
        plan = run.stdout.split("DNS plan of staging", 1)[1]
        for needle in (f"+ add    {DOMAIN} MX", f"+ add    {DOMAIN} TXT", "v=spf1",
                       f"._domainkey.{DOMAIN} TXT", f"+ add    _dmarc.{DOMAIN} TXT", "v=DMARC1"):
            assert needle in plan, plan
        # the DMARC reports of the new domain go to postmaster@staging.test: staging.test authorizes them
        assert f"+ add    {DOMAIN}._report._dmarc.staging.test TXT" in plan, plan
        assert "DNS: applied" in run.stdout and f"deploying {STAGES},certificate_issue" in run.stdout
        assert f"nginx: MTA-STS policy of {DOMAIN}" in out and "DKIM" in out, out[-3000:]
        for other_stage in ("chrony", "sshd", "nftables", "fail2ban", "unbound"):
            assert other_stage not in out, f"domain add's deploy ran {other_stage} operations"
        answers = drive(lab, resolve=[[DOMAIN, "MX"]])["answers"]
        assert any(a.endswith(" mail.staging.test.") for a in answers[f"{DOMAIN} MX"]), answers

        again = mailstead_cmd("domain", "add", DOMAIN, "--env", "staging")
        assert again.returncode == 1 and "already a domain of this environment" in again.stderr, again.stderr

        run = mailstead_cmd("user", "add", USER, input_text=PASSWORD + "\n")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        print(f"user add + deploy: {run.seconds:.1f} s")

        # from the outside world: a real Postfix finds the new domain's MX in DNS
        t = token()
        lab.exec(postfix, "sendmail", "-f", "peer@lab.test", USER,
                 input=f"From: peer@lab.test\nTo: {USER}\nSubject: {t}\n\nto the new domain\n")
        assert find_in_maildir(lab, "mail-staging", USER, t, timeout=30), "the new domain's user got no mail"

        # submitted on 587 as the new domain's user: signed with the new domain's keys
        t = token()
        proc = swaks(lab, "--server", staging["ipv4"], "--port", "587", "-tls", "--tls-ca-path", lab_ca(status),
                     "-au", USER, "-ap", PASSWORD, "--from", USER, "--to", "bob@production.test",
                     "--h-Subject", f"signed {t}", "--body", f"body {t}")
        assert proc.returncode == 0, proc.stdout[-3000:]
        path = find_in_maildir(lab, prod["name"], "bob@production.test", t, timeout=30)
        assert path, "mail from the new domain did not arrive at production"
        sigs = verify_signatures(lab, lab.exec(prod["name"], "cat", path).stdout.encode())
        assert sorted(s["a"] for s in sigs) == ["ed25519-sha256", "rsa-sha256"], sigs
        assert all(s["ok"] and s["d"] == DOMAIN for s in sigs), sigs
    finally:
        GROUP_DATA.write_text(original)
        back = run_deploy("--limit", "staging", env={"MAILSTEAD_STAGES": STAGES})
        dns_back = mailstead_cmd("dns", "apply", "--env", "staging")  # the report authorization goes again
        drive(lab, delete_zones=[DOMAIN])
        _forget(secrets, DOMAIN)
        assert back.returncode == 0, back.stderr[-3000:]
        assert dns_back.returncode == 0, dns_back.stdout[-2000:] + dns_back.stderr[-2000:]


def test_domain_add_with_acme_certifies_the_new_mta_sts_name(lab, deployed, status, tmp_path):
    secrets = Path(status["state_dir"]) / "secrets"
    original = PROD_GROUP_DATA.read_text()
    stages = f"{STAGES},certificate_issue"
    drive(lab, create_zones=[PROD_DOMAIN])
    try:
        run = mailstead_cmd("domain", "add", PROD_DOMAIN, "--env", "production", "--apply-dns")
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-5000:]
        print(f"domain add --apply-dns + deploy (ACME issuance included): {run.seconds:.1f} s")
        assert f"deploying {stages} to mail.production.test" in run.stdout, run.stdout[-3000:]
        assert f"mta-sts.{PROD_DOMAIN}" in out.split("ACME: certificate for", 1)[1].split("\n", 1)[0], out[-3000:]
        root = pebble_root(lab, status, tmp_path / "pebble-root.pem")
        policy = lab.net("curl", "-sSf", "--cacert", root,
                         f"https://mta-sts.{PROD_DOMAIN}/.well-known/mta-sts.txt", check=False, timeout=60)
        assert policy.returncode == 0, policy.stderr
        assert "version: STSv1" in policy.stdout and "mx: mail.production.test" in policy.stdout, policy.stdout
    finally:
        PROD_GROUP_DATA.write_text(original)
        back = run_deploy("--limit", "mail.production.test", env={"MAILSTEAD_STAGES": stages})
        dns_back = mailstead_cmd("dns", "apply", "--env", "production")
        drive(lab, delete_zones=[PROD_DOMAIN])
        _forget(secrets, PROD_DOMAIN)
        assert back.returncode == 0, back.stderr[-3000:]
        assert dns_back.returncode == 0, dns_back.stdout[-2000:] + dns_back.stderr[-2000:]
