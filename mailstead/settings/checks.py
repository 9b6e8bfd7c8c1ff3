"""Cross-field checks of one host's settings and of one environment's (values that are fine alone but not together)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Mapping

from mailstead.settings.errors import _show
from mailstead.settings.fields import ROLES, _Bad, _ip_literal, _plain
from mailstead.settings.models import DNS_REQUIRED

if TYPE_CHECKING:  # annotations only: host.py and environment.py run these checks
    from mailstead.settings.environment import EnvironmentSettings
    from mailstead.settings.host import Settings


class _SemanticIssues(Exception):
    """Cross-field problems (raised through pydantic unchanged; not a ValueError)."""

    def __init__(self, issues: list[tuple[str, str]]):
        super().__init__("; ".join(f"{f}: {m}" for f, m in issues))
        self.issues = issues  # (field path, message)


def _ip_check(value: Any, family: int) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, (IPv4Address, IPv6Address)):
        addr = value
    elif isinstance(value, str):
        example = "198.51.100.10" if family == 4 else "2001:db8:51::10"
        try:
            addr = _ip_literal(_plain(value).strip(" "))
        except _Bad as e:
            raise ValueError(f"{_show(value)} {e}; write ipv{family} = '{example}'") from None
        if addr is None:
            raise ValueError(f"{_show(value)} is not an IP address; write ipv{family} = '{example}'")
    else:
        return value  # pydantic reports the type
    if addr.version != family:
        raise ValueError(
            f"{_show(value)} is an IPv{addr.version} address; write ipv{addr.version} = '{addr}' instead"
            f" (and ipv{family} = an IPv{family} address or None)"
        )
    return addr


def semantic_issues(s: Settings) -> list[tuple[str, str]]:
    """Cross-field problems of one host's settings: [(field path, message)]."""
    issues: list[tuple[str, str]] = []
    groups = set(s.groups)

    # roles and environment (only meaningful when built with the host's groups)
    if s.groups:
        if s.environment not in groups:
            issues.append((
                "environment",
                f"{s.environment!r} is not one of the host's inventory groups ({', '.join(s.groups)}); "
                f"add the host to the {s.environment!r} group in inventory.py or write environment = "
                + (repr(next(g for g in s.groups if g not in ROLES and g != 'all')) if any(
                    g not in ROLES and g != "all" for g in s.groups) else "'<its environment group>'"),
            ))
        if not s.roles:
            issues.append(("roles", "the host is in neither the mailservers nor the spamtraps group; "
                                    "add it to one of them in inventory.py"))
        if len(s.roles) > 1:
            issues.append(("roles", "the host is in both mailservers and spamtraps; "
                                    "put it in one of the two groups in inventory.py"))
    if s.is_spamtrap and s.spamtrap_position is None:
        issues.append(("spamtrap_position", "a spamtraps host needs a position; write spamtrap_position = 'first' "
                                            "(MX 10, rejects connections) or 'last' (MX 30, defers) in its host data"))
    if s.spamtrap_position is not None and s.roles and not s.is_spamtrap:
        issues.append(("spamtrap_position", f"{s.spamtrap_position!r} is set on a host that is not in the spamtraps "
                                            "group; remove spamtrap_position (or add the host to spamtraps)"))
    if s.roles and s.ipv4 is None and s.ipv6 is None:
        issues.append(("ipv4", "the host has no address for its A/AAAA records; write ipv4 = '198.51.100.10' "
                               "(and/or ipv6) in its host data in inventory.py"))

    return issues


def environment_semantic_issues(s: EnvironmentSettings) -> list[tuple[str, str]]:
    """Cross-field problems of one environment's settings: [(field path, message)]."""
    issues: list[tuple[str, str]] = []
    domains = set(s.domains)

    # users
    seen: dict[str, str] = {}
    for i, u in enumerate(s.users):
        where = f"users[{i}].address"
        if u.domain not in domains:
            issues.append((where, f"{u.address!r} is in domain {u.domain!r}, which is not in domains; "
                                  f"add {u.domain!r} to domains or write an address @{s.primary_domain}"))
        if u.address in seen:
            issues.append((where, f"{u.address!r} is defined twice (also {seen[u.address]}); keep one"))
        else:
            seen[u.address] = f"users[{i}]"

    # aliases
    for src, targets in s.aliases.items():
        where = f"aliases[{src!r}]"
        sdom = src.rsplit("@", 1)[1]
        if sdom not in domains:
            issues.append((where, f"source domain {sdom!r} is not in domains; add it to domains or use an address "
                                  f"@{s.primary_domain}"))
        if src in seen:
            issues.append((where, f"{src!r} is both a mailbox ({seen[src]}) and an alias; "
                                  "remove the alias or the mailbox"))
        for t in targets:
            tdom = t.rsplit("@", 1)[1]
            if tdom in domains and t not in seen and t not in s.aliases:
                issues.append((where, f"target {t!r} is a local address that is neither a mailbox nor an alias; "
                                      "add a user with that address or fix the target"))
    # alias loops (a -> b -> ... -> a), among pure aliases
    graph = {src: [t for t in targets if t in s.aliases] for src, targets in s.aliases.items()}
    reported: set[frozenset[str]] = set()
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    cyc = frozenset(path)
                    if cyc not in reported:
                        reported.add(cyc)
                        chain = " -> ".join(path + [start])
                        issues.append((f"aliases[{start!r}]", f"alias loop {chain}; make one of them deliver to a "
                                                              "mailbox or a remote address"))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))

    # admin address must be deliverable if it is local
    adom = s.admin_email.rsplit("@", 1)[1]
    if s.users and adom in domains and s.admin_email not in seen and s.admin_email not in s.aliases:
        issues.append(("admin_email", f"{s.admin_email!r} is a local address that is neither a mailbox nor an "
                                      "alias, so reports to it would bounce; add a user or an alias for it"))
    contacts = [("tls_rpt_email", s.tls_rpt_email)] + [("tls.acme_email", h.tls.acme_email) for h in s.hosts]
    for name, value in dict.fromkeys(contacts):
        if value and value != s.admin_email:
            d = value.rsplit("@", 1)[1]
            if s.users and d in domains and value not in seen and value not in s.aliases:
                issues.append((name, f"{value!r} is a local address that is neither a mailbox nor an alias; "
                                     "add a user or an alias for it"))

    # DNS provider fields
    for req, example in DNS_REQUIRED[s.dns.provider]:
        if req == "secret":
            if not s.dns.has_secret:
                issues.append(("dns.secret_file", f"provider {s.dns.provider!r} needs a credential reference; "
                                                  "write dns = {..., 'secret_file': 'dns-token'} (a file in "
                                                  f"{s.secrets_dir}/, mode 0600) or 'secret_env': "
                                                  "'MAILSTEAD_DNS_TOKEN'"))
        elif getattr(s.dns, req) is None:
            issues.append((f"dns.{req}", f"provider {s.dns.provider!r} needs {req}; write dns = "
                                         f"{{'provider': {s.dns.provider!r}, {req!r}: {example}, ...}}"))
    if s.dns.provider == "desec" and s.dns_ttl < 3600:
        issues.append(("dns_ttl", f"{s.dns_ttl} is below deSEC's minimum TTL; write dns_ttl = 3600"))
    if s.dns.secret_file and s.dns.secret_env:
        issues.append(("dns.secret_env", "give one credential reference, secret_file or secret_env, not both"))
    if s.dns.zone is not None:
        for d in s.domains:
            if d != s.dns.zone and not d.endswith("." + s.dns.zone):
                issues.append(("dns.zone", f"domain {d!r} is not inside zone {s.dns.zone!r}; remove zone "
                                           "(each domain is then its own zone) or fix it"))
    # certificates of the mail hosts against the environment's MTA-STS mode and DNS provider
    for h in s.hosts:
        if not h.is_mailserver:
            continue
        if s.mta_sts_mode == "enforce" and not h.tls.publicly_trusted and not h.tls.trusted_by_senders:
            what = ("tls.mode = 'lab' gives it a certificate from a private CA" if h.tls.mode == "lab" else
                    "its ACME CA is not a public one (Let's Encrypt staging, or a private CA in tls.acme_ca_bundle)")
            issues.append(("tls.mode", f"mta_sts_mode = 'enforce' needs a publicly trusted certificate, "
                                       f"but {what}: senders that honour MTA-STS would refuse to deliver; "
                                       "write tls = {'mode': 'acme'} (Let's Encrypt production), or mta_sts_mode = "
                                       "'testing' until the host has a trusted certificate"))
        if h.tls.mode == "acme" and h.tls.acme_challenge == "dns-01" and s.dns.provider == "none":
            issues.append(("tls.acme_challenge", "'dns-01' publishes the challenge through the DNS "
                                                 "provider, but dns = {'provider': 'none'}; configure dns (e.g. "
                                                 "{'provider': 'powerdns', ...}) or write tls = {'acme_challenge': "
                                                 "'http-01'}"))
    return list(dict.fromkeys(issues))


def ssh_lockout_issues(s: Settings, data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``ssh_allow_root_keys = False`` while the deploy logs in as root (pyinfra's ``ssh_user`` unset or 'root'
    in the host's merged data): that deploy would end with sshd refusing root, so the next one could not log in.
    (pyinfra's ``--user`` option is not seen here: the inventory is checked before it applies; set ssh_user in
    the data instead.)"""
    if s.ssh_allow_root_keys:
        return []
    user = data.get("ssh_user")
    if user not in (None, "", "root"):
        return []
    how = "ssh_user = 'root'" if user == "root" else "ssh_user is not set"
    return [("ssh_allow_root_keys", f"False while the deploy logs in as root ({how}) locks the next deploy out "
                                    "(sshd would refuse root); write ssh_allow_root_keys = True, or log in as "
                                    "another user: ssh_user = 'deploy' and _sudo = True (a user with your SSH key "
                                    "and sudo on the host)")]
