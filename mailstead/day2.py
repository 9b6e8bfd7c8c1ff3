"""The operator's day-2 commands: users and aliases of an environment, then a deploy of only what they touch.

  user add ADDRESS [--quota 2G]     a mailbox; the password is read twice at the prompt (or one line on stdin)
  user passwd ADDRESS               a new password
  user remove ADDRESS               no more logins or deliveries (the mail in /var/vmail stays)
  user list                         the environment's mailboxes
  alias add SOURCE TARGET...        an alias (SOURCE an address or '@domain'); replaces its targets
  alias remove SOURCE

All take --env ENV (default: the environment of the address, else the only one) and --inventory FILE; the edits
land in the environment's group_data file (the one that wins for that inventory; see mailstead/groupdata.py),
the whole inventory is validated again (a bad edit is undone), and unless --no-deploy the environment's mail
hosts are deployed with only the stages users and aliases live in (OpenSMTPD's tables, Dovecot's users file):
`MAILSTEAD_STAGES=opensmtpd,dovecot pyinfra -y INVENTORY deploy.py --limit HOST...`. smtpd is not restarted
for a table change (`smtpctl update table`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mailstead import groupdata
from mailstead.passwords import _read_password, hash_password
from mailstead.secrets import write_private
from mailstead.settings.environment import password_hashes_path

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
STAGES = "opensmtpd,dovecot"  # where users and aliases live on a mail host


def _environments(inventory_file: str) -> dict:
    from mailstead.inventory import environments, load_inventory

    return environments(load_inventory(inventory_file))


def pick_env(envs: dict, wanted: str | None, address: str | None) -> str:
    if wanted:
        if wanted not in envs:
            raise SystemExit(f"no environment {wanted!r}; known: {', '.join(sorted(envs))}")
        return wanted
    if address:
        domain = address.rsplit("@", 1)[-1].lower()
        hits = [name for name, e in envs.items() if domain in [d.lower() for d in e.domains]]
        if len(hits) == 1:
            return hits[0]
    if len(envs) == 1:
        return next(iter(envs))
    raise SystemExit(f"say which environment with --env ({', '.join(sorted(envs))})")


def deploy_users(inventory_file: str, env, stages: str = STAGES, dry: bool = False) -> int:
    """Deploy the environment's mail hosts with only ``stages`` (by default those users and aliases live in);
    ``dry``: pyinfra --dry (show what would change)."""
    argv = [PYINFRA, *(["--dry"] if dry else ["-y"]), inventory_file, "deploy.py"]
    for h in env.mail_hosts:
        argv += ["--limit", str(h.fqdn)]
    print(f"{'dry run: ' if dry else ''}deploying {stages} to {', '.join(str(h.fqdn) for h in env.mail_hosts)}",
          flush=True)
    start = time.monotonic()
    rc = subprocess.run(argv, env=dict(os.environ, MAILSTEAD_STAGES=stages)).returncode
    print(f"deploy finished in {time.monotonic() - start:.1f} s (exit {rc})", flush=True)
    return rc


def store_hash(env, address: str, hashed: str | None) -> dict:
    """With password_hashes_file set: the hash goes to that file in secrets_dir (0600) and the group_data entry
    has none; otherwise the entry carries it. Returns the entry's password fields."""
    if not env.password_hashes_file:
        return {"password_hash": hashed} if hashed else {}
    path = password_hashes_path(env.secrets_dir, env.password_hashes_file)
    hashes = json.loads(path.read_text()) if path.exists() else {}
    if hashed:
        hashes[address] = hashed
    else:
        hashes.pop(address, None)
    write_private(path, json.dumps(hashes, indent=1, sort_keys=True) + "\n")
    return {}


def apply_edit(args, env_name: str, users=None, aliases=None) -> int:
    """Edit the file, validate the whole inventory again (undo a bad edit), deploy unless --no-deploy."""
    from mailstead.settings import SettingsError

    path = groupdata.environment_file(env_name, args.inventory)
    before = path.read_text() if path.exists() else None
    groupdata.edit(path, users=users, aliases=aliases)
    try:
        envs = _environments(args.inventory)
    except SettingsError as exc:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
        print(f"{exc}\n(the edit of {path} was undone)", file=sys.stderr)
        return 1
    print(f"{path}: updated")
    if args.no_deploy:
        return 0
    return 1 if deploy_users(args.inventory, envs[env_name]) else 0


def user_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead user")
    p.add_argument("action", choices=["add", "passwd", "remove", "list"])
    p.add_argument("address", nargs="?")
    p.add_argument("--quota", default=None, help="e.g. 2G (add)")
    p.add_argument("--env", default=None)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    p.add_argument("--no-deploy", action="store_true", help="edit group_data only")
    args = p.parse_args(argv)
    envs = _environments(args.inventory)
    env_name = pick_env(envs, args.env, args.address)
    env = envs[env_name]
    current = {u.address: u for u in env.users}
    if args.action == "list":
        for u in env.users:
            print(f"{u.address}\t{u.quota or '-'}")
        return 0
    if not args.address:
        p.error("give the ADDRESS")
    address = args.address.strip().lower()
    if args.action == "add":
        if address in current:
            raise SystemExit(f"{address} exists already; use `user passwd`")
        entry = {"address": address, **store_hash(env, address, hash_password(_read_password()))}
        if args.quota:
            entry["quota"] = args.quota
        return apply_edit(args, env_name, users={address: entry})
    if address not in current:
        raise SystemExit(f"no user {address} in {env_name}")
    if args.action == "passwd":
        entry = {"address": address, **store_hash(env, address, hash_password(_read_password()))}
        if current[address].quota:
            entry["quota"] = current[address].quota
        return apply_edit(args, env_name, users={address: entry})
    store_hash(env, address, None)
    return apply_edit(args, env_name, users={address: None})


def alias_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead alias")
    p.add_argument("action", choices=["add", "remove"])
    p.add_argument("source")
    p.add_argument("targets", nargs="*")
    p.add_argument("--env", default=None)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    p.add_argument("--no-deploy", action="store_true", help="edit group_data only")
    args = p.parse_args(argv)
    envs = _environments(args.inventory)
    source = args.source.strip().lower()
    env_name = pick_env(envs, args.env, source)
    if args.action == "add":
        if not args.targets:
            p.error("give at least one TARGET")
        return apply_edit(args, env_name, aliases={source: [t.strip().lower() for t in args.targets]})
    if source not in envs[env_name].aliases:
        raise SystemExit(f"no alias {source} in {env_name}")
    return apply_edit(args, env_name, aliases={source: None})
