"""Spamtraps on the deploy machine: the environment's feed key and `python -m mailstead traps`.

The mail hosts fetch the traps' source lists themselves (tasks/trapfeed.py, a timer): each pulls over SSH with
a key whose public half the traps accept only for one forced command (print the list) from the mail hosts'
addresses. The deploy machine only makes that key once per environment, kept in ``secrets_dir``:

  spamtrap/<environment>-feed          the feed's private key (OpenSSH, Ed25519, 0600)

  traps [--inventory FILE] [--env ENV] [--top N]   per-trap hit counts and top sources (over SSH, as the deploy)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mailstead.secrets import secrets_root, write_private

SOURCES_FILE = "/var/lib/mailstead/spamtrap/sources.json"  # on a trap: what the collector publishes
# on a mail host, one address per line. MAP_FILE: sources seen at trap-last (the highest MX, where a real MTA
# only goes when the real MX does not answer): the bot signal the spam filter scores. FIRST_MAP_FILE: sources
# seen at trap-first, for information only: every MTA tries the lowest MX first (and is refused there).
MAP_FILE = "/var/lib/mailstead/spamtrap-sources.map"
FIRST_MAP_FILE = "/var/lib/mailstead/spamtrap-first-sources.map"


def feed_key_file(secrets_dir: str | os.PathLike, environment: str) -> Path:
    return secrets_root(secrets_dir) / "spamtrap" / f"{environment}-feed"


def feed_key(secrets_dir: str | os.PathLike, environment: str, create: bool = True) -> tuple[bytes, str] | None:
    """(private key in OpenSSH format, public key line) of the environment's trap feed; made when missing and
    ``create`` (None when it is missing and not ``create``: a dry run)."""
    path = feed_key_file(secrets_dir, environment)
    if not path.exists():
        if not create:
            return None
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
        write_private(path, pem)
    pem = path.read_bytes()
    key = serialization.load_ssh_private_key(pem, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return pem, f"{public.decode()} mailstead-trapfeed-{environment}"


def summary(trap: str, doc: dict, top: int = 10) -> list[str]:
    """Lines of `mailstead traps` for one trap's sources.json document."""
    sources = doc.get("sources") or {}
    hits = sum(int(v.get("hits", 0)) for v in sources.values())
    lines = [f"{trap} ({doc.get('position', '?')}): {hits} hits from {len(sources)} sources"]
    ranked = sorted(sources.items(), key=lambda kv: (-int(kv[1].get("hits", 0)), kv[0]))[:top]
    for addr, v in ranked:
        extra = " ".join(f"{k}={v[k]}" for k in ("helo", "mail") if v.get(k))
        lines.append(f"  {int(v.get('hits', 0)):>8}  {addr}  {extra}".rstrip())
    return lines


def _fetch(host) -> dict:
    """The trap's sources.json, read over the deploy's own SSH connection (pyinfra's connector)."""
    from pyinfra.api import StringCommand

    ok, output = host.run_shell_command(StringCommand("cat", SOURCES_FILE), print_output=False)
    if not ok:
        raise RuntimeError(f"{host.name}: cannot read {SOURCES_FILE} (is the spamtrap stage deployed?)")
    return json.loads("\n".join(line.line for line in output.stdout_lines) or "{}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead traps", description="hit counts and top sources of the "
                                "spamtraps")
    p.add_argument("--inventory", default="inventory.py", metavar="FILE",
                   help="inventory file, loaded as pyinfra loads it (default: inventory.py)")
    p.add_argument("--env", help="only this environment")
    p.add_argument("--top", type=int, default=10, help="sources shown per trap (default 10)")
    args = p.parse_args(argv)

    from pyinfra.api import Config, State
    from pyinfra.api.connect import connect_all
    from pyinfra.context import ctx_state

    from mailstead.inventory import load_inventory
    from mailstead.settings import from_host

    inventory = load_inventory(args.inventory)
    traps = [h for h in inventory if (s := from_host(h)).is_spamtrap and (not args.env or s.environment == args.env)]
    if not traps:
        print("no spamtrap hosts in the inventory")
        return 1
    state = State(inventory=inventory, config=Config())
    rc = 0
    with ctx_state.use(state):
        connect_all(state)
        for h in traps:
            try:
                print("\n".join(summary(h.name, _fetch(h), args.top)))
            except (RuntimeError, ValueError) as exc:
                print(f"{h.name}: {exc}")
                rc = 1
    return rc
