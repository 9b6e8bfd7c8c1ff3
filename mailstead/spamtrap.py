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
import subprocess
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


def ssh_argv(data, name: str, command: list[str]) -> list[str]:
    """ssh(1) to a host as the deploy reaches it, from its pyinfra host data (ssh_hostname, ssh_user, ssh_port,
    ssh_key, ssh_config_file, ssh_known_hosts_file, ssh_strict_host_key_checking); never asks anything."""
    def get(key):
        return data.get(key) if isinstance(data, dict) else getattr(data, key, None)

    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15"]
    if get("ssh_config_file"):
        argv += ["-F", str(get("ssh_config_file"))]
    if get("ssh_port"):
        argv += ["-p", str(get("ssh_port"))]
    if get("ssh_key"):
        argv += ["-i", str(get("ssh_key"))]
    if get("ssh_known_hosts_file"):
        argv += ["-o", f"UserKnownHostsFile={get('ssh_known_hosts_file')}"]
    if get("ssh_strict_host_key_checking"):
        argv += ["-o", f"StrictHostKeyChecking={get('ssh_strict_host_key_checking')}"]
    return argv + [f"{get('ssh_user') or 'root'}@{get('ssh_hostname') or name}", "--", *command]


def _fetch(host) -> dict:
    """The trap's sources.json, read over SSH as the deploy logs in."""
    proc = subprocess.run(ssh_argv(host.data, host.name, ["cat", SOURCES_FILE]), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"cannot read {SOURCES_FILE} (is the spamtrap stage deployed?) "
                           f"{proc.stderr.strip()[-200:]}")
    return json.loads(proc.stdout or "{}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead traps", description="hit counts and top sources of the "
                                "spamtraps")
    p.add_argument("--inventory", default="inventory.py", metavar="FILE",
                   help="inventory file, loaded as pyinfra loads it (default: inventory.py)")
    p.add_argument("--env", help="only this environment")
    p.add_argument("--top", type=int, default=10, help="sources shown per trap (default 10)")
    args = p.parse_args(argv)

    from mailstead.inventory import load_inventory
    from mailstead.settings import from_host

    inventory = load_inventory(args.inventory)
    traps = [h for h in inventory if (s := from_host(h)).is_spamtrap and (not args.env or s.environment == args.env)]
    if not traps:
        print("no spamtrap hosts in the inventory")
        return 1
    rc = 0
    for h in traps:
        try:
            print("\n".join(summary(h.name, _fetch(h), args.top)))
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"{h.name}: {exc}")
            rc = 1
    return rc
