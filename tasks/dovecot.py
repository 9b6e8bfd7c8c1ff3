"""Dovecot 2.4: IMAP (993), LMTP for OpenSMTPD, SMTP AUTH socket, Sieve + ManageSieve (4190), quota, flatcurve.

One dovecot.conf written from scratch (Debian's conf.d is not included) and checked with
``doveconf -n -c <staged>`` before it replaces the live one; the users file is Dovecot's passwd-file.

Files on the host:
  /etc/dovecot/dovecot.conf     the whole configuration (files/dovecot/dovecot.conf.j2)
  /etc/dovecot/users            passwd-file: address, password hash, per-user quota (0640 root:dovecot)
  /var/vmail/<domain>/<user>/   home: Maildir/, sieve/, .dovecot.sieve, flatcurve index under Maildir
Sockets: /run/dovecot/lmtp (vmail 0600, for smtpd's LMTP delivery), /run/dovecot/auth-smtpd
(<smtpd user> 0600, for table-dovecot). Ports: 993 (IMAPS), 4190 (ManageSieve, STARTTLS);
143 only with the setting ``imap_starttls = True`` (STARTTLS; LOGIN/AUTHENTICATE refused before it).
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath

from pyinfra.operations import apt

from tasks import tls
from tasks.mailusers import VMAIL_DIR, VMAIL_USER, smtpd_users
from tasks.common import FILES_DIR, checked_file, enable_and_start, ensure_directory, render, restart_if, run_pending

PACKAGES = ["dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "dovecot-sieve", "dovecot-managesieved",
            "dovecot-flatcurve"]
CONFIG = "/etc/dovecot/dovecot.conf"
USERS_FILE = "/etc/dovecot/users"
DELIVERY_HEADERS_SIEVE = "/etc/dovecot/sieve/delivery-headers.sieve"  # one Return-Path on delivered mail
AUTH_CACHE_MARKER = "dovecot-auth-cache"  # pending marker: the users file changed, flush the auth cache


def _quota(q: str | None) -> str | None:
    return q  # '2G', '500M': Dovecot's size syntax accepts these as they are


def users_file(env) -> str:
    """Dovecot's passwd-file: the environment's users with their hashes and quotas."""
    lines = []
    for u in env.users:
        extra = f"userdb_quota_storage_size={_quota(u.quota)}" if u.quota else ""
        lines.append(f"{u.address}:{u.password_hash}::::::{extra}\n")
    return "".join(lines)


def dovecot_conf(settings, env, extra_settings: list[str] = ()) -> str:
    return render(
        "dovecot/dovecot.conf.j2",
        listen="*, ::" if settings.ipv6 else "*",
        fqdn=settings.fqdn,
        postmaster=env.admin_email,
        extra_settings=list(extra_settings or []),
        tls_cert=tls.CERT_PATH,
        tls_key=tls.KEY_PATH,
        client_ciphers=tls.CLIENT_CIPHERS,
        users_file=USERS_FILE,
        vmail_user=VMAIL_USER,
        vmail_dir=VMAIL_DIR,
        smtpd_user=smtpd_users(settings)[0],
        imap_starttls=settings.imap_starttls,
        delivery_headers_sieve=DELIVERY_HEADERS_SIEVE,
    )


SIEVE_MARKER = "dovecot-sieve-compile"  # pending marker: a global Sieve script changed, compile it again
# sievec on a staged copy (into a throw-away binary): the new script must compile before it goes live
SIEVEC = ("sievec -P sieve_imapsieve -P sieve_extprograms "
          "-x '+vnd.dovecot.pipe +vnd.dovecot.environment +imapsieve +editheader'")
SIEVE_CHECK = 'd=$(mktemp -d) && {{ ' + SIEVEC + ' {staged} "$d/check.svbin"; rc=$?; rm -rf "$d"; exit $rc; }}'


def _sieve_scripts(scripts: dict) -> list:
    """Global Sieve scripts of earlier stages (path -> source): checked with sievec on the staged copy,
    installed, and compiled next to the script (the binary Dovecot loads; its processes cannot write there)."""
    ops = []
    for directory in sorted({str(PurePosixPath(p).parent) for p in scripts}):
        ensure_directory(name=f"Sieve scripts directory {directory}", path=directory, user="root", group="root",
                        mode="755")
    for path, source in sorted(scripts.items()):
        ops.append(checked_file(name=f"Sieve script {path} (checked with sievec)", dest=path, content=source,
                                check=SIEVE_CHECK.format(staged="{staged}"), mode="644", restarts=SIEVE_MARKER,
                                secret=False))
    if scripts:
        compile_all = " && ".join(f"{SIEVEC} {shlex.quote(p)}" for p in sorted(scripts))
        run_pending(name="Compile the global Sieve scripts", marker=SIEVE_MARKER, command=compile_all, ops=ops)
    return ops


def deploy(settings, env, results) -> None:
    """``results.dovecot_settings``: raw dovecot.conf lines of earlier stages (e.g. IMAPSieve spam learning);
    ``results.tls_changed``: the TLS stage's operations (a new certificate restarts Dovecot). The users the
    config names (vmail, smtpd's user) come from the mailusers stage, which runs before this one."""
    results.open_ports += [993, 4190] + ([143] if settings.imap_starttls else [])
    packages = apt.packages(name="Dovecot 2.4 (IMAP, LMTP, Sieve, ManageSieve, flatcurve)", packages=PACKAGES,
                            no_recommends=True)
    users = checked_file(name="Dovecot users (passwd-file)", dest=USERS_FILE, content=users_file(env),
                         mode="640", user="root", group="dovecot", restarts=AUTH_CACHE_MARKER, secret=True)
    conf = checked_file(
        name="dovecot.conf (checked with doveconf -n)",
        dest=CONFIG,
        content=dovecot_conf(settings, env, results.dovecot_settings),
        check="doveconf -n -c {staged} >/dev/null",
        mode="644",
        user="root",
        group="root",
        restarts="dovecot",
        secret=False,
    )
    own = {DELIVERY_HEADERS_SIEVE: (FILES_DIR / "dovecot" / "delivery-headers.sieve").read_text()}
    _sieve_scripts(own | results.sieve_scripts)
    enable_and_start("dovecot")
    # a restart also empties the auth cache: it clears the users file's marker too
    restart = restart_if("dovecot", conf, packages, *results.tls_changed, clears=[AUTH_CACHE_MARKER],
                         name="Restart Dovecot after a change")
    # a users-file change needs no restart: passwd-file is re-read when it changes; flush the auth cache
    run_pending(name="Flush Dovecot's auth cache after a users change", marker=AUTH_CACHE_MARKER,
                command="doveadm auth cache flush", ops=(users,), _if=lambda: not restart.did_change())
