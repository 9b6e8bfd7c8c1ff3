"""Turning pydantic's validation errors into one-line issues that name the field, the value and the fix."""

from __future__ import annotations

import difflib
import re
from typing import Any, Mapping

from pydantic import BaseModel

from mailstead.settings.environment import EnvironmentSettings
from mailstead.settings.errors import Issue, _py, _show
from mailstead.settings.fields import (
    _DERIVED_KEYS,
    _ENV_RE,
    _PLAINTEXT_KEYS,
    ENVIRONMENT_WIDE_FIELDS,
    HASH_FIX,
    ROLES,
    SECRETISH,
)
from mailstead.settings.host import Settings
from mailstead.settings.models import DnsProvider, OpenSmtpd, Tls, User
from mailstead.settings.rspamd import Rspamd


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out and isinstance(part, str) and not part.isidentifier():
            out += f"[{part!r}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple, root: type[BaseModel] = Settings) -> type[BaseModel] | None:
    """The model class that owns the last key of loc."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if model is None or not hasattr(model, "model_fields") or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = {"users": User, "dns": DnsProvider, "tls": Tls, "opensmtpd": OpenSmtpd,
                 "rspamd": Rspamd}.get(part)
        if model is None and isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
    return model


_TYPE_WORDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "True or False",
    "bool_parsing": "True or False",
    "string_type": "a string in quotes",
    "list_type": "a list [...]",
    "dict_type": "a dict {...}",
    "tuple_type": "a list [...]",
    "model_type": "a dict {...}",
    "model_attributes_type": "a dict {...}",
    "literal_error": None,
    "missing": None,
    "too_short": None,
}


def _example(model: Any, key: str) -> str:
    if model is not None and key in getattr(model, "model_fields", {}):
        f = model.model_fields[key]
        if not f.is_required():
            default = f.get_default(call_default_factory=True)
            if default not in (None, [], {}, ()) and not isinstance(default, BaseModel):
                return _py(default)
    examples = {
        "environment": "'production'",
        "domains": "['example.org']",
        "admin_email": "'postmaster@example.org'",
        "address": "'alice@example.org'",
        "password_hash": '"<output of python -m mailstead hash-password>"',
        "ipv4": "'198.51.100.10'",
        "ipv6": "'2001:db8:51::10'",
        "quota": "'2G'",
        "spamtrap_position": "'first'",
        "users": "[{'address': 'alice@example.org', 'password_hash': '{BLF-CRYPT}$2b$12$...'}]",
        "aliases": "{'info@example.org': ['alice@example.org']}",
        "dns": "{'provider': 'powerdns', 'api_url': 'https://ns1.example.org:8081', 'secret_file': 'dns-token'}",
        "dmarc": "{'p': 'reject'}",
        "tls": "{'mode': 'acme'}",
        "opensmtpd": "{'source': 'debian-archive'}",
        "configure_options": "['--with-auth-pam=smtpd']",
        "apt_mirror": "'<mirror URI>' (e.g. 'http://mirror.example.org/debian'; or None)",
        "fqdn": "'mx1.example.org'",
        "tls_rpt_email": "'tlsrpt@example.org'",
        "acme_email": "'hostmaster@example.org'",
        "acme_profile": "'tlsserver'",
        "acme_ca_bundle": "'/etc/ssl/certs/ca-certificates.crt'",
        "lab_ca_dir": "'secrets/lab-ca'",
        "ntp_trusted_certs": "'/etc/ssl/certs/ca-certificates.crt'",
        "resolver_forwarders": "['198.51.100.1']",
        "resolver_insecure_domains": "['test']",
        "api_url": "'https://ns1.example.org:8081'",
        "server": "'ns1.example.org'",
        "tsig_key_name": "'mailstead'",
        "zone": "'example.org'",
        "secret_file": "'dns-token'",
        "secret_env": "'MAILSTEAD_DNS_TOKEN'",
        "upstream_url": "'https://www.opensmtpd.org/archives/opensmtpd-7.9.0p0.tar.gz'",
        "sha256": "'<64 hex digits from sha256sum>'",
    }
    return examples.get(key, "'...'")


def _value_fix(loc: tuple, model: Any, key: str, example: str) -> str:
    """The fix of a value its type refused: 'write key = <example>' (the field's own example, else the type's)."""
    if len(loc) >= 2 and isinstance(loc[-1], int):  # an entry of a list
        parent = str(loc[-2])
        return f"write each entry of {parent} as {_ELEMENT_EXAMPLES.get(parent, example)}"
    if key == "fqdn" and len(loc) == 1:
        return ("name the host 'mx1.example.org' in inventory.py (connect to an address with ssh_hostname) or "
                "write fqdn = 'mx1.example.org'")
    field_example = _example(model, key)
    return f"write {key} = {example if field_example == repr('...') else field_example}"


_ELEMENT_EXAMPLES = {
    "users": "{'address': 'alice@example.org', 'password_hash': \"<output of python -m mailstead hash-password>\"}",
    "domains": "'example.org'",
    "ntp_servers": "'time.cloudflare.com'",
    "resolver_forwarders": "'198.51.100.1'",
    "resolver_insecure_domains": "'test'",
    "configure_options": "'--with-auth-pam=smtpd'",
    "groups": "a group name",
}


def _issue_from_error(
    err: Mapping[str, Any], data: Mapping[str, Any], src: Any, hosts: list[str], root: type[BaseModel] = Settings,
) -> Issue:
    """One pydantic error of ``root`` (a host's Settings or an EnvironmentSettings) as an Issue; ``src(key)`` names
    the file of a top-level key, ``hosts`` are the hosts it concerns."""
    loc = tuple(err.get("loc", ()))
    etype = err.get("type", "")
    msg = err.get("msg", "")
    value = err.get("input")
    top = str(loc[0]) if loc else ""
    label = src(top) if top else "inventory.py"
    if top in ("groups", "roles"):
        label = "inventory.py"
    path = _field_path(loc)
    key = str(loc[-1]) if loc else ""
    model = _model_at(loc, root) if loc else root
    sub = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))

    if etype in ("value_error", "mailstead_value"):
        if etype == "value_error":
            text = re.sub(r"^Value error, ", "", msg)
        else:  # a value its type refused ("<value> <problem>"): add the field's fix
            ctx = err.get("ctx") or {}
            text = f"{ctx.get('text', msg)}; {_value_fix(loc, model, key, ctx.get('example', repr('...')))}"
        if top in ("ipv4", "ipv6", "fqdn") and "host data" not in label:
            text += " (per-host values belong in the host data in inventory.py)"
        return Issue(label, path, text, hosts)

    if etype == "extra_forbidden":
        return Issue(label, path, _unknown_key_message(model, key, loc, value), hosts)

    if etype == "missing":
        env = data.get("environment")
        env_groups = [g for g in data.get("groups", ()) if g not in ROLES and g not in ("all", "inventory")]
        if not isinstance(env, str) or not _ENV_RE.fullmatch(env):
            env = env_groups[0] if len(env_groups) == 1 else None
        env_file = f"group_data/{env}.py" if env else "group_data/<environment>.py"
        if key == "environment" and not loc[:-1]:
            if env:
                text = (f"is missing; write environment = {env!r} in {env_file} (the environment group of the "
                        "host in inventory.py)")
            else:
                text = ("is missing; write environment = '<name>' in group_data/<name>.py (e.g. production) and "
                        "put the host in that group in inventory.py")
            return Issue(env_file, "environment", text, hosts)
        if key == "domains":
            text = f"is missing; write domains = ['example.org'] in {env_file}"
        elif key == "admin_email":
            text = "is missing; write admin_email = 'postmaster@example.org' (a mailbox or an alias)"
        else:
            text = f"is missing; write {key} = {_example(model, key)}"
        owner = sub.split(".")[0] if sub else ""
        return Issue(src(owner) if owner else env_file, path, text, hosts)

    if etype == "too_short" and key == "domains":
        return Issue(label, path, "is empty; list at least one mail domain: domains = ['example.org']", hosts)

    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = re.findall(r"'([^']*)'", expected)
        hint = ""
        if isinstance(value, str) and choices:
            close = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
            if close:
                hint = f"did you mean {close[0]!r}? "
        if key == "provider":
            text = f"{_show(value)} is not a known DNS provider; {hint}write provider = one of {expected}"
        else:
            first = repr(choices[0]) if choices else "..."
            text = f"{_show(value)} is not allowed; {hint}write {key} = {first} (one of {expected})"
        return Issue(label, path, text, hosts)

    word = _TYPE_WORDS.get(etype)
    if word is None and etype.endswith("_type"):
        word = etype[:-5].replace("_", " ")
    if word:
        shown = "(value not shown)" if key in ("password_hash",) or SECRETISH.search(key) else _show(value)
        parent = str(loc[-2]) if len(loc) >= 2 else ""
        if isinstance(loc[-1], int):  # an element of a list
            fix = f"write each entry of {parent} as {_ELEMENT_EXAMPLES.get(parent, _example(None, parent))}"
        elif parent in ("aliases", "dmarc") and len(loc) == 2:  # a value in a dict
            example = "['alice@example.org']" if parent == "aliases" else "'...'"
            fix = f"write {parent} = {{{key!r}: {example}}}"
        else:
            fix = f"write {key} = {_example(model, key)}"
        return Issue(label, path, f"{shown} is not {word}; {fix}", hosts)
    return Issue(label, path, f"{_show(value)}: {msg}; write {key} = {_example(model, key)}", hosts)


def _unknown_key_message(model: Any, key: str, loc: tuple, value: Any) -> str:
    names = list(getattr(model, "model_fields", {}).keys()) if model is not None else []
    names = [n for n in names if n not in _DERIVED_KEYS]
    if model is Settings:  # a host's group_data may also hold the environment's keys
        names += ENVIRONMENT_WIDE_FIELDS
    if model is User and key in _PLAINTEXT_KEYS:
        return "a plaintext password is not allowed; " + HASH_FIX
    if model is User and key == "aliases":
        return ("users have no aliases key; write the top-level aliases = {'info@example.org': "
                "['alice@example.org']} instead")
    if model is DnsProvider and SECRETISH.search(key):
        return ("a secret written inline is not allowed (value not shown); put it in a file in secrets_dir "
                "(mode 0600) and write 'secret_file': 'dns-token', or export it and write 'secret_env': "
                "'MAILSTEAD_DNS_TOKEN'")
    if model in (Tls, OpenSmtpd, Rspamd) and SECRETISH.search(key):
        return ("secrets never belong in group_data (value not shown); keep them in files under secrets_dir "
                "(mode 0600) and remove this key")
    if model is Settings and SECRETISH.search(key):
        return ("unknown key, and secrets never belong in group_data (value not shown); keep secrets in files "
                "under secrets_dir and refer to them (e.g. dns = {..., 'secret_file': 'dns-token'})")
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if model is Settings and key in ("domain", "mail_domain", "mail_domains"):
        close = ["domains"]
    if close:
        known = dict(getattr(model, "model_fields", {}))
        if model is Settings:
            known.update(EnvironmentSettings.model_fields)
        target = known.get(close[0])
        shown = _show(value)
        if target is not None and isinstance(value, str) and "list" in str(target.annotation):
            shown = _show([value])
        return f"unknown key; did you mean {close[0]!r}? write {close[0]} = {shown}"
    return f"unknown key {key!r}; remove it (known keys: {', '.join(names)})"
