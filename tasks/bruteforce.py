"""Brute-force blocking: fail2ban (Debian) reads the journal and bans through nftables.

Jails follow the ports the stages before this one serve (``results.open_ports``): SSH everywhere; SMTP AUTH
(465/587, filter ``mailstead-opensmtpd``: smtpd's "authentication ... result=permfail" tied to its session's
"connected address=" line; and ``mailstead-authguard``, maxretry 1: filter-authguard's own "AUTH refused" line,
after which smtpd logs no more failures for that source) and Dovecot's IMAP/ManageSieve logins (993/143/4190, filter ``mailstead-dovecot``:
Dovecot 2.4's "Login aborted ... (auth failed ...)", which fail2ban 1.1's own dovecot filter misses) where
the host serves them. ``bruteforce.maxretry`` failures within ``findtime`` ban the address for ``bantime``:
fail2ban's nftables action (its own table ``inet f2b-table``, before ours) refuses its new connections to the
jail's ports. This adds a ban to what filter-authguard already does inside smtpd (slow, then 421 per source).

Files on the host: /etc/fail2ban/jail.d/mailstead.local (checked with ``fail2ban-client -t`` on a copy of
/etc/fail2ban holding the staged file), /etc/fail2ban/filter.d/mailstead-{opensmtpd,dovecot}.conf.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra.operations import apt, server

from tasks.common import FILES_DIR, checked_file, enable_and_start, render, restart_if

PACKAGES = ["fail2ban", "python3-systemd", "nftables"]
JAIL = "/etc/fail2ban/jail.d/mailstead.local"
FILTERS = ("mailstead-opensmtpd", "mailstead-authguard", "mailstead-dovecot")


@dataclass(frozen=True)
class Jail:
    name: str
    filter: str
    ports: tuple[int, ...]
    maxretry: int | None = None  # None: bruteforce.maxretry


def jails(open_ports) -> list[Jail]:
    """The mail jails for the ports the host serves (sshd is always there)."""
    ports = set(open_ports)
    out = []
    smtp = tuple(p for p in (465, 587) if p in ports)
    if smtp:
        out.append(Jail("mailstead-smtp-auth", "mailstead-opensmtpd", smtp))
        out.append(Jail("mailstead-authguard", "mailstead-authguard", smtp, maxretry=1))
    imap = tuple(p for p in (993, 143, 4190) if p in ports)
    if imap:
        out.append(Jail("mailstead-dovecot", "mailstead-dovecot", imap))
    return out


def jail_local(settings, open_ports) -> str:
    b = settings.bruteforce
    return render("bruteforce/jail.local.j2", maxretry=b.maxretry, findtime=b.findtime, bantime=b.bantime,
                  ignore=b.ignore, ssh_port=settings.firewall.ssh_port, jails=jails(open_ports))


# fail2ban reads only *.conf/*.local: check the staged jail file inside a copy of the whole configuration
_CHECK = ("d=$(mktemp -d) && cp -a /etc/fail2ban/. \"$d/\" && cp {staged} \"$d/jail.d/mailstead.local\" && "
          "fail2ban-client -c \"$d\" -t >/dev/null; rc=$?; rm -rf \"$d\"; exit $rc")


def deploy(settings, env, results) -> None:
    if not settings.bruteforce.enabled:
        server.shell(name="fail2ban off (bruteforce.enabled = False)",
                     commands=["if systemctl is-enabled --quiet fail2ban 2>/dev/null; then "
                               "systemctl disable --now fail2ban; fi"])
        return
    packages = apt.packages(name="fail2ban (systemd journal, nftables)", packages=PACKAGES, no_recommends=True)
    filters = [checked_file(name=f"fail2ban filter {f}", dest=f"/etc/fail2ban/filter.d/{f}.conf",
                            content=(FILES_DIR / "bruteforce" / f"{f}.conf").read_text(), restarts="fail2ban",
                            secret=False) for f in FILTERS]
    jail = checked_file(name="fail2ban jails (checked with fail2ban-client -t)", dest=JAIL,
                        content=jail_local(settings, results.open_ports), check=_CHECK, restarts="fail2ban",
                        secret=False)
    enable_and_start("fail2ban")
    restart_if("fail2ban", jail, *filters, packages, name="Restart fail2ban after a change")


def unban_command(address: str) -> str:
    """Shell: lift every ban of ``address`` (e.g. your own after a typo spree)."""
    return f"fail2ban-client unban {shlex.quote(address)}"
