"""Rspamd (mail hosts): spam filtering and DKIM signing in OpenSMTPD's path, Bayes and greylisting in Valkey.

Stages: install (Debian's rspamd, valkey-server, opensmtpd-filter-rspamd) → configure (local.d files from the
settings) → validate (every file with ``rspamadm configtest`` on a private copy of /etc/rspamd holding the new
file, see files/rspamd/rspamd-configtest: the live tree and the running rspamd are never touched by a bad
file) → activate (reload on change, also when the DKIM stage installed keys).

Runs after the DKIM stage (the keys it signs with, readable by the ``_rspamd`` group) and before OpenSMTPD and
Dovecot: it hands them ``results.smtpd_filters`` (filter-rspamd on 25 and on 465/587) and the global Sieve
script that files spam into Junk (``results.sieve_scripts`` / ``results.dovecot_settings``).

Files on the host:
  /etc/rspamd/local.d/*.conf                    actions, redis, bayes, greylist, dkim_signing, rbl, multimap, ...
  /etc/rspamd/local.d/worker-controller.inc     controller on localhost:11334, password hash (rspamd's PBKDF)
  /etc/mailstead/rspamd/controller.password     the controller password (root 0600; secrets_dir/rspamd/)
  /usr/local/lib/mailstead/rspamd-*             the checker and the hash helper
  /var/lib/mailstead/spamtrap-sources.map       client addresses that hit a trap (another stage fills it)
"""

from __future__ import annotations

import re
import secrets as _random
import shlex

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files

from mailstead import secrets, spamtrap
from tasks import dkim
from tasks.common import (FILES_DIR, STATE_DIR, absent_file, checked_file, dry_run, enable_and_start, ensure_directory,
                          mark_pending, put_file, render, restart_if, run_pending, would_create)
from tasks.opensmtpd import SmtpdFilter

PACKAGES = ["rspamd", "valkey-server", "opensmtpd-filter-rspamd"]
FILTER = "/usr/libexec/opensmtpd/filter-rspamd"  # Debian's path; smtpd is self-built, so the full path
LOCAL_D = "/etc/rspamd/local.d"
HELPER_DIR = "/usr/local/lib/mailstead"
CHECK = f"{HELPER_DIR}/rspamd-configtest"
HASH_HELPER = f"{HELPER_DIR}/rspamd-controller-hash"
PASSWORD_FILE = "/etc/mailstead/rspamd/controller.password"
REDIS = "127.0.0.1:6379"
SPAMTRAP_MAP = spamtrap.MAP_FILE  # filled by the trap feed stage (tasks/trapfeed.py)
SIEVE_DIR = "/etc/dovecot/sieve"
SPAM_SIEVE = f"{SIEVE_DIR}/spam.sieve"
LEARN_SPAM_SIEVE = f"{SIEVE_DIR}/learn-spam.sieve"
LEARN_HAM_SIEVE = f"{SIEVE_DIR}/learn-ham.sieve"
PIPE_DIR = "/usr/local/lib/mailstead/sieve-pipe"  # sieve_pipe_bin_dir: the programs IMAPSieve may run
CONTROLLER_MARKER = "rspamd-controller"  # pending marker: the controller password changed, hash it again
LOCAL_CONFIG_HEAD = "# Managed by mailstead (settings rspamd.local_config)\n"


def password_file(secrets_dir) -> "secrets.Path":
    return secrets.secrets_root(secrets_dir) / "rspamd" / "controller.password"


def controller_password(secrets_dir) -> str | None:
    """The controller's password from secrets_dir (made once, kept across rebuilds); None in a dry run that
    would have to make it."""
    path = password_file(secrets_dir)
    if path.exists():
        return path.read_text().strip()
    if dry_run():
        would_create(f"the rspamd controller password {path}")
        return None
    secrets.write_private(path, _random.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _written_local_config() -> list[str]:
    """local.d files that rspamd.local_config wrote (they start with LOCAL_CONFIG_HEAD)."""
    head = LOCAL_CONFIG_HEAD.strip()
    out = host.get_fact(Command, command=f"grep -lxF {shlex.quote(head)} {LOCAL_D}/*.conf {LOCAL_D}/*.inc "
                                         "2>/dev/null || true")
    return [line.strip() for line in (out or "").splitlines() if line.strip()]


def dnsbl_symbol(zone: str) -> str:
    return "RBL_" + re.sub(r"[^A-Z0-9]", "_", zone.upper())


def local_files(settings, env) -> dict[str, str]:
    """local.d file name → content, from the settings (and the DKIM keys the DKIM stage installed)."""
    r = settings.rspamd
    dnsbls = [(zone, dnsbl_symbol(zone)) for zone in r.dnsbls]
    out = {
        "actions.conf": render("rspamd/actions.conf.j2", r=r),
        "redis.conf": render("rspamd/redis.conf.j2", redis=REDIS),
        "classifier-bayes.conf": render("rspamd/classifier-bayes.conf.j2", r=r),
        "options.inc": render("rspamd/options.inc.j2"),
        "greylist.conf": render("rspamd/greylist.conf.j2", r=r),
        "milter_headers.conf": render("rspamd/milter_headers.conf.j2"),
        "dkim_signing.conf": render("rspamd/dkim_signing.conf.j2", signing=signing_selectors(env)),
        "arc.conf": render("rspamd/arc.conf.j2"),
        "rbl.conf": render("rspamd/rbl.conf.j2", dnsbls=dnsbls),
        "rbl_group.conf": render("rspamd/rbl_group.conf.j2", dnsbls=dnsbls, r=r),
        "multimap.conf": render("rspamd/multimap.conf.j2", r=r, spamtrap_map=SPAMTRAP_MAP),
    }
    for name, text in r.local_config.items():
        out[name] = LOCAL_CONFIG_HEAD + text + ("" if text.endswith("\n") else "\n")
    return out


def signing_selectors(env) -> dict[str, list[tuple[str, str]]]:
    """{domain: [(selector, key path on the host)]} of the active DKIM keys of the environment's domains."""
    return dkim.signing_selectors(env)


def filters() -> list[SmtpdFilter]:
    return [SmtpdFilter("rspamd", f'proc-exec "{FILTER}"', inbound=True, submission=True)]


def deploy(settings, env, results) -> None:
    """Adds filter-rspamd to ``results.smtpd_filters`` and the spam-to-Junk Sieve script to
    ``results.sieve_scripts`` (+ its dovecot.conf lines); reloads rspamd when ``results.dkim_changed``."""
    packages = apt.packages(name="rspamd, Valkey, filter-rspamd", packages=PACKAGES, no_recommends=True)
    mark_pending("rspamd", ops=[packages], name="rspamd must restart after its install changed")
    helpers = [
        put_file(name=f"rspamd helper {name}", src=str(FILES_DIR / "rspamd" / name), dest=f"{HELPER_DIR}/{name}",
                  mode=mode, user="root", group="root")
        for name, mode in (("rspamd-configtest", "755"), ("rspamd-controller-hash", "755"), ("rspamd-pw.lua", "644"))
    ]
    enable_and_start("valkey-server")
    # rspamd (_rspamd) reads the map: /var/lib/mailstead must be traversable (its staging/ and pending/ stay 0700)
    ensure_directory(name=f"{STATE_DIR} traversable for rspamd", path=STATE_DIR, user="root", group="root",
                    mode="755")
    files.file(name="spamtrap sources map (kept when it exists)", path=SPAMTRAP_MAP, present=True, user="root",
               group="root", mode="644", touch=False)

    wanted = local_files(settings, env)
    confs = [
        checked_file(name=f"rspamd local.d/{name} (checked with rspamadm configtest)", dest=f"{LOCAL_D}/{name}",
                     content=content, check=f"{CHECK} {{staged}} {LOCAL_D}/{name}", mode="644", restarts="rspamd",
                     secret=False)
        for name, content in wanted.items()
    ]
    # raw configuration a former rspamd.local_config wrote and the settings no longer name
    for path in _written_local_config():
        if path.rsplit("/", 1)[1] not in wanted:
            confs.append(absent_file(name=f"rspamd: remove {path} (no longer in rspamd.local_config)", path=path,
                                     restarts="rspamd"))

    ensure_directory(name="/etc/mailstead/rspamd", path="/etc/mailstead/rspamd", user="root", group="root",
                    mode="700")
    password = controller_password(env.secrets_dir)
    pw_ops = []
    if password is not None:
        pw_ops.append(checked_file(name="rspamd controller password", dest=PASSWORD_FILE, content=password + "\n",
                                   mode="600", restarts=CONTROLLER_MARKER, secret=True))
    hashed = run_pending(name="rspamd controller: hash the password (rspamd's PBKDF) into worker-controller.inc",
                marker=CONTROLLER_MARKER, command=f"touch /var/lib/mailstead/pending/rspamd && {HASH_HELPER}",
                ops=pw_ops + helpers[1:])

    enable_and_start("rspamd")
    restart = restart_if("rspamd", *confs, packages, hashed, marker="rspamd", name="Restart rspamd after a change")
    # new DKIM keys: a reload reads them (a restart would also do)
    restart_if("rspamd", *results.dkim_changed, reload=True, marker="rspamd-dkim",
               name="Reload rspamd after a DKIM key change", _if=lambda: not restart.did_change())

    ensure_directory(name="IMAPSieve pipe programs directory", path=PIPE_DIR, user="root", group="root", mode="755")
    put_file(name="IMAPSieve pipe program rspamd-learn", src=str(FILES_DIR / "rspamd" / "rspamd-learn"),
              dest=f"{PIPE_DIR}/rspamd-learn", mode="755", user="root", group="root")
    hand_on(results)


def hand_on(results) -> None:
    """What this stage gives the stages after it: filter-rspamd for smtpd.conf, the spam-to-Junk and learning
    Sieve scripts and their dovecot.conf lines. (A test that runs OpenSMTPD's or Dovecot's stage alone calls it
    too, so that their files come out as the whole deploy writes them.)"""
    results.smtpd_filters += filters()
    for path in (SPAM_SIEVE, LEARN_SPAM_SIEVE, LEARN_HAM_SIEVE):
        results.sieve_scripts[path] = (FILES_DIR / "rspamd" / path.rsplit("/", 1)[1]).read_text()
    results.dovecot_settings += dovecot_settings()


def dovecot_settings() -> list[str]:
    """dovecot.conf lines: spam into Junk at delivery (a global before-script; the user's own script runs after
    it); IMAPSieve learning from the user's moves into Junk (spam) and out of it (ham, unless to Trash)."""
    return [
        "# spam filed into Junk at delivery (tasks/rspamd.py); the user's own script runs after it",
        "sieve_script spam {",
        "  type = before",
        f"  path = {SPAM_SIEVE}",
        "}",
        "# rspamd learns from the user's moves into and out of Junk (IMAPSieve, tasks/rspamd.py)",
        "sieve_plugins {",
        "  sieve_imapsieve = yes",
        "  sieve_extprograms = yes",
        "}",
        "sieve_global_extensions {",
        "  vnd.dovecot.pipe = yes",
        "  vnd.dovecot.environment = yes",
        "}",
        f"sieve_pipe_bin_dir = {PIPE_DIR}",
        "protocol imap {",
        "  mail_plugins {",
        "    imap_sieve = yes",
        "  }",
        "}",
        "mailbox Junk {",
        "  sieve_script learn_spam {",
        "    type = before",
        "    cause = copy",
        f"    path = {LEARN_SPAM_SIEVE}",
        "  }",
        "}",
        "imapsieve_from Junk {",
        "  sieve_script learn_ham {",
        "    type = before",
        "    cause = copy",
        f"    path = {LEARN_HAM_SIEVE}",
        "  }",
        "}",
    ]
