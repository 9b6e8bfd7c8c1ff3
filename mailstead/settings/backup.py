"""Settings of the backup stage (the `backup` key): where restic keeps each mail host's backups and when."""

from __future__ import annotations

import re

from pydantic import StrictInt, StrictStr, field_validator

from mailstead.settings.models import _Model

_REPO_RE = re.compile(r"^(/|sftp:|s3:https://|rest:https://)[A-Za-z0-9@._:/{}+=-]+$")
# s3:https://HOST[:PORT]/BUCKET[/PREFIX]: a DNS name, a bucket name as S3 allows it (3-63 of a-z 0-9 . -)
_S3_RE = re.compile(r"^s3:https://(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>\d{1,5}))?/(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}"
                    r"[a-z0-9])(?P<prefix>/[A-Za-z0-9._{}+=-]+)*/?$")
_CALENDAR_RE = re.compile(r"^[A-Za-z0-9*:,./~ -]{1,64}$")


class Backup(_Model):
    """Backups of each mail host with restic (Debian's package): the mail store (maildirs, Sieve scripts) and
    OpenSMTPD's queue, by a systemd timer on the host; the repository password lives in secrets_dir."""

    repository: StrictStr | None = None
    """restic repository, `{fqdn}` replaced by the host's name: a path ('/srv/backup/{fqdn}'), SFTP
    ('sftp:backup@backup.example.org:/srv/restic/{fqdn}', with the SSH key mailstead keeps in
    secrets_dir/backup/<fqdn>.ssh-key: authorize its .pub at the repository host), an S3-compatible bucket
    ('s3:https://s3.example.org/BUCKET/{fqdn}', https only; the access key comes from
    secrets_dir/backup/s3-credentials, or secrets_dir/backup/<fqdn>.s3-credentials for one host: two lines
    `AWS_ACCESS_KEY_ID=...` and `AWS_SECRET_ACCESS_KEY=...`, optionally `AWS_DEFAULT_REGION=...`; write it
    yourself with mode 0600) or 'rest:https://...'; None = no backups."""
    schedule: StrictStr = "daily"
    """When the timer runs (systemd OnCalendar, e.g. 'daily', '*-*-* 03:00')."""
    keep_daily: StrictInt = 7
    """Daily snapshots kept (restic forget --keep-daily; 1 .. 366)."""
    keep_weekly: StrictInt = 5
    """Weekly snapshots kept (0 .. 520)."""
    keep_monthly: StrictInt = 12
    """Monthly snapshots kept (0 .. 240)."""

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.startswith("s3:") or value.startswith("s3://"):
            if not value.startswith("s3:https://"):
                raise ValueError("an S3 repository is reached over https only (the access key and the backups "
                                 "travel in it); write e.g. repository = 's3:https://s3.example.org/BUCKET/{fqdn}'")
            if not _S3_RE.match(value):
                raise ValueError("an S3 repository is s3:https://HOST[:PORT]/BUCKET[/PREFIX] with a bucket "
                                 "name of 3-63 lowercase letters, digits, '.' and '-' and a prefix of letters, "
                                 "digits and . _ { } + = -; write e.g. "
                                 "repository = 's3:https://s3.example.org/mail-backups/{fqdn}'")
        if not _REPO_RE.match(value):
            raise ValueError("a restic repository is an absolute path, sftp:user@host:/path, "
                             "s3:https://HOST/BUCKET/PREFIX or rest:https://...; letters, digits and "
                             "@ . _ : / { } + = - only; write e.g. "
                             "repository = 'sftp:backup@backup.example.org:/srv/restic/{fqdn}'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not _CALENDAR_RE.match(value):
            raise ValueError("a systemd OnCalendar expression (letters, digits, * : , . / ~ - and spaces); "
                             "write e.g. schedule = 'daily'")
        return value

    @field_validator("keep_daily", "keep_weekly", "keep_monthly")
    @classmethod
    def _keep(cls, value: int, info) -> int:
        low, high = {"keep_daily": (1, 366), "keep_weekly": (0, 520), "keep_monthly": (0, 240)}[info.field_name]
        if not low <= value <= high:
            raise ValueError(f"between {low} and {high}; write e.g. {info.field_name} = {low + 4}")
        return value

    def repository_for(self, fqdn: str) -> str | None:
        return self.repository.replace("{fqdn}", fqdn) if self.repository else None

    @property
    def is_s3(self) -> bool:
        """The repository is an S3-compatible bucket (its access key comes from secrets_dir)."""
        return bool(self.repository and self.repository.startswith("s3:"))
