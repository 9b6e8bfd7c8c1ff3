"""Backup stage (mail hosts, when ``backup.repository`` is set): restic from Debian, the host's repository
password and SSH key from the deploy machine's secrets_dir (mailstead.backup), a wrapper that runs restic with
them, the backup script and a systemd timer.

  /etc/mailstead/backup/{password,id_ed25519}   root 0600 (secrets; content never shown)
  /etc/mailstead/backup/s3-credentials          root 0600, S3 repositories only: the access key from
                                                secrets_dir/backup/[<fqdn>.]s3-credentials (mailstead.backup)
  /etc/mailstead/backup/ssh_config              SSH settings of restic's SFTP backend
  /usr/local/sbin/mailstead-restic              restic with this host's repository
  /usr/local/sbin/mailstead-backup              init (first run), backup, forget --prune
  mailstead-backup.{service,timer}              the timer runs it on backup.schedule

The first backup runs at the timer's first time (or `python -m mailstead backup now --host HOST`), not during
the deploy: the repository host may still have to authorize the key (secrets_dir/backup/<fqdn>.ssh-key.pub).
"""

from __future__ import annotations

from pyinfra.operations import apt

from mailstead import secrets
from mailstead.backup import BAYES_DUMP, BIN, VMAIL, backup_secrets, s3_credentials
from tasks.common import (DAEMON_RELOAD, absent_file, checked_file, dry_run, enable_and_start, ensure_directory, render,
                          run_pending, would_create)

TIMER_MARKER = "mailstead-backup-timer"
CONF_DIR = "/etc/mailstead/backup"
S3_CREDENTIALS = f"{CONF_DIR}/s3-credentials"
PATHS = (VMAIL, "/var/spool/smtpd")


def deploy(settings, env, results) -> None:
    b = settings.backup
    if not b.repository:
        return
    fqdn = str(settings.fqdn)
    apt.packages(name="restic", packages=["restic"])
    ensure_directory(name=f"backup: {CONF_DIR}", path=CONF_DIR, user="root", group="root", mode="700")
    ensure_directory(name="backup: restic cache", path="/var/cache/restic", user="root", group="root", mode="700")
    made = backup_secrets(env.secrets_dir, fqdn, create=not dry_run())
    if made is None:
        would_create(f"the backup password and SSH key of {fqdn} in "
                     f"{secrets.backup_password_file(env.secrets_dir, fqdn).parent}")
    else:
        password, key, _ = made
        checked_file(name="backup: repository password", dest=f"{CONF_DIR}/password", content=password, mode="600",
                     secret=True)
        checked_file(name="backup: SSH key", dest=f"{CONF_DIR}/id_ed25519", content=key, mode="600", secret=True)
    if b.is_s3:
        checked_file(name="backup: S3 access key", dest=S3_CREDENTIALS, content=s3_credentials(env.secrets_dir, fqdn),
                     mode="600", secret=True)
    else:
        absent_file(name="backup: no S3 access key", path=S3_CREDENTIALS)
    ctx = {"conf_dir": CONF_DIR, "s3_credentials": S3_CREDENTIALS if b.is_s3 else None, "bin_dir": BIN, "fqdn": fqdn,
           "repository": b.repository_for(fqdn), "paths": PATHS, "bayes_dump": BAYES_DUMP, "schedule": b.schedule,
           "keep_daily": b.keep_daily, "keep_weekly": b.keep_weekly, "keep_monthly": b.keep_monthly}
    checked_file(name="backup: ssh_config", dest=f"{CONF_DIR}/ssh_config", content=render("backup/ssh_config.j2", **ctx),
                 mode="600", secret=False)
    for script in ("mailstead-restic", "mailstead-backup"):
        checked_file(name=f"backup: {BIN}/{script}", dest=f"{BIN}/{script}",
                     content=render(f"backup/{script}.j2", **ctx), check="sh -n {staged}", mode="755",
                     secret=False)
    units = [checked_file(name=f"backup: {unit}", dest=f"/etc/systemd/system/{unit}",
                          content=render(f"backup/{unit}.j2", **ctx), restarts=[DAEMON_RELOAD, TIMER_MARKER],
                          secret=False)
             for unit in ("mailstead-backup.service", "mailstead-backup.timer")]
    run_pending(name="backup: systemd daemon-reload", marker=DAEMON_RELOAD, command="systemctl daemon-reload",
                ops=units)
    enable_and_start("mailstead-backup.timer")
    run_pending(name="backup: restart the timer after a change", marker=TIMER_MARKER,
                command="systemctl restart mailstead-backup.timer", ops=units)
