"""Backups on the deploy machine's side: each mail host's restic password and SFTP key (kept in secrets_dir, so
a rebuilt host reads its old backups), and the commands

  backup status [--env ENV | --host HOST]   last snapshot and last run of each mail host's backup
  backup now --host HOST                    run the backup now (the timer's service) and wait for it
  restore --host HOST [--user ADDRESS]      the host's mail store (or one mailbox) from the latest snapshot,
                                            full-text indexes rebuilt

(over SSH, as pyinfra logs in; --inventory FILE as for the other commands)."""

from __future__ import annotations

import argparse
import re
import secrets as _random
import subprocess
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mailstead import secrets
from mailstead.check import backupcheck
from mailstead.check.findings import OK
from mailstead.check.hostcheck import ssh_argv
from mailstead.settings.errors import Issue, SettingsError
from mailstead.settings.fields import split_address

BIN = "/usr/local/sbin"
RESTIC = f"{BIN}/mailstead-restic"
VMAIL = "/var/vmail"
BAYES_DUMP = "/var/lib/valkey/dump.rdb"  # rspamd's Bayes data and greylisting state (Valkey's snapshot)
S3_REQUIRED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_OPTIONAL = ("AWS_DEFAULT_REGION",)
_S3_VALUE_RE = re.compile(r"^[A-Za-z0-9/+=._-]{1,256}$")


def backup_secrets(secrets_dir, fqdn: str, create: bool = True) -> tuple[bytes, bytes, bytes] | None:
    """(repository password, SSH private key, SSH public key) of a mail host, made on first use (0600 files);
    None when they do not exist and ``create`` is False (a dry run)."""
    pw_file = secrets.backup_password_file(secrets_dir, fqdn)
    key_file = secrets.backup_ssh_key_file(secrets_dir, fqdn)
    pub_file = key_file.with_name(key_file.name + ".pub")
    if not (pw_file.exists() and key_file.exists() and pub_file.exists()):
        if not create:
            return None
        if not pw_file.exists():
            secrets.write_private(pw_file, _random.token_urlsafe(32) + "\n")
        if not key_file.exists() or not pub_file.exists():
            key = Ed25519PrivateKey.generate()
            secrets.write_private(key_file, key.private_bytes(serialization.Encoding.PEM,
                                                              serialization.PrivateFormat.OpenSSH,
                                                              serialization.NoEncryption()))
            pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            secrets.write_private(pub_file, pub + f" mailstead-backup@{fqdn}\n".encode())
    return pw_file.read_bytes(), key_file.read_bytes(), pub_file.read_bytes()


def s3_credentials(secrets_dir, fqdn: str) -> bytes:
    """The access key of an S3 repository for a mail host, read from secrets_dir (backup/<fqdn>.s3-credentials,
    else backup/s3-credentials; written by the operator): `NAME=value` lines, AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY required, AWS_DEFAULT_REGION optional, '#' comments. Returned normalised (safe to
    source in sh: values are letters, digits and / + = . _ - only). Errors name the file, the line and the fix,
    never a value."""
    path = secrets.backup_s3_credentials_file(secrets_dir, fqdn)
    how = (f"write it with the lines AWS_ACCESS_KEY_ID=<key id> and AWS_SECRET_ACCESS_KEY=<secret> of the "
           f"bucket's access key (from your S3 provider), then chmod 600 {path}")

    def bad(message: str) -> SettingsError:
        return SettingsError([Issue(str(path), "", message, [fqdn])])

    if not path.is_file():
        raise bad(f"backup.repository is an s3: repository, so its access key must be in this file; {how}")
    if path.stat().st_mode & 0o077:
        raise bad(f"the S3 access key is readable by others; chmod 600 {path}")
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, eq, value = line.partition("=")
        name = name.strip()
        if not eq or name not in S3_REQUIRED + S3_OPTIONAL:
            raise bad(f"line {number}: expected NAME=value with NAME one of {', '.join(S3_REQUIRED + S3_OPTIONAL)}; "
                      f"{how}")
        if name in values:
            raise bad(f"line {number}: {name} is given twice; keep one")
        if not _S3_VALUE_RE.match(value.strip()):
            raise bad(f"line {number}: the value of {name} must be 1-256 letters, digits or / + = . _ - (no "
                      "quotes, no spaces); write it as the provider shows it")
        values[name] = value.strip()
    missing = [n for n in S3_REQUIRED if n not in values]
    if missing:
        raise bad(f"{' and '.join(missing)} missing; {how}")
    return "".join(f"{n}={values[n]}\n" for n in S3_REQUIRED + S3_OPTIONAL if n in values).encode()


def restore_script(fqdn: str, address: str | None) -> str:
    """The shell script a restore runs on the host: restic restore of the latest snapshot (the whole mail store,
    smtpd stopped meanwhile, or one mailbox), ownership back to vmail, every full-text index of what was
    restored dropped and rebuilt, Dovecot's view resynced. A whole host also gets rspamd's Bayes data back
    (Valkey's snapshot, with Valkey stopped meanwhile) when the snapshot holds it."""
    if address:
        local, domain = split_address(address)
        path = f"{VMAIL}/{domain}/{local}"
        who = f"-u '{address}'"
    else:
        path, who = VMAIL, "-A"
    stop = "" if address else "systemctl stop opensmtpd\ntrap 'systemctl start opensmtpd' EXIT\n"
    bayes = "" if address else f"""if {RESTIC} ls latest --host {fqdn} --tag mailstead '{BAYES_DUMP}' | grep -qx '{BAYES_DUMP}'; then
  systemctl stop valkey-server
  {RESTIC} restore latest --host {fqdn} --tag mailstead --target / --include '{BAYES_DUMP}'
  chown valkey:valkey '{BAYES_DUMP}'
  systemctl start valkey-server
  echo restored the Bayes data of rspamd
fi
"""
    return f"""set -eu
{stop}{RESTIC} restore latest --host {fqdn} --tag mailstead --target / --include '{path}'
find '{path}' -type d -name fts-flatcurve -prune -exec rm -rf {{}} +
chown -R vmail:vmail '{path}'
doveadm force-resync {who} '*'
doveadm index {who} '*'
echo restored {path} from the latest snapshot of {fqdn}
{bayes}"""


def _hosts(inventory_file: str, env: str | None, host: str | None) -> list[tuple[str, list[str], str]]:
    """(fqdn, ssh argv, backup schedule) of each mail host of the inventory that matches env / host."""
    from mailstead.inventory import load_inventory
    from mailstead.settings import from_host

    out = []
    for h in load_inventory(inventory_file):
        s = from_host(h)
        if not s.is_mailserver or (env and s.environment != env) or (host and host not in (h.name, s.fqdn)):
            continue
        out.append((str(s.fqdn), ssh_argv(h.data.dict(), str(s.fqdn)), s.backup.schedule))
    if not out:
        raise SystemExit(f"{inventory_file}: no mail host matches")
    return out


def _run(argv: list[str], script: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    return subprocess.run([*argv, "sh", "-s"], input=script, capture_output=True, text=True, timeout=timeout)


def backup_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead backup")
    p.add_argument("action", choices=["status", "now"])
    p.add_argument("--env", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    args = p.parse_args(argv)
    if args.action == "now" and not args.host:
        p.error("backup now needs --host HOST")
    rc = 0
    for fqdn, ssh, schedule in _hosts(args.inventory, args.env, args.host):
        if args.action == "now":
            proc = _run(ssh, "systemctl start mailstead-backup.service && echo backup done || "
                             "{ journalctl -u mailstead-backup.service -n 20 --no-pager; exit 1; }")
            print(proc.stdout.strip() or proc.stderr.strip())
            rc |= proc.returncode != 0
            continue
        # the same look as `check`'s backup finding: snapshots and the last run against the timer's interval
        proc = _run(ssh, backupcheck.script(fqdn, schedule), timeout=300)
        found = backupcheck.freshness(fqdn, backupcheck.parse_state(proc.stdout))
        fresh = found.status == OK
        print(f"{found.status if fresh else found.status.upper():8} {fqdn}: {found.detail}"
              + ("" if fresh else f"\n         -> {found.fix}"))
        rc |= not fresh
    return 1 if rc else 0


def restore_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m mailstead restore")
    p.add_argument("--host", required=True)
    p.add_argument("--user", default=None, metavar="ADDRESS", help="only this mailbox")
    p.add_argument("--inventory", default="inventory.py", metavar="FILE")
    args = p.parse_args(argv)
    [(fqdn, ssh, _)] = _hosts(args.inventory, None, args.host)
    if args.user and not split_address(args.user):
        p.error(f"{args.user!r} is not an address")
    proc = _run(ssh, restore_script(fqdn, args.user))
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr[-4000:])
    return proc.returncode
