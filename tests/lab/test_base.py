"""The base stage on booted Debian 13 hosts: what `make lab` promises before any mail is involved."""

from __future__ import annotations

import time


def test_every_mailstead_host_boots_clean(lab, deployed, mailstead_hosts):
    for h in mailstead_hosts:
        state = lab.exec(h["name"], "systemctl", "is-system-running", check=False).stdout.strip()
        failed = lab.exec(h["name"], "systemctl", "--failed", "--no-legend", "--plain", check=False).stdout
        assert state == "running", f"{h['name']} is {state}; failed units:\n{failed}"


def test_hosts_carry_their_fqdn(lab, deployed, mailstead_hosts):
    for h in mailstead_hosts:
        assert lab.exec(h["name"], "hostname", "-f").stdout.strip() == h["name"]


def test_lab_names_resolve_from_outside_and_between_hosts(lab, deployed, mail_hosts):
    for h in mail_hosts:
        out = lab.net("getent", "hosts", h["name"]).stdout
        assert h["ipv4"] in out or h["ipv6"] in out
    staging, production = sorted(mail_hosts, key=lambda h: h["environment"] != "staging")
    out = lab.exec(production["name"], "getent", "ahostsv4", staging["name"]).stdout
    assert staging["ipv4"] in out


def test_ssh_refuses_passwords(lab, deployed, mail_hosts):
    """Keys only: the server offers no password or keyboard-interactive authentication."""
    h = mail_hosts[0]
    proc = lab.net(
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "PubkeyAuthentication=no",
        "-o", "ConnectTimeout=5", f"nobody@{h['ipv4']}", "true", check=False,
    )
    assert proc.returncode != 0
    assert "Permission denied (publickey)" in proc.stderr, proc.stderr


def test_effective_sshd_config_is_keys_only(lab, deployed, mail_hosts):
    effective = lab.exec(mail_hosts[0]["name"], "sshd", "-T").stdout.lower().splitlines()
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective
    assert "permitrootlogin without-password" in effective or "permitrootlogin prohibit-password" in effective


def test_chrony_syncs_over_nts_with_the_servers_from_settings(lab, deployed, mailstead_hosts):
    """Every host holds NTS cookies from the lab's time server (settings: ntp_servers) and selected it."""
    for h in mailstead_hosts:
        deadline = time.monotonic() + 60
        while True:
            authdata = lab.exec(h["name"], "chronyc", "-N", "authdata").stdout
            sources = lab.exec(h["name"], "chronyc", "-n", "sources").stdout
            row = next((line.split() for line in authdata.splitlines() if line.startswith("infra.lab.test")), None)
            synced = row is not None and row[1] == "NTS" and int(row[8]) > 0 and "^*" in sources
            if synced or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert synced, f"{h['name']}: no NTS-authenticated, selected source\n{authdata}\n{sources}"


def test_unattended_security_upgrades_enabled(lab, deployed, mail_hosts):
    dump = lab.exec(mail_hosts[0]["name"], "apt-config", "dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in dump
    assert lab.exec(mail_hosts[0]["name"], "unattended-upgrade", "--dry-run").returncode == 0


def test_apt_sources_are_trixie_with_updates_and_security(lab, deployed, mail_hosts):
    policy = lab.exec(mail_hosts[0]["name"], "apt-cache", "policy").stdout
    for suite in ("n=trixie,", "n=trixie-updates,", "n=trixie-security,"):
        assert suite in policy, f"{suite} missing from apt-cache policy:\n{policy}"


def test_network_hardening_sysctls_active(lab, deployed, mail_hosts):
    out = lab.exec(mail_hosts[0]["name"], "sysctl", "-n", "net.ipv4.conf.all.accept_redirects",
                   "net.ipv4.tcp_syncookies").stdout.split()
    assert out == ["0", "1"]


def test_second_deploy_changes_nothing(redeployed):
    assert redeployed.returncode == 0, redeployed.stderr[-4000:]
    assert redeployed.results["totals"]["error"] == 0
    assert redeployed.changed() == {}, f"a second deploy changed: {redeployed.changed()}"
    assert redeployed.results["totals"]["no_change"] > 20  # it did run the whole deploy
