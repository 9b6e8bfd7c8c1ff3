"""`queue` and `logs`: the mail queue and one message's path through smtpd and Dovecot, over SSH.

  queue show  --host HOST                 smtpctl show queue (one line per envelope)
  queue retry --host HOST ID|all          smtpctl schedule ID|all (try delivery now)
  queue remove --host HOST ID|all         smtpctl remove ID|all
  logs --host HOST ID                     the journal lines of one message: ID is smtpd's message id (8 hex digits),
                                          an envelope id (16) or the Message-ID header (<...@...>)

HOST is a host's inventory name or fqdn; --inventory FILE as for the other commands. SSH as pyinfra logs in
(the inventory's ssh_* data)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from datetime import datetime

from mailstead.check.hostcheck import ssh_argv

SMTPCTL = "$(command -v smtpctl || echo /opt/opensmtpd/sbin/smtpctl)"
ID_RE = re.compile(r"^(all|[0-9a-f]{8}|[0-9a-f]{16})$")
JOURNAL = "journalctl -u opensmtpd -u dovecot -u rspamd --since -14d --no-pager -o short-iso"

SMTPD_SESSION = re.compile(r" smtpd\[\d+\]: ([0-9a-f]{16}) ")
EVPID = re.compile(r"evpid=([0-9a-f]{16})")
MSGID = re.compile(r"msgid=([0-9a-f]{8})\b")
DELIVERY = re.compile(r"mda delivery evpid=\S+ from=<[^>]*> to=<([^>]+)>")
LMTP = re.compile(r" lmtp\(([^)]+)\)<\d+><([^>]+)>: (?:sieve: )?msgid=(<[^>]*>)")


def _time(line: str) -> datetime | None:
    try:
        return datetime.fromisoformat(line.split(" ", 1)[0])
    except ValueError:
        return None


def _near(a: str, b: str, seconds: float = 2.0) -> bool:
    ta, tb = _time(a), _time(b)
    return ta is not None and tb is not None and abs((ta - tb).total_seconds()) <= seconds


def trace(lines: list[str], ident: str) -> list[str]:
    """The journal lines of one message, in journal order: smtpd's sessions that received and delivered it
    (found from its message id / envelope ids) and Dovecot's LMTP session that stored it (matched by
    recipient and time); from a Message-ID, Dovecot's line first leads to smtpd's delivery."""
    ident = ident.strip()
    msgids: set[str] = set()
    if ID_RE.match(ident.lower()) and ident != "all":
        msgids.add(ident.lower()[:8])
    else:  # a Message-ID: Dovecot logs it at delivery; smtpd's delivery to that user at that time has the id
        mid = ident if ident.startswith("<") else f"<{ident}>"
        for dl in [line for line in lines if (m := LMTP.search(line)) and m.group(3) == mid]:
            user = LMTP.search(dl).group(1)
            for line in lines:
                m = DELIVERY.search(line)
                if m and m.group(1) == user and _near(line, dl) and (e := EVPID.search(line)):
                    msgids.add(e.group(1)[:8])
    if not msgids:
        return []
    own = [line for line in lines if any(i in line for i in msgids)]
    sessions = {m.group(1) for line in own if (m := SMTPD_SESSION.search(line))}
    dove: set[str] = set()
    for line in own:
        if (m := DELIVERY.search(line)):
            for dl in lines:
                lm = LMTP.search(dl)
                if lm and lm.group(1) == m.group(1) and _near(dl, line):
                    dove.add(lm.group(2))
    keep = []
    for line in lines:
        s = SMTPD_SESSION.search(line)
        lm = LMTP.search(line)
        if (s and s.group(1) in sessions) or any(i in line for i in msgids) or \
                (lm and lm.group(2) in dove) or any(f"<{d}>" in line for d in dove):
            keep.append(line)
    return keep


def _host_argv(inventory_file: str, name: str) -> list[str]:
    from mailstead.inventory import load_inventory
    from mailstead.settings import from_host

    for h in load_inventory(inventory_file):
        s = from_host(h)
        if name in (h.name, str(s.fqdn)):
            return ssh_argv(h.data.dict(), str(s.fqdn))
    raise SystemExit(f"{inventory_file}: no host {name!r}")


def remote(argv: list[str], script: str) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, "sh", "-s"], input=script, capture_output=True, text=True, timeout=300)


def queue_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead queue")
    p.add_argument("action", choices=["show", "retry", "remove"])
    p.add_argument("id", nargs="?", help="envelope or message id, or 'all' (retry, remove)")
    p.add_argument("--host", required=True)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    args = p.parse_args(argv)
    if args.action == "show":
        script = f"{SMTPCTL} show queue"
    else:
        if not args.id or not ID_RE.match(args.id):
            p.error("give an envelope id (16 hex digits), a message id (8) or 'all'")
        verb = "schedule" if args.action == "retry" else "remove"
        script = f"{SMTPCTL} {verb} {args.id}"
    proc = remote(_host_argv(args.inventory, args.host), script)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def logs_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead logs")
    p.add_argument("id", help="message id (8 hex), envelope id (16 hex) or Message-ID")
    p.add_argument("--host", required=True)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    args = p.parse_args(argv)
    proc = remote(_host_argv(args.inventory, args.host), JOURNAL)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        return 1
    found = trace(proc.stdout.splitlines(), args.id)
    if not found:
        print(f"no log line of {args.id} on {args.host} in the last 14 days", file=sys.stderr)
        return 1
    print("\n".join(found))
    return 0
