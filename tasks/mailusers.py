"""The system users of the mail stack, in a stage of their own: OpenSMTPD's unprivileged and queue users and
the virtual mail user that owns every mailbox. Both OpenSMTPD and Dovecot name them in their configuration
(Dovecot's auth-smtpd listener belongs to smtpd's user; LMTP and the maildirs to vmail), and Dovecot refuses
to start when an owner is missing, so deploy.py runs this stage before either.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import server

from tasks.common import ensure_directory

VMAIL_USER = "vmail"
VMAIL_DIR = "/var/vmail"


def smtpd_users(settings) -> tuple[str, str]:
    """(the user smtpd's lookup process, proc tables and filters run as; its queue user): the source build's
    _smtpd/_smtpq, or Debian's package's opensmtpd/opensmtpq."""
    if settings.opensmtpd.source == "package":
        return "opensmtpd", "opensmtpq"
    return "_smtpd", "_smtpq"


def wanted(settings) -> tuple[dict[str, tuple[str, str, str]], list[str]]:
    """({user: (primary group, home, shell)}, [groups]) the mail stack needs."""
    user, queue_user = smtpd_users(settings)
    users = {user: ("nogroup", "/var/empty", "/usr/sbin/nologin"),
             queue_user: (queue_user, "/var/empty", "/usr/sbin/nologin"),
             VMAIL_USER: (VMAIL_USER, VMAIL_DIR, "/usr/sbin/nologin")}
    return users, [queue_user, VMAIL_USER]


def in_place(users: dict[str, tuple[str, str, str]], groups: list[str], getent: str) -> bool:
    """True when `getent passwd ...; getent group ...` output shows every user with its primary group, home and
    shell, and every group: then nothing needs to change (one fact instead of a user and group fact per op)."""
    passwd, group_gid = {}, {}
    for line in getent.splitlines():
        f = line.split(":")
        if len(f) == 7:
            passwd[f[0]] = (f[3], f[5], f[6])
        elif len(f) == 4:
            group_gid[f[0]] = f[2]
    if any(g not in group_gid for g in groups):
        return False
    for name, (group, home, shell) in users.items():
        have = passwd.get(name)
        if not have or group_gid.get(group) != have[0] or have[1:] != (home, shell):
            return False
    return True


def deploy(settings, env, results) -> None:
    users, groups = wanted(settings)
    user, queue_user = smtpd_users(settings)
    getent = host.get_fact(Command, command=f"getent passwd {' '.join(users)}; getent group {' '.join(groups)} "
                                            "nogroup; true")
    if in_place(users, groups, getent or ""):
        host.noop("the mail stack's users and groups are in place")
    else:
        server.group(name="smtpd queue group", group=queue_user, system=True)
        server.user(name="smtpd unprivileged user", user=user, system=True, group="nogroup",
                    home="/var/empty", shell="/usr/sbin/nologin", ensure_home=False)
        server.user(name="smtpd queue user", user=queue_user, system=True, group=queue_user,
                    home="/var/empty", shell="/usr/sbin/nologin", ensure_home=False)
        server.group(name="virtual mail group", group=VMAIL_USER, system=True)
        server.user(name="virtual mail user", user=VMAIL_USER, system=True, group=VMAIL_USER, home=VMAIL_DIR,
                    shell="/usr/sbin/nologin", ensure_home=False)
    ensure_directory(name="virtual mail directory", path=VMAIL_DIR, user=VMAIL_USER, group=VMAIL_USER,
                    mode="750")
