"""Spamtrap hosts (role spamtraps): extra MX hosts that real senders pass by and spam bots fall into.

- trap-first (MX 10, the lowest number): port 25 is refused at once with a TCP reset by the firewall (never a
  silent drop: a real MTA then tries the real MX in the same attempt, ~0.1 s later); every attempt is counted
  per source address in the firewall's sets ``trap4``/``trap6`` (expire ``spamtrap.source_ttl`` after the
  last hit, at most ``spamtrap.max_sources``).
- trap-last (MX 30, the highest): Debian's OpenSMTPD with filter-spamtrap answers every RCPT TO (and DATA) with
  ``spamtrap.reply`` (a 4xx), accepts nothing, stores nothing, and logs source, HELO and envelope
  (``journalctl -u opensmtpd | grep spamtrap``); the filter keeps the sources in ``HITS_FILE``.
- both: ``spamtrap-collect`` (a timer, every minute) merges these into ``mailstead.spamtrap.SOURCES_FILE``,
  which the mail hosts of the environment fetch (tasks/trapfeed.py) through the account ``FEED_USER``: its
  only key is the environment's feed key, accepted from the mail hosts' addresses for one forced command that
  prints that file. The trap holds no credential for the mail hosts (a trap faces the bots; pulling keeps a
  compromised trap from writing anything anywhere).
"""

from __future__ import annotations

import shlex

from pyinfra.operations import apt, server

from mailstead.spamtrap import SOURCES_FILE, feed_key
from tasks.common import (FILES_DIR, STATE_DIR, checked_file, dry_run, enable_and_start, ensure_directory, mark_pending,
                          put_file, render, restart_if, systemd_units, would_create)

LIB_DIR = "/usr/local/lib/mailstead"
FILTER = f"{LIB_DIR}/filter-spamtrap"
COLLECT = f"{LIB_DIR}/spamtrap-collect"
TRAP_DIR = "/var/lib/mailstead/spamtrap"
HITS_FILE = f"{TRAP_DIR}/smtp-hits.json"
SMTPD_CONF = "/etc/smtpd.conf"          # Debian's opensmtpd package
SMTPD_USER = "opensmtpd"                # the package's unprivileged user (filters run as it)
FEED_USER = "mailstead-feed"
FEED_HOME = "/var/lib/mailstead/feed"


def firewall_sets(settings) -> list[str]:
    """trap-first's per-source sets: a packet counter per address, expiring source_ttl after its last hit."""
    t = settings.spamtrap
    return [f"set trap{v} {{ type ipv{v}_addr; size {t.max_sources}; flags dynamic, timeout; "
            f"timeout {t.source_ttl}s; }}" for v in (4, 6)]


FIREWALL_RULES = [
    "tcp dport 25 update @trap4 { ip saddr counter } reject with tcp reset",
    "tcp dport 25 update @trap6 { ip6 saddr counter } reject with tcp reset",
    "tcp dport 25 reject with tcp reset",
]


def smtpd_conf(settings) -> str:
    t = settings.spamtrap
    return render("spamtrap/smtpd.conf.j2", filter=FILTER, hits_file=HITS_FILE, ttl=t.source_ttl,
                  max_sources=t.max_sources, reply=t.reply, fqdn=settings.fqdn,
                  listen_addresses=["0.0.0.0", "::"] if settings.ipv6 else ["0.0.0.0"])


def collect_command(settings) -> str:
    t = settings.spamtrap
    return " ".join(shlex.quote(str(a)) for a in (COLLECT, SOURCES_FILE, settings.fqdn, settings.spamtrap_position,
                                                  t.source_ttl, t.max_sources, HITS_FILE))


def authorized_keys(env, public_key: str) -> str:
    """The feed account's only key: the forced command prints the source list, from the mail hosts only."""
    sources = ",".join(str(a) for m in env.mail_hosts for a in (m.ipv4, m.ipv6) if a is not None)
    return (f'restrict,command="cat {SOURCES_FILE}",from="{sources}" {public_key}\n')


def deploy(settings, env, results) -> None:
    """trap-first adds its sets and its reject rule to ``results.firewall_sets``/``firewall_rules``; trap-last
    adds port 25 to ``results.open_ports``. The firewall stage runs after this one."""
    first = settings.spamtrap_position == "first"
    apt.packages(name="python3 (spamtrap collector)", packages=["python3", "nftables"], no_recommends=True)
    ensure_directory(name="mailstead programs directory", path=LIB_DIR, mode="755")
    ensure_directory(name=f"{STATE_DIR} traversable (the feed account's home and the filter's state are below it)",
                    path=STATE_DIR, user="root", group="root", mode="755")
    if first:
        results.firewall_sets += firewall_sets(settings)
        results.firewall_rules += FIREWALL_RULES
        apt.packages(name="trap-first runs no SMTP server", packages=["opensmtpd"], present=False)
        ensure_directory(name="spamtrap state directory", path=TRAP_DIR, user="root", group="root", mode="755")
    else:
        _trap_last(settings, results)
    _collector(settings)
    _feed_account(settings, env)


def _trap_last(settings, results) -> None:
    results.open_ports.append(25)
    packages = apt.packages(name="Debian's OpenSMTPD (trap-last)", packages=["opensmtpd"], no_recommends=True)
    ensure_directory(name="spamtrap state directory (filter-spamtrap writes here)", path=TRAP_DIR,
                    user=SMTPD_USER, group="root", mode="755")
    filt = put_file(name="filter-spamtrap", src=str(FILES_DIR / "spamtrap/filter-spamtrap"), dest=FILTER,
                     mode="755", user="root", group="root")
    mark_pending("opensmtpd", ops=(filt,), name="OpenSMTPD restarts for a new filter-spamtrap")
    conf = checked_file(name="smtpd.conf of trap-last (checked with smtpd -n)", dest=SMTPD_CONF,
                        content=smtpd_conf(settings), check="smtpd -n -f {staged} >/dev/null",
                        restarts="opensmtpd", secret=False)
    enable_and_start("opensmtpd")
    restart_if("opensmtpd", conf, packages, name="Restart trap-last's OpenSMTPD after a change")


def _collector(settings) -> None:
    put_file(name="spamtrap-collect", src=str(FILES_DIR / "spamtrap/spamtrap-collect"), dest=COLLECT, mode="755")
    units = systemd_units({
        "mailstead-spamtrap-collect.service": render("spamtrap/collect.service.j2", command=collect_command(settings)),
        "mailstead-spamtrap-collect.timer": render("spamtrap/collect.timer.j2"),
    })
    enable_and_start("mailstead-spamtrap-collect.timer")
    server.shell(name="Publish the source list now (no stale list after a change)",
                 commands=["systemctl start mailstead-spamtrap-collect.service"],
                 _if=lambda: any(op.did_change() for op in units))


def _feed_account(settings, env) -> None:
    key = feed_key(env.secrets_dir, env.environment, create=not dry_run())
    server.user(name=f"{FEED_USER}: the mail hosts fetch the source list as this user", user=FEED_USER,
                system=True, home=FEED_HOME, shell="/bin/sh", create_home=True)
    ensure_directory(name=f"{FEED_USER}'s .ssh", path=f"{FEED_HOME}/.ssh", user=FEED_USER, group=FEED_USER,
                    mode="700")
    if key is None:
        would_create(f"the trap feed key of {env.environment} in {env.secrets_dir}/spamtrap/")
        return
    checked_file(name=f"{FEED_USER}'s only key (forced command, mail hosts only)",
                 dest=f"{FEED_HOME}/.ssh/authorized_keys", content=authorized_keys(env, key[1]), mode="600",
                 user=FEED_USER, group=FEED_USER, secret=False)
