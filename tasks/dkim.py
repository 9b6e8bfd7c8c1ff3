"""DKIM stage (mail hosts): install the domain keys made on the deploy machine.

Keys come from ``mailstead.dkim`` (``<secrets_dir>/dkim/<domain>/``; created on the first deploy, reused by
every later deploy and by a rebuilt host; a ``--dry`` run makes none and says which it would make). On the
host:

  /etc/mailstead/dkim/                       root:<group> 0750
  /etc/mailstead/dkim/<domain>.<selector>.key  root:<group> 0640   (active and published-only keys)

<group> is ``_rspamd``, the signer's group on Debian: this stage makes it (a system group) when rspamd is not
installed yet, and Debian's rspamd package then puts its ``_rspamd`` user into it. It runs before the rspamd
stage, which signs with the active keys (``signing_selectors``) and reloads on ``results.dkim_changed``. Retired keys are removed from the host. File contents
are never printed (``checked_file(..., secret=True)``: ``--diff`` says "content hidden").

``signing_selectors(env)`` gives the rspamd task what to sign with: {domain: [(selector, path)]} for the
active keys only (published-only keys are in DNS and on disk but do not sign yet).
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

from mailstead import dkim, secrets
from tasks.common import checked_file, dry_run, ensure_directory, would_create

KEY_DIR = "/etc/mailstead/dkim"


def key_path(domain: str, selector: str) -> str:
    return f"{KEY_DIR}/{domain}.{selector}.key"


GROUP = "_rspamd"


def signing_selectors(env) -> dict[str, list[tuple[str, str]]]:
    """{domain: [(selector, key path on the host)]} of the active keys of the environment's domains."""
    return {
        d: [(k.selector, key_path(d, k.selector)) for k in dkim.active_keys(env.secrets_dir, d)]
        for d in env.domains
    }


def deploy(settings, env, results) -> None:
    """Installs the active DKIM keys; ``results.dkim_changed``: the operations that installed them (any of
    them changed = the signer reloads)."""
    group = GROUP
    ops = [
        server.group(name=f"DKIM: the signer's group {GROUP}", group=GROUP, system=True),
        ensure_directory(name="DKIM: /etc/mailstead", path="/etc/mailstead", user="root", group="root", mode="755"),
        ensure_directory(name=f"DKIM: {KEY_DIR} (0750, group {group})", path=KEY_DIR, user="root", group=group,
                        mode="750"),
    ]
    dry = dry_run()
    known = set()
    for domain in env.domains:
        if dry:  # make nothing on the deploy machine: say what the real run makes, install what exists
            for p in dkim.planned_keys(env.secrets_dir, domain):
                would_create(f"the DKIM {p.algorithm} key {p.selector} of {domain} in "
                             f"{secrets.dkim_dir(env.secrets_dir, domain)}")
            keys = dkim.keys(env.secrets_dir, domain)
        else:
            keys = dkim.ensure_keys(env.secrets_dir, domain, env.dkim_rsa_bits)
        for k in keys:
            dest = key_path(domain, k.selector)
            known.add(dest)
            if k.published:
                ops.append(checked_file(
                    name=f"DKIM: {k.algorithm} key {k.selector} for {domain} ({k.state})",
                    dest=dest, content=k.path.read_bytes(), mode="640", user="root", group=group,
                    secret=True,
                ))
            else:
                ops.append(files.file(name=f"DKIM: remove retired key {k.selector} of {domain}", path=dest,
                                      present=False))
    if not dry:  # key files the secrets no longer know (a domain gone, keys made anew elsewhere): not ours
        for path in _installed_keys():
            if path not in known:
                ops.append(files.file(name=f"DKIM: remove {path} (not in secrets_dir)", path=path, present=False))
    results.dkim_changed = ops


def _installed_keys() -> list[str]:
    out = host.get_fact(Command, command=f"ls -1 {KEY_DIR} 2>/dev/null || true") or ""
    return [f"{KEY_DIR}/{n.strip()}" for n in out.splitlines() if n.strip().endswith(".key")]
