"""Base stage for every mailstead host: name, apt, packages, unattended upgrades, SSH, time, sysctl."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import apt, files, server, systemd

from tasks.common import checked_file, enable_and_start, restart_if

BASE_PACKAGES = [
    "ca-certificates",
    "chrony",
    "curl",
    "iproute2",
    "openssh-server",
    "procps",
    "python3",
    "unattended-upgrades",
]

NTS_TRUSTED_CERTS = "/etc/chrony/nts-trusted-certs.pem"

NET_SYSCTLS = {
    "net.ipv4.tcp_syncookies": "1",
    "net.ipv4.conf.all.accept_redirects": "0",
    "net.ipv4.conf.default.accept_redirects": "0",
    "net.ipv4.conf.all.send_redirects": "0",
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv6.conf.all.accept_redirects": "0",
    "net.ipv6.conf.default.accept_redirects": "0",
}


class AptMirrors(FactBase):
    """(main URI, security URI) configured on the host now, read from its deb822 and one-line sources."""

    def command(self):
        return "cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true"

    def process(self, output):
        pairs, uris = [], []
        for line in output:
            line = line.strip()
            if line.startswith("URIs:"):
                uris = line.split()[1:]
            elif line.startswith("Suites:"):
                pairs += [(u, s) for u in uris for s in line.split()[1:]]
            elif line.startswith("deb "):
                words = [w for w in line.split() if not w.startswith("[")]
                if len(words) >= 3:
                    pairs.append((words[1], words[2]))
        main = next((u for u, s in pairs if not s.endswith("-security")), None)
        security = next((u for u, s in pairs if s.endswith("-security")), None)
        return {"main": main, "security": security}


def deploy(settings) -> None:
    _hostname(settings)
    _apt(settings)
    _ssh(settings)
    _chrony(settings)
    _sysctl()


def _hostname(settings) -> None:
    short = settings.fqdn.split(".")[0]
    server.hostname(name="Set the host name", hostname=settings.fqdn)
    files.line(
        name="Map the FQDN in /etc/hosts",
        path="/etc/hosts",
        line=r"^127\.0\.1\.1\s",
        replace=f"127.0.1.1\t{settings.fqdn} {short}",
    )


def _apt(settings) -> None:
    mirrors = host.get_fact(AptMirrors)
    main = settings.apt_mirror or mirrors["main"]
    if not main:
        raise RuntimeError(
            f"{host.name}: no Debian mirror is configured on the host; set apt_mirror in group_data/all.py"
        )
    security = mirrors["security"] or main.rstrip("/") + "-security"
    sources = checked_file(
        name="Debian 13 apt sources (trixie, updates, security)",
        dest="/etc/apt/sources.list.d/debian.sources",
        src="base/debian.sources.j2",
        context={"main": main, "security": security},
    )
    apt.update(name="Update apt lists after a sources change", _if=sources.did_change)
    apt.update(name="Update apt lists when older than 6 hours", cache_time=6 * 3600)
    apt.packages(name="Base packages", packages=BASE_PACKAGES, no_recommends=True)
    checked_file(
        name="Unattended security upgrades",
        dest="/etc/apt/apt.conf.d/20auto-upgrades",
        src="base/20auto-upgrades.j2",
        context={"enabled": settings.unattended_upgrades},
        check="apt-config -c {staged} dump >/dev/null",
    )


def _ssh(settings) -> None:
    config = checked_file(
        name="Harden SSH (keys only)",
        dest="/etc/ssh/sshd_config.d/50-mailstead.conf",
        src="base/sshd.conf.j2",
        context={"root_login": "prohibit-password" if settings.ssh_allow_root_keys else "no"},
        check=(
            "t=$(mktemp) && printf 'Include %s\\nInclude /etc/ssh/sshd_config\\n' {staged} > $t"
            " && mkdir -p /run/sshd && /usr/sbin/sshd -t -f $t; rc=$?; rm -f $t; exit $rc"
        ),
    )
    enable_and_start("ssh")
    restart_if("ssh", config, reload=True)


def _chrony(settings) -> None:
    dropin_path = "/etc/systemd/system/chrony.service.d/mailstead.conf"
    if settings.chrony_set_clock:
        dropin = files.file(name="chrony sets the clock (no container drop-in)", path=dropin_path, present=False)
    else:
        files.directory(name="chrony drop-in directory", path="/etc/systemd/system/chrony.service.d")
        dropin = checked_file(
            name="chrony in a container: never set the clock",
            dest=dropin_path,
            src="base/chrony-container.conf.j2",
        )
    systemd.daemon_reload(name="Reload systemd units", _if=dropin.did_change)
    trusted = []
    if settings.ntp_trusted_certs:
        trusted.append(files.put(
            name="CA certificates trusted for NTS",
            src=settings.ntp_trusted_certs,
            dest=NTS_TRUSTED_CERTS,
            mode="644",
        ))
    config = checked_file(
        name="chrony with NTS time servers",
        dest="/etc/chrony/chrony.conf",
        src="base/chrony.conf.j2",
        context={
            "servers": settings.ntp_servers,
            "trusted_certs": NTS_TRUSTED_CERTS if settings.ntp_trusted_certs else None,
        },
        check="chronyd -p -f {staged} >/dev/null",
    )
    enable_and_start("chrony")
    restart_if("chrony", config, dropin, *trusted)


def _sysctl() -> None:
    for key, value in NET_SYSCTLS.items():
        server.sysctl(
            name=f"sysctl {key}",
            key=key,
            value=value,
            persist=True,
            persist_file="/etc/sysctl.d/60-mailstead.conf",
        )
