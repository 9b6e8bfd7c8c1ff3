"""The system users of the mail stack, in a stage of their own: OpenSMTPD's unprivileged and queue users and
the virtual mail user that owns every mailbox. Both OpenSMTPD and Dovecot name them in their configuration
(Dovecot's auth-smtpd listener belongs to smtpd's user; LMTP and the maildirs to vmail), and Dovecot refuses
to start when an owner is missing, so deploy.py runs this stage before either.
"""

from __future__ import annotations

from pyinfra.operations import files, server

VMAIL_USER = "vmail"
VMAIL_DIR = "/var/vmail"


def smtpd_users(settings) -> tuple[str, str]:
    """(the user smtpd's lookup process, proc tables and filters run as; its queue user): the source build's
    _smtpd/_smtpq, or Debian's package's opensmtpd/opensmtpq."""
    if settings.opensmtpd.source == "package":
        return "opensmtpd", "opensmtpq"
    return "_smtpd", "_smtpq"


def deploy(settings, env, results) -> None:
    user, queue_user = smtpd_users(settings)
    server.group(name="smtpd queue group", group=queue_user, system=True)
    server.user(name="smtpd unprivileged user", user=user, system=True, group="nogroup",
                home="/var/empty", shell="/usr/sbin/nologin", ensure_home=False)
    server.user(name="smtpd queue user", user=queue_user, system=True, group=queue_user,
                home="/var/empty", shell="/usr/sbin/nologin", ensure_home=False)
    server.group(name="virtual mail group", group=VMAIL_USER, system=True)
    server.user(name="virtual mail user", user=VMAIL_USER, system=True, group=VMAIL_USER, home=VMAIL_DIR,
                shell="/usr/sbin/nologin", ensure_home=False)
    files.directory(name="virtual mail directory", path=VMAIL_DIR, user=VMAIL_USER, group=VMAIL_USER,
                    mode="750")
