"""On each host over SSH (one login per host): failed systemd units, and on mail hosts the mail queue (size,
oldest message) and the disk use of the mail store."""

from __future__ import annotations

import subprocess
import time
from typing import Any, Iterable

from mailstead.check.findings import Context, Finding, Target, ok, problem, warning

MAIL_STORE = "/var/vmail"
MAIL_SERVICES = ("opensmtpd", "dovecot", "nginx")  # must be active on a mail host
SEP = "--mailstead-check--"
# One shell script, one SSH login: failed units, then (mail hosts) the queue and the mail store's disk use.
SCRIPT = f"""
systemctl list-units --state=failed --no-legend --plain --no-pager | awk '{{print $1}}'
echo {SEP}
smtpctl=$(command -v smtpctl || echo /opt/opensmtpd/sbin/smtpctl)
[ -x "$smtpctl" ] && "$smtpctl" show queue 2>&1 || echo no-smtpctl
echo {SEP}
[ -d {MAIL_STORE} ] && df -P {MAIL_STORE} | tail -n 1 || echo no-store
echo {SEP}
date +%s
echo {SEP}
for u in {" ".join(MAIL_SERVICES)}; do echo "$u $(systemctl is-active $u)"; done
"""


def ssh_argv(data: Any, fqdn: str) -> list[str]:
    """`ssh ...` reaching a host the way pyinfra does, from its inventory data (ssh_hostname, ssh_port,
    ssh_user, ssh_key, ssh_config_file, ssh_known_hosts_file, ssh_strict_host_key_checking)."""
    get = data.get if hasattr(data, "get") else (lambda k, d=None: getattr(data, k, d))
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if get("ssh_config_file"):
        argv += ["-F", str(get("ssh_config_file"))]
    if get("ssh_key"):
        argv += ["-i", str(get("ssh_key"))]
    if get("ssh_port"):
        argv += ["-p", str(get("ssh_port"))]
    if get("ssh_known_hosts_file"):
        argv += ["-o", f"UserKnownHostsFile={get('ssh_known_hosts_file')}"]
    if get("ssh_strict_host_key_checking"):
        argv += ["-o", f"StrictHostKeyChecking={get('ssh_strict_host_key_checking')}"]
    target = str(get("ssh_hostname") or fqdn)
    if get("ssh_user"):
        target = f"{get('ssh_user')}@{target}"
    return argv + [target]


def run_remote(t: Target, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*t.ssh, "sh", "-s"], input=script, capture_output=True, text=True, timeout=timeout)


def queue_entries(text: str) -> list[tuple[str, int]]:
    """(envelope id, creation time) of each line of `smtpctl show queue` (id|...|creation|expiry|...)."""
    out = []
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 8:
            continue
        created = next((int(f) for f in fields[5:] if f.isdigit() and int(f) > 1_000_000_000), 0)
        out.append((fields[0], created))
    return out


def over_ssh(ctx: Context, t: Target) -> Iterable[Finding]:
    if not t.ssh:
        yield warning("ssh", t.fqdn, "no SSH settings for this host", "run check with the inventory that deploys it")
        return
    try:
        proc = run_remote(t, SCRIPT, timeout=ctx.timeout * 6)
    except subprocess.TimeoutExpired:
        yield problem("ssh", t.fqdn, "SSH timed out", f"is {t.fqdn} up and its SSH port open to this machine?")
        return
    if proc.returncode == 255 or SEP not in proc.stdout:
        yield problem("ssh", t.fqdn, f"SSH login failed: {proc.stderr.strip()[-200:]}",
                      f"is {t.fqdn} up and its SSH port open to this machine?")
        return
    parts = (proc.stdout.split(SEP + "\n") + [""] * 5)[:5]
    units_text, queue_text, disk_text, now_text, services_text = parts
    yield from units(t, [u for u in units_text.split() if u])
    if t.settings.is_mailserver:
        yield from services(t, dict(line.split(" ", 1) for line in services_text.splitlines() if " " in line))
        now = int(now_text.strip() or time.time())
        yield from queue(t, queue_text, now)
        yield from disk(t, disk_text.strip())


def units(t: Target, failed: list[str]) -> Iterable[Finding]:
    if failed:
        yield problem("units", t.fqdn, f"failed systemd units: {', '.join(failed)}",
                      f"ssh {t.fqdn} 'systemctl status {failed[0]}; journalctl -u {failed[0]} -n 50', "
                      "fix the cause, then deploy again")
    else:
        yield ok("units", t.fqdn, "no failed systemd unit")


def services(t: Target, states: dict[str, str]) -> Iterable[Finding]:
    down = [f"{u} ({states.get(u, 'unknown')})" for u in MAIL_SERVICES if states.get(u) != "active"]
    if down:
        first = down[0].split()[0]
        yield problem("services", t.fqdn, f"not running: {', '.join(down)}",
                      f"ssh {t.fqdn} 'systemctl start {first}; systemctl status {first}'; if it does not stay up, "
                      f"journalctl -u {first} -n 50, then deploy again")
    else:
        yield ok("services", t.fqdn, f"running: {', '.join(MAIL_SERVICES)}")


def queue(t: Target, text: str, now: int) -> Iterable[Finding]:
    limits = t.settings.check
    if "no-smtpctl" in text:
        yield problem("queue", t.fqdn, "smtpctl not found: OpenSMTPD is not installed",
                      "deploy the host again")
        return
    if "smtpd" in text.lower() and "|" not in text:  # e.g. "smtpctl: smtpd doesn't seem to be running"
        yield problem("queue", t.fqdn, f"OpenSMTPD is not running: {text.strip()[:120]}",
                      f"ssh {t.fqdn} 'systemctl status opensmtpd; journalctl -u opensmtpd -n 50', then deploy "
                      "again")
        return
    entries = queue_entries(text)
    if not entries:
        yield ok("queue", t.fqdn, "mail queue empty")
        return
    oldest_h = (now - min(c for _, c in entries if c) if any(c for _, c in entries) else 0) / 3600
    detail = f"{len(entries)} message(s) queued, oldest {oldest_h:.1f} h"
    if len(entries) > limits.queue_warn_messages or oldest_h > limits.queue_warn_hours:
        yield warning("queue", t.fqdn, detail,
                      f"python -m mailstead queue show --host {t.fqdn}: see why they wait (smtpctl show queue)")
    else:
        yield ok("queue", t.fqdn, detail)


def disk(t: Target, line: str) -> Iterable[Finding]:
    if line == "no-store" or not line:
        yield problem("disk", t.fqdn, f"{MAIL_STORE} does not exist", "deploy the host again")
        return
    fields = line.split()
    try:
        used = int(fields[4].rstrip("%"))
        avail_gb = int(fields[3]) / 1024 / 1024
    except (IndexError, ValueError):
        yield warning("disk", t.fqdn, f"could not read df: {line[:80]}", "run df on the host yourself")
        return
    detail = f"{MAIL_STORE}: {used}% used, {avail_gb:.1f} GiB free"
    limit = t.settings.check.disk_warn_percent
    if used >= 95:
        yield problem("disk", t.fqdn, detail, "free space or grow the disk now: deliveries fail when it is full")
    elif used >= limit:
        yield warning("disk", t.fqdn, detail, "free space or grow the disk soon")
    else:
        yield ok("disk", t.fqdn, detail)
