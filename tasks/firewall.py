"""Firewall: nftables from Debian, one table of our own (``inet mailstead``), default-drop inbound.

Open are only the TCP ports the stages before this one serve (``results.open_ports``: OpenSMTPD 25/465/587,
Dovecot 993/4190 and 143 when on, nginx 80/443, a spamtrap 25) and the SSH port the deploy uses, whose rule
comes first. Loopback, established/related traffic and ICMP (IPv6 neighbour discovery) pass. On the mail ports
(``MAIL_PORTS``) every new connection goes through per-source meters: a rate (``firewall.new_per_minute``,
``burst``) and a concurrency limit (``max_per_source``); a source over either gets a TCP reset, never a silent
drop (a sending MTA then moves on at once). SYN cookies are on (base stage sysctl ``tcp_syncookies``).
Stages before this one may add input rules (``results.firewall_rules``, e.g. trap-first's reject on 25) and
sets (``results.firewall_sets``).

Files on the host:
  /etc/mailstead/firewall.nft               the table (files/firewall/mailstead.nft.j2), checked with nft -c -f
  /etc/systemd/system/mailstead-firewall.service   loads it at boot (before the network) and on reload
The whole file is one nft transaction (``delete table`` + the new table), so a reload never leaves the host
without rules, and a file nft rejects never replaces the live one.
"""

from __future__ import annotations

from io import BytesIO

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, server

from tasks.common import (DAEMON_RELOAD, absent_file, checked_file, enable_and_start, ensure_directory, mark_pending,
                          put_file, render, restart_if, run_pending)

PACKAGES = ["nftables"]
RULESET = "/etc/mailstead/firewall.nft"
SERVICE = "mailstead-firewall"
UNIT = f"/etc/systemd/system/{SERVICE}.service"
TABLE = "inet mailstead"
# ports whose new connections pass the per-source meters (the rest of results.open_ports is only opened)
MAIL_PORTS = (25, 143, 465, 587, 993, 4190)


def ruleset(settings, open_ports=(), stage_rules=(), sets=()) -> str:
    """The nft file for the host: ``open_ports`` of its stages, their input rules and sets."""
    fw = settings.firewall
    ports = sorted({p for p in open_ports if p != fw.ssh_port})
    return render(
        "firewall/mailstead.nft.j2",
        ssh_port=fw.ssh_port,
        mail_ports=[p for p in ports if p in MAIL_PORTS],
        other_ports=[p for p in ports if p not in MAIL_PORTS],
        new_per_minute=fw.new_per_minute,
        burst=fw.burst,
        max_per_source=fw.max_per_source,
        stage_rules=list(stage_rules),
        sets=list(sets),
        extra_rules=list(fw.extra_input_rules),
        unmetered_v4=fw.unmetered_v4,
        unmetered_v6=fw.unmetered_v6,
    )


def unit() -> str:
    return render("firewall/mailstead-firewall.service.j2", ruleset=RULESET, table=TABLE)


def deploy(settings, env, results) -> None:
    """``results.open_ports``, ``results.firewall_rules``, ``results.firewall_sets``: what the stages before
    this one serve and add (this stage runs after them)."""
    if not settings.firewall.enabled:
        _remove()
        return
    packages = apt.packages(name="nftables", packages=PACKAGES, no_recommends=True)
    ensure_directory(name="/etc/mailstead", path="/etc/mailstead", user="root", group="root", mode="755")
    unit_op = put_file(name=f"{SERVICE}.service", src=BytesIO(unit().encode()), dest=UNIT, mode="644")
    mark_pending([DAEMON_RELOAD, SERVICE], ops=(unit_op,), name="The firewall unit changed")
    run_pending(name="systemd daemon-reload (firewall unit)", marker=DAEMON_RELOAD,
                command="systemctl daemon-reload", ops=(unit_op,))
    conf = checked_file(
        name="nftables ruleset (checked with nft -c -f)",
        dest=RULESET,
        content=ruleset(settings, results.open_ports, results.firewall_rules, results.firewall_sets),
        check="nft -c -f {staged}",
        mode="600",
        restarts=SERVICE,
        secret=False,
    )
    enable_and_start(SERVICE)
    restart_if(SERVICE, conf, packages, reload=True, name="Load the firewall ruleset after a change")


def _remove() -> None:
    loaded = host.get_fact(Command, command=f"nft list table {TABLE} >/dev/null 2>&1 && echo yes || echo no")
    if loaded == "yes":
        server.shell(name="No mailstead firewall table (firewall.enabled = False)",
                     commands=[f"systemctl disable {SERVICE} 2>/dev/null || true", f"nft delete table {TABLE}"])
    absent_file(name="No firewall ruleset file", path=RULESET)
    absent_file(name="No firewall unit", path=UNIT, restarts=DAEMON_RELOAD)
    run_pending(name="systemd daemon-reload (firewall unit removed)", marker=DAEMON_RELOAD,
                command="systemctl daemon-reload")
