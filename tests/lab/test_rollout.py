"""`python -m mailstead rollout` on the lab: staging, its checks and a real round trip (587 -> IMAP) first,
production only when staging is green.

One test, two rollouts: a green one carries a setting change (`imap_starttls = True` added to the lab's
group_data/all.py: Dovecot serves 143 and the firewall opens it) to staging, checks staging, then deploys
production (production's SSH log shows the deploy's login) and both hosts serve 143 afterwards; then, with an outside firewall rule on the staging host dropping port 25 (a breakage the deploy does not
repair: a table of its own in the host's nftables, next to the firewall stage's), the rollout exits non-zero, names the
failed check, and production's SSH log shows no login at all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from helpers import ROOT, mailstead_cmd, password, pebble_root, run_deploy

from mailstead.secrets import write_private

STAGING_USER = "alice@staging.test"
TABLE = "mailstead_rollout_test"
LAB_ALL = ROOT / "tests" / "lab" / "group_data" / "all.py"
IMAP_143 = "import socket; socket.create_connection(('{ip}', 143), timeout=5).recv(64)"


def _serves_143(lab, ip: str) -> bool:
    return lab.net("python3", "-c", IMAP_143.format(ip=ip), check=False).returncode == 0


def _prod_ssh_logins(lab, since: float) -> list[str]:
    out = lab.exec("mail-prod", "journalctl", "-u", "ssh", "--since", f"@{int(since)}", "--no-pager", "-o", "cat",
                   check=False).stdout
    return [line for line in out.splitlines() if "Accepted publickey" in line]


def test_rollout_gates_production_on_staging(lab, deployed, status, tmp_path):
    ca = pebble_root(lab, status, tmp_path / "pebble-root.pem")  # production's ACME CA (the lab's pebble)
    cred = Path(status["state_dir"]) / "secrets" / "rollout" / "staging.json"
    write_private(cred, json.dumps({"address": STAGING_USER, "password": password(status, STAGING_USER)}))

    addresses = [h["ipv4"] for h in status["hosts"] if "mailservers" in h["roles"]]
    assert addresses and not any(_serves_143(lab, ip) for ip in addresses)
    original = LAB_ALL.read_text()
    LAB_ALL.write_text(original + "\nimap_starttls = True  # test_rollout's setting change\n")
    try:
        since = time.time() - 1
        run = mailstead_cmd("rollout", "--ca-file", ca, timeout=1800)
        assert run.returncode == 0, f"green rollout failed:\n{run.stdout[-4000:]}\n{run.stderr[-3000:]}"
        assert "OK       round-trip   mail.staging.test 587->993" in run.stdout, run.stdout[-3000:]
        assert _prod_ssh_logins(lab, since), "the green rollout did not deploy production"
        assert all(_serves_143(lab, ip) for ip in addresses), "the setting change did not reach both hosts"
        print(f"green rollout (a one-setting change): {run.seconds:.1f} s")
    finally:
        LAB_ALL.write_text(original)
        back = run_deploy()  # the lab as its group data says again (143 closed)
        assert back.returncode == 0, back.stderr[-3000:]
    assert not any(_serves_143(lab, ip) for ip in addresses)

    rules = f"table inet {TABLE} {{\n chain input {{\n  type filter hook input priority -10;\n  tcp dport 25 drop\n }}\n}}\n"
    lab.exec("mail-staging", "nft", "-f", "-", input=rules)  # the host's own nft (not the firewall stage's table)
    try:
        time.sleep(1.5)  # journal timestamps are whole seconds
        since = time.time()
        run = mailstead_cmd("rollout", "--ca-file", ca, timeout=1800)
        assert run.returncode != 0, run.stdout[-3000:]
        assert "rollout: STOPPED: staging failed its checks" in run.stdout, run.stdout[-3000:]
        assert "tls mail.staging.test:25" in run.stdout.splitlines()[-1], run.stdout[-3000:]
        assert _prod_ssh_logins(lab, since) == [], "the stopped rollout logged in to production"
    finally:
        lab.exec("mail-staging", "nft", "delete", "table", "inet", TABLE)
