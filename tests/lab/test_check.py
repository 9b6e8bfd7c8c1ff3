"""`python -m mailstead check --env production` from the lab's outside world: green (exit 0) on the freshly
deployed lab; then each of three breakages done behind mailstead's back makes it exit 1 and name the problem,
and undoing it makes it green again (one test: the check runs a handful of times, not once per scenario).

- a DKIM TXT record changed at the DNS provider (PowerDNS API), repaired by `dns apply`;
- OpenSMTPD stopped on mail.production.test;
- the MTA-STS policy no longer served (nginx's policy file moved away);
- a trap that accepts mail (trap-last's smtpd replaced by a listener that accepts everything).

Along the way, on mail.production.test: the Debian security check reads the real Sources indexes (forky,
forky-security, trixie-security through the lab's apt cache) and reports a concrete state; the backup check says
"no snapshot yet" (or ok) on the fresh host, a problem after a failed backup run (its repository password moved
away, together with breakage 2: no extra check run), and ok after `backup now`.
"""

from __future__ import annotations

import time

from helpers import drive, mailstead_cmd, pebble_root, problems

ACCEPT_ALL = r"""
import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"220 trap2 ESMTP\r\n")
        for line in self.rfile:
            if line.upper().startswith(b"QUIT"):
                self.wfile.write(b"221 bye\r\n")
                return
            self.wfile.write(b"250 ok\r\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 25), H).serve_forever()
"""
HOST = "mail-prod"
FQDN = "mail.production.test"
POLICY = "/var/www/mailstead/production.test/.well-known/mta-sts.txt"
BACKUP_PASSWORD = "/etc/mailstead/backup/password"


CA = []  # production's certificates come from the lab's ACME CA (pebble): its root, fetched once


def check_production():
    run = mailstead_cmd("check", "--env", "production", "--json", "--ca-file", CA[0], timeout=600)
    assert run.returncode in (0, 1), f"check crashed ({run.returncode}):\n{run.stderr[-3000:]}"
    return run


def _summary(run) -> str:
    return "\n".join(f"{f['status']} {f['check']} {f['subject']}: {f['detail']}" for f in run.json["findings"]
                     if f["status"] != "ok")


def _findings(run, check: str) -> list[dict]:
    return [f for f in run.json["findings"] if f["check"] == check and f["subject"] == FQDN]


def test_check_is_green_then_names_each_breakage(lab, deployed, status, tmp_path):
    CA[:] = [pebble_root(lab, status, tmp_path / "pebble-root.pem")]
    run = check_production()
    assert run.returncode == 0, f"check is not green on the fresh lab:\n{_summary(run)}"
    seen = {f["check"] for f in run.json["findings"]}
    assert {"dns", "ptr", "tls", "mta-sts", "relay", "trap", "units", "services", "queue", "disk", "opensmtpd",
            "opensmtpd-security", "backup"} <= seen, seen
    [sec] = _findings(run, "opensmtpd-security")
    assert (sec["status"] == "ok" and "no Debian security fix for OpenSMTPD 7.9.0p0 in forky, forky-security, "
            "trixie-security" in sec["detail"]) or (sec["status"] == "warning" and "Debian patched" in sec["detail"]), sec
    print(f"opensmtpd-security: {sec['status']}: {sec['detail']}")
    [bk] = _findings(run, "backup")
    assert bk["status"] == "ok" or (bk["status"] == "warning" and "no backup snapshot yet" in bk["detail"]), bk
    had_snapshot = bk["status"] == "ok"
    print(f"green check: {run.seconds:.1f} s, {len(run.json['findings'])} findings")

    # 1. a DKIM TXT record changed at the provider behind mailstead's back
    dkim = [r for r in drive(lab, env="production", records=True)["records"] if "._domainkey." in r[0]]
    name, _, ttl, _ = dkim[0]
    fake = '"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="'
    drive(lab, env="production", seed=[["production.test", name, "TXT", ttl, [fake]]])
    try:
        run = check_production()
        assert run.returncode == 1, _summary(run)
        assert any(f["check"] == "dkim" and name in f["subject"] for f in problems(run)), _summary(run)
    finally:
        drive(lab, env="production", stage="apply")
    # 2. OpenSMTPD stopped on the mail host; and a backup run that fails (its repository password moved away)
    lab.exec(HOST, "systemctl", "stop", "opensmtpd")
    lab.exec(HOST, "mv", BACKUP_PASSWORD, BACKUP_PASSWORD + ".away")
    try:
        assert lab.exec(HOST, "systemctl", "start", "mailstead-backup.service", check=False).returncode != 0
        lab.exec(HOST, "mv", BACKUP_PASSWORD + ".away", BACKUP_PASSWORD)
        run = check_production()
        assert run.returncode == 1, _summary(run)
        named = {(f["check"], f["subject"]) for f in problems(run)}
        assert ("tls", f"{FQDN}:25") in named and ("services", FQDN) in named, _summary(run)
        assert "opensmtpd (inactive)" in _summary(run), _summary(run)
        [bk] = _findings(run, "backup")
        if had_snapshot:
            assert bk["status"] == "warning" and "failed" in bk["detail"], bk
        else:
            assert bk["status"] == "problem" and "no backup snapshot at all; the last run" in bk["detail"], bk
        assert f"backup now --host {FQDN}" in bk["fix"], bk
    finally:
        lab.exec(HOST, "systemctl", "start", "opensmtpd")
        lab.exec(HOST, "sh", "-c", f"[ -e {BACKUP_PASSWORD} ] || mv {BACKUP_PASSWORD}.away {BACKUP_PASSWORD}")
    backup = mailstead_cmd("backup", "now", "--host", FQDN, timeout=600)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    print(f"backup now (production): {backup.seconds:.1f} s")
    # 3. the MTA-STS policy not served
    lab.exec(HOST, "mv", POLICY, POLICY + ".away")
    try:
        run = check_production()
        assert run.returncode == 1, _summary(run)
        assert [f for f in problems(run) if f["check"] == "mta-sts"] == [
            f for f in problems(run)], _summary(run)
        assert any("HTTP 404" in f["detail"] for f in problems(run)), _summary(run)
    finally:
        lab.exec(HOST, "mv", POLICY + ".away", POLICY)

    # 4. a trap that accepts mail (trap-last's smtpd replaced by a listener that says 250 to everything)
    lab.exec("trap2", "systemctl", "stop", "opensmtpd")
    try:
        lab.exec("trap2", "systemd-run", "--unit", "fake-accepting-mx", "python3", "-c", ACCEPT_ALL)
        time.sleep(1)
        run = check_production()
        assert run.returncode == 1, _summary(run)
        assert any(f["check"] == "trap" and "ACCEPTS" in f["detail"] for f in problems(run)), _summary(run)
    finally:
        lab.exec("trap2", "systemctl", "stop", "fake-accepting-mx", check=False)
        lab.exec("trap2", "systemctl", "start", "opensmtpd")

    run = check_production()
    assert run.returncode == 0, f"check is not green again after the repairs:\n{_summary(run)}"
    [bk] = _findings(run, "backup")
    assert bk["status"] == "ok" and "h old" in bk["detail"], bk
