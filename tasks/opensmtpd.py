"""OpenSMTPD: a pinned release built from verified source (or Debian's package), smtpd.conf from settings.

Stages: install (build deps, users, fetch + verify + build only when version/options changed) → configure
(tables, smtpd.conf, table-dovecot, unit) → validate (``smtpd -n -f`` on the staged file) → activate
(restart only on change; table-only changes are reloaded with ``smtpctl update table``).

Files on the host (source build):
  /opt/opensmtpd/{sbin/smtpd,sbin/smtpctl,libexec/opensmtpd/*}   the build (prefix), stamp .mailstead-build
  /opt/opensmtpd/libexec/opensmtpd/table-dovecot                  SMTP AUTH through Dovecot (see that file)
  /etc/opensmtpd/smtpd.conf                                       config (package: /etc/smtpd.conf)
  /etc/mailstead/smtpd/{domains,virtuals,recipients,sendermap,aliases}      tables
  /etc/systemd/system/opensmtpd.service                           unit (ExecStartPre=smtpd -n)
  /var/spool/smtpd                                                queue
Ports: 25 (STARTTLS, no AUTH), 465 (implicit TLS + AUTH), 587 (STARTTLS required + AUTH).

Hook for filtering/DKIM (later work): a stage that runs before this one appends its ``SmtpdFilter`` to
``results.smtpd_filters``, so smtpd.conf is rendered once. Two
filters are always there (``builtin_filters``): filter-authguard on 465/587 (per-source AUTH throttling, see
that file) and a built-in one on 25 that refuses MAIL FROM in our own domains (only AUTH may use them).
"""

from __future__ import annotations

import base64
import hashlib
import secrets as _random
import shlex
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, python, server

from mailstead import secrets, tarballs

from mailstead import secrets
from tasks import tls
from tasks.common import (DAEMON_RELOAD, FILES_DIR, absent_file, checked_file, dry_run, enable_and_start,
                          ensure_directory, mark_pending, put_file, render, restart_if, run_pending, would_create)
from tasks.mailusers import VMAIL_USER, smtpd_users

PREFIX = "/opt/opensmtpd"
STAMP = f"{PREFIX}/.mailstead-build"
QUEUE_DIR = "/var/spool/smtpd"
PACKAGE_DROPIN = "/etc/systemd/system/opensmtpd.service.d/mailstead.conf"
TABLES_DIR = "/etc/mailstead/smtpd"
SRS_CONF = f"{TABLES_DIR}/srs.conf"  # `srs key "..."`, included by smtpd.conf (root 0600: the key is a secret)
LMTP_SOCKET = "/run/dovecot/lmtp"
DOVECOT_AUTH_SOCKET = "/run/dovecot/auth-smtpd"
# table file → its name in smtpd.conf
TABLE_NAMES = {"credentials": "credentials", "domains": "domains", "virtuals": "virtuals", "recipients": "recipients",
               "sendermap": "sendermap", "aliases": "localaliases", "ownsenders": "ownsenders"}
BUILD_SCRIPT = "/usr/local/lib/mailstead/build-opensmtpd.sh"
TARBALL_DIR = "/var/cache/mailstead/opensmtpd"  # the build script's work directory (its tarball cache)
# programs smtpd runs from its libexec directory (as its unprivileged user)
HELPERS = {"table-dovecot": "SMTP AUTH via Dovecot", "filter-authguard": "per-source AUTH throttling"}

BUILD_PACKAGES = [
    "build-essential", "bison", "autoconf", "automake", "libtool", "pkgconf",
    "libevent-dev", "libssl-dev", "libpam0g-dev", "libcrypt-dev", "zlib1g-dev",
    "ca-certificates", "python3",
]

BASE_CONFIGURE = [
    f"--prefix={PREFIX}",
    "--sysconfdir=/etc/opensmtpd",
    "--with-path-queue=/var/spool/smtpd",
    "--with-path-empty=/var/empty",
    "--with-path-socket=/run",
    "--with-path-pidfile=/run",
    "--with-user-smtpd=_smtpd",
    "--with-user-queue=_smtpq",
    "--with-group-queue=_smtpq",
]


@dataclass(frozen=True)
class SmtpdFilter:
    """One smtpd filter: ``filter "<name>" <definition>``, on the inbound (25) and/or submission listeners.
    Example: SmtpdFilter("rspamd", 'proc-exec "/usr/libexec/opensmtpd/filter-rspamd"')."""

    name: str
    definition: str
    inbound: bool = True
    submission: bool = True


@dataclass(frozen=True)
class Layout:
    smtpd: str
    smtpctl: str
    config: str
    libexec: str
    user: str
    queue_user: str
    service: str = "opensmtpd"


def layout(settings) -> Layout:
    users = smtpd_users(settings)
    if settings.opensmtpd.source == "package":
        return Layout("/usr/sbin/smtpd", "/usr/sbin/smtpctl", "/etc/smtpd.conf", "/usr/libexec/opensmtpd", *users)
    return Layout(f"{PREFIX}/sbin/smtpd", f"{PREFIX}/sbin/smtpctl", "/etc/opensmtpd/smtpd.conf",
                  f"{PREFIX}/libexec/opensmtpd", *users)


def configure_options(settings) -> list[str]:
    return BASE_CONFIGURE + list(settings.opensmtpd.configure_options)


def build_stamp(settings) -> str:
    o = settings.opensmtpd
    opts = hashlib.sha256("\0".join(configure_options(settings)).encode()).hexdigest()[:16]
    checked = o.sha256 or ("signify" if o.source == "upstream" else "signed-index:" + o.debian_suite)
    return f"opensmtpd {o.version} source={o.source} sha256={checked} options={opts}"


# ----------------------------------------------------------------------------- tables


def _owned_senders(env) -> dict[str, list[str]]:
    """login → addresses it may use in MAIL FROM: its own, plus alias addresses whose targets include it."""
    out: dict[str, list[str]] = {u.address: [u.address] for u in env.users}
    for source, targets in env.effective_aliases.items():
        if source.startswith("@"):
            continue
        for t in targets:
            if t in out and source not in out[t]:
                out[t].append(source)
    return out


# schemes OpenSMTPD's own crypt_checkpass() verifies (libxcrypt): the fallback credentials table of package mode
CRYPT_SCHEMES = ("{BLF-CRYPT}", "{SHA512-CRYPT}")


def uses_dovecot_auth(settings) -> bool:
    """SMTP AUTH through Dovecot (table-dovecot) — except with Debian 13's opensmtpd 7.6.0p1, which lowercases
    the `user:password` key it hands to an auth table (mixed-case passwords never match). There, the package
    mode verifies bcrypt/sha512-crypt hashes itself from a credentials table (ARGON2ID users cannot SMTP AUTH)."""
    return settings.opensmtpd.source != "package"


def credentials(env) -> str:
    lines = []
    for u in env.users:
        for scheme in CRYPT_SCHEMES:
            if u.password_hash.startswith(scheme):
                lines.append(f"{u.address} {u.password_hash[len(scheme):]}\n")
    return "# Managed by mailstead (tasks/opensmtpd.py): package mode only\n" + "".join(lines)


def tables(settings, env) -> dict[str, str]:
    """The smtpd tables: the environment's domains, users and aliases; the credentials table only where the
    host's OpenSMTPD checks passwords itself (package mode)."""
    boxes = {u.address for u in env.users}
    virt = [f"{a} {VMAIL_USER}" for a in sorted(boxes)]
    catchall = []
    for source, targets in sorted(env.effective_aliases.items()):
        line = f"{source} {', '.join(targets)}"
        (catchall if source.startswith("@") else virt).append(line)
    recipients = sorted(boxes | set(env.effective_aliases))
    senders = [f"{login} {', '.join(addrs)}" for login, addrs in sorted(_owned_senders(env).items())]
    local_aliases = [f"{name}: {env.admin_email}" for name in
                     ("root", "postmaster", "abuse", "mailer-daemon", "nobody", "hostmaster", "webmaster")]
    head = "# Managed by mailstead (tasks/opensmtpd.py)\n"
    out = {} if uses_dovecot_auth(settings) else {"credentials": credentials(env)}
    return out | {
        "domains": head + "".join(f"{d}\n" for d in env.domains),
        "virtuals": head + "".join(f"{line}\n" for line in virt + catchall),
        "recipients": head + "".join(f"{a}\n" for a in recipients),
        "sendermap": head + "".join(f"{line}\n" for line in senders),
        "aliases": head + "".join(f"{line}\n" for line in local_aliases),
        "ownsenders": own_senders(env),
    }


def own_senders(env) -> str:
    """Table of our domains as MAIL FROM patterns (`@domain`): on port 25 (no AUTH there) a sender in them is
    refused at MAIL FROM - only our authenticated users send as our domains."""
    return "# Managed by mailstead (tasks/opensmtpd.py)\n" + "".join(f"@{d}\n" for d in env.domains)


def builtin_filters(settings) -> list[SmtpdFilter]:
    """The filters every mail host runs, before those of other stages."""
    return [
        SmtpdFilter("authguard", f'proc-exec "{layout(settings).libexec}/filter-authguard"', inbound=False),
        SmtpdFilter("ownsenders", 'phase mail-from match mail-from <ownsenders> reject '
                    '"550 5.7.1 Sender address in a domain of this server: authenticate on port 465 or 587"',
                    submission=False),
    ]


def table_owner(name: str, lay: Layout) -> dict:
    """Owner and mode of a table file. `smtpctl update table` makes smtpd's unprivileged lookup process re-read
    the file, so the password hashes of the credentials table belong to that user, readable by it alone."""
    if name == "credentials":
        return {"user": lay.user, "group": "root", "mode": "400"}
    return {"user": "root", "group": "root", "mode": "644"}


def table_is_secret(name: str) -> bool:
    """The credentials table holds password hashes: ``--diff`` never shows it. The other tables hold names."""
    return name == "credentials"


def listen_addresses(settings) -> list[str]:
    """Wildcards (the public address may sit behind 1:1 NAT); IPv6 only when the host publishes an IPv6 address
    (binding :: fails on a host without IPv6)."""
    return ["0.0.0.0", "::"] if settings.ipv6 else ["0.0.0.0"]


def smtpd_conf(settings, filters=()) -> str:
    lay = layout(settings)
    filters = builtin_filters(settings) + list(filters)
    chains, inbound_chain, submission_chain = [], None, None
    for kind in ("inbound", "submission"):
        members = [f.name for f in filters if getattr(f, kind)]
        name = None
        if len(members) == 1:
            name = members[0]
        elif members:
            name = f"{kind}-chain"
            chains.append((name, members))
        if kind == "inbound":
            inbound_chain = name
        else:
            submission_chain = name
    return render(
        "opensmtpd/smtpd.conf.j2",
        version=settings.opensmtpd.version if settings.opensmtpd.source != "package" else "(Debian package)",
        fqdn=settings.fqdn,
        tls_cert=tls.CERT_PATH,
        tls_key=tls.KEY_PATH,
        client_protocols=tls.CLIENT_PROTOCOLS_OPENSSL,
        client_ciphers=tls.CLIENT_CIPHERS,
        tables_dir=TABLES_DIR,
        dovecot_auth_socket=DOVECOT_AUTH_SOCKET,
        auth_table="dovecot" if uses_dovecot_auth(settings) else "credentials",
        filters=filters,
        chains=chains,
        inbound_chain=inbound_chain,
        submission_chain=submission_chain,
        listen_addresses=listen_addresses(settings),
        vmail_user=VMAIL_USER,
        lmtp_socket=LMTP_SOCKET,
        smtpd=lay.smtpd,
        srs_conf=SRS_CONF,
    )


def srs_key(secrets_dir) -> str | None:
    """The SRS key from secrets_dir (``smtpd/srs.key``; made once, kept across rebuilds, so addresses rewritten
    before a rebuild still decode after it); None in a dry run that would have to make it."""
    path = secrets.secrets_root(secrets_dir) / "smtpd" / "srs.key"
    if path.exists():
        return path.read_text().strip()
    if dry_run():
        would_create(f"the OpenSMTPD SRS key {path}")
        return None
    secrets.write_private(path, _random.token_hex(32) + "\n")
    return path.read_text().strip()


# ----------------------------------------------------------------------------- the stage


def upload_commands(path, sha256: str, dest: str, chunk: int = 12288) -> list[str]:
    """Shell commands that write ``path`` to ``dest`` on the host in base64 pieces and keep it only if its
    sha256 matches (one SFTP write of a large file stalls through an SSH ProxyCommand, as the lab's)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    tmp = f"{dest}.upload"
    cmds = [f"rm -f {tmp}"]
    cmds += [f"printf %s {data[i:i + chunk]} | base64 -d >> {tmp}" for i in range(0, len(data), chunk)]
    cmds.append(f"echo '{sha256}  {tmp}' | sha256sum -c --status && mv -f {tmp} {dest}")
    return cmds


def _install_source(settings, env, lay: Layout) -> list:
    o = settings.opensmtpd
    apt.packages(name="OpenSMTPD build dependencies", packages=BUILD_PACKAGES, no_recommends=True)
    if o.signify_pubkey:
        apt.packages(name="signify-openbsd (checks upstream's signed checksum list)", packages=["signify-openbsd"],
                     no_recommends=True)
    apt.packages(name="Debian's opensmtpd package is not used with a source build",
                 packages=["opensmtpd"], present=False)
    ensure_directory(name="/var/empty (smtpd chroot)", path="/var/empty", user="root", group="root", mode="755")
    put_file(name="OpenSMTPD build script", src=str(FILES_DIR / "opensmtpd/build-opensmtpd.sh"),
                       dest=BUILD_SCRIPT, mode="755", user="root", group="root")
    want = build_stamp(settings)
    have = host.get_fact(FileContents, path=STAMP)
    ops = [files.file(name="no package-mode unit drop-in with a source build", path=PACKAGE_DROPIN, present=False)]
    if not have or have[0].strip() != want:
        sha = o.sha256 or ""
        kept = None if o.signify_pubkey else tarballs.find(env.secrets_dir, o.version, o.sha256)
        if kept:  # verified before, kept on the deploy machine: the host builds it without fetching
            ensure_directory(name="OpenSMTPD tarball cache", path=TARBALL_DIR, user="root", group="root", mode="755")
            server.shell(name=f"OpenSMTPD {o.version} tarball from the deploy machine (sha256 {kept[1][:12]}...)",
                         commands=upload_commands(kept[0], kept[1], f"{TARBALL_DIR}/opensmtpd-{o.version}.tar.gz"))
            sha = kept[1]
        args = [BUILD_SCRIPT, o.source, o.version, sha, STAMP, want, o.debian_suite,
                o.upstream_url or "", o.signify_key_text() or "", "--", *configure_options(settings)]
        check = " (signify)" if o.signify_pubkey else ""
        ops.append(server.shell(name=f"Fetch, verify{check}, build and install OpenSMTPD {o.version}",
                                commands=[" ".join(shlex.quote(a) for a in args)]))
        if not kept and not dry_run():  # keep the tarball the host verified and built, for later builds
            local = tarballs.cache_dir(env.secrets_dir) / f".incoming-{host.name}-{o.version}.tar.gz"
            secrets.private_dir(local.parent)
            files.get(name=f"Keep the verified OpenSMTPD {o.version} tarball on the deploy machine",
                      src=f"{TARBALL_DIR}/opensmtpd-{o.version}.tar.gz", dest=str(local), add_deploy_dir=False,
                      force=True)
            python.call(name="OpenSMTPD tarball filed under its sha256", function=tarballs.keep,
                        secrets_dir=env.secrets_dir, version=o.version, downloaded=str(local))
    else:
        host.noop(f"OpenSMTPD {o.version} already built with these options")
    ops += _helpers(lay)
    ops.append(put_file(name="opensmtpd.service", src=_unit(settings, lay),
                         dest="/etc/systemd/system/opensmtpd.service", mode="644"))
    return ops


def _unit(settings, lay: Layout):
    return BytesIO(render("opensmtpd/opensmtpd.service.j2", version=settings.opensmtpd.version, prefix=PREFIX,
                          smtpd=lay.smtpd, config=lay.config).encode())


def _install_package(settings, lay: Layout) -> list:
    ops = [files.file(name="no mailstead-built opensmtpd unit with the package",
                      path="/etc/systemd/system/opensmtpd.service", present=False)]
    ops.append(apt.packages(name="Debian's opensmtpd", packages=["opensmtpd", "python3"], no_recommends=True))
    ensure_directory(name="opensmtpd unit drop-in directory", path="/etc/systemd/system/opensmtpd.service.d",
                    mode="755")
    ops.append(put_file(name="opensmtpd unit: check the config before start",
                         src=BytesIO(f"[Service]\nExecStartPre={lay.smtpd} -n -f {lay.config}\n".encode()),
                         dest=PACKAGE_DROPIN, mode="644"))
    return ops + _helpers(lay)


def _helpers(lay: Layout) -> list:
    return [put_file(name=f"{name} ({what})", src=str(FILES_DIR / "opensmtpd" / name),
                      dest=f"{lay.libexec}/{name}", mode="755", user="root", group="root")
            for name, what in HELPERS.items()]


def _adopt_queue(lay: Layout) -> list:
    """After a switch between the source build (_smtpq) and Debian's package (opensmtpq), hand the existing
    queue to the new queue user: smtpd refuses to start on a spool owned by another uid."""
    other = "opensmtpq" if lay.queue_user == "_smtpq" else "_smtpq"
    found = host.get_fact(Command, command=f"find {QUEUE_DIR} \\( -user {other} -o -group {other} \\) -print -quit "
                                           "2>/dev/null || true")
    if not found:
        return []
    return [server.shell(
        name=f"Hand the queue from {other} to {lay.queue_user}",
        commands=[f"chown -R --from={other} {lay.queue_user} {QUEUE_DIR}",
                  f"chown -R --from=:{other} :{lay.queue_user} {QUEUE_DIR}"],
    )]


def deploy(settings, env, results) -> None:
    """``results.smtpd_filters``: filters of earlier stages (spam filtering, signing) for smtpd.conf;
    ``results.tls_changed``: the TLS stage's operations (a new certificate restarts smtpd)."""
    lay = layout(settings)
    results.open_ports += [25, 465, 587]
    if settings.opensmtpd.source == "package":
        install_ops = _install_package(settings, lay)
    else:
        install_ops = _install_source(settings, env, lay)
    mark_pending(["opensmtpd", DAEMON_RELOAD], ops=install_ops,
                 name="OpenSMTPD must restart after its install changed")
    run_pending(name="systemd daemon-reload (opensmtpd unit)", marker=DAEMON_RELOAD,
                command="systemctl daemon-reload", ops=install_ops)
    install_ops += _adopt_queue(lay)

    ensure_directory(name="smtpd tables directory", path=TABLES_DIR, user="root", group="root", mode="755")
    table_ops = []
    for name, content in tables(settings, env).items():
        table_ops.append(checked_file(name=f"smtpd table {name}", dest=f"{TABLES_DIR}/{name}", content=content,
                                      restarts=table_marker(name), secret=table_is_secret(name),
                                      **table_owner(name, lay)))
    if uses_dovecot_auth(settings):
        absent_file(name="no credentials table (AUTH goes to Dovecot)", path=f"{TABLES_DIR}/credentials")
    else:
        skipped = [u.address for u in env.users if not u.password_hash.startswith(CRYPT_SCHEMES)]
        if skipped:
            host.noop(f"SMTP AUTH unavailable with the opensmtpd package for {', '.join(skipped)} "
                      "(ARGON2ID hash; use source = 'debian-archive' or a {BLF-CRYPT} hash)")
    key = srs_key(env.secrets_dir)
    srs_ops = []
    if key is not None:
        srs_ops.append(checked_file(name="smtpd SRS key (srs.conf, included by smtpd.conf)", dest=SRS_CONF,
                                      content=f'# Managed by mailstead (tasks/opensmtpd.py)\nsrs key "{key}"\n',
                                      mode="600", user="root", group="root", restarts="opensmtpd", secret=True))
    conf = checked_file(
        name="smtpd.conf (checked with smtpd -n)",
        dest=lay.config,
        content=smtpd_conf(settings, results.smtpd_filters),
        check=f"{lay.smtpd} -n -f {{staged}} >/dev/null",
        mode="644",
        restarts="opensmtpd",
        secret=False,
    )
    enable_and_start(lay.service)
    # a restart reads every table anew: it settles the tables' markers too
    markers = [table_marker(name) for name in tables(settings, env)]
    restart = restart_if(lay.service, conf, *srs_ops, *install_ops, *results.tls_changed, marker="opensmtpd",
                         clears=markers,
                         name="Restart OpenSMTPD after a change")
    # table-only changes: reload the tables in place (no restart, sessions and queue runners keep going)
    for name, op in zip(tables(settings, env), table_ops):
        table = TABLE_NAMES[name]
        run_pending(name=f"Reload smtpd table {table}", marker=table_marker(name), ops=(op,),
                    command=f"{lay.smtpctl} update table {table}", _if=lambda: not restart.did_change())


def table_marker(name: str) -> str:
    """The pending marker of a table file: `smtpctl update table` still owed to smtpd."""
    return f"opensmtpd-table-{name}"
