"""The mail hosts' copy of the spamtraps' source lists: ``mailstead.spamtrap.MAP_FILE`` (trap-last's sources,
the bot signal) and ``FIRST_MAP_FILE`` (trap-first's, information only: every MTA tries MX 10 first), one
address per line.

A timer (every ``spamtrap.pull_interval`` seconds) runs ``spamtrap-pull``: it fetches each trap's list over SSH
as the trap's feed account (tasks/spamtrap.py) with the environment's feed key, keeps the last good copy of
each trap (a trap that does not answer keeps its sources until they age out), and rewrites the map file
atomically, only when it changed. It works without the deploy machine. The filtering stage reads the map
(e.g. an rspamd multimap on ``MAP_FILE``); a sender that only ever talked to the real MX is never in it.
The traps' SSH host keys are learnt at the first fetch (``accept-new``) and pinned from then on.

Files on the host:
  /etc/mailstead/trapfeed/key        the feed key (0600 root)
  /etc/mailstead/trapfeed/traps      "<trap fqdn> <address>" per line
  /var/lib/mailstead/trapfeed/       each trap's last list, known_hosts
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from mailstead.spamtrap import FIRST_MAP_FILE, MAP_FILE, feed_key
from tasks.common import (DAEMON_RELOAD, FILES_DIR, STATE_DIR, absent_file, checked_file, dry_run, enable_and_start,
                          ensure_directory, put_file, render, run_pending, systemd_units, would_create)
from tasks.spamtrap import FEED_USER, LIB_DIR

CONF_DIR = "/etc/mailstead/trapfeed"
KEY_FILE = f"{CONF_DIR}/key"
TRAPS_FILE = f"{CONF_DIR}/traps"
CACHE_DIR = "/var/lib/mailstead/trapfeed"
PULL = f"{LIB_DIR}/spamtrap-pull"


def traps_file(env) -> str:
    lines = []
    for t in env.spamtraps:
        addr = t.ipv4 or t.ipv6
        if addr is not None:
            lines.append(f"{t.fqdn} {addr}\n")
    return "# Managed by mailstead (tasks/trapfeed.py): <trap> <address>\n" + "".join(lines)


def pull_command(settings) -> str:
    t = settings.spamtrap
    return (f"{PULL} {TRAPS_FILE} {KEY_FILE} {FEED_USER} {CACHE_DIR} {MAP_FILE} {FIRST_MAP_FILE} {t.source_ttl} "
            f"{t.max_sources}")


def deploy(settings, env, results) -> None:
    ensure_directory(name="mailstead programs directory", path=LIB_DIR, mode="755")
    ensure_directory(name=f"{STATE_DIR} traversable (the map file below it is read by the spam filter)",
                    path=STATE_DIR, user="root", group="root", mode="755")
    ensure_directory(name="trap feed configuration", path=CONF_DIR, mode="700")
    ensure_directory(name="trap feed state", path=CACHE_DIR, mode="700")
    for path in (MAP_FILE, FIRST_MAP_FILE):  # what reads them finds a file, empty until the first fetch
        files.file(name=f"{path} exists", path=path, user="root", group="root", mode="644")
    if not env.spamtraps:
        host.noop(f"no spamtraps in {env.environment}: nothing to fetch, the maps stay empty")
        _no_timer()
        return
    put_file(name="spamtrap-pull", src=str(FILES_DIR / "spamtrap/spamtrap-pull"), dest=PULL, mode="755")
    key = feed_key(env.secrets_dir, env.environment, create=not dry_run())
    if key is None:
        would_create(f"the trap feed key of {env.environment} in {env.secrets_dir}/spamtrap/")
    else:
        checked_file(name="trap feed key", dest=KEY_FILE, content=key[0], mode="600", secret=True)
    checked_file(name="spamtraps to fetch from", dest=TRAPS_FILE, content=traps_file(env), secret=False)
    units = systemd_units({
        "mailstead-spamtrap-pull.service": render("spamtrap/pull.service.j2", command=pull_command(settings)),
        "mailstead-spamtrap-pull.timer": render("spamtrap/pull.timer.j2", interval=settings.spamtrap.pull_interval),
    })
    enable_and_start("mailstead-spamtrap-pull.timer")
    server.shell(name="Fetch the traps' lists now", commands=["systemctl start mailstead-spamtrap-pull.service"],
                 _if=lambda: any(op.did_change() for op in units))


def _no_timer() -> None:
    """An environment without traps (any more): no fetch timer."""
    timer = "/etc/systemd/system/mailstead-spamtrap-pull.timer"
    if host.get_fact(File, path=timer):
        server.shell(name="No trap feed timer (no spamtraps)",
                     commands=["systemctl disable --now mailstead-spamtrap-pull.timer"])
    removed = [absent_file(name=f"No {p}", path=p, restarts=DAEMON_RELOAD)
               for p in (timer, "/etc/systemd/system/mailstead-spamtrap-pull.service")]
    run_pending(name="systemd daemon-reload (trap feed units removed)", marker=DAEMON_RELOAD,
                command="systemctl daemon-reload", ops=removed)
