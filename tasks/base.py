"""Base stage for every mailstead host: name, apt, packages, unattended upgrades, SSH, time, sysctl."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from pyinfra import host, state
from pyinfra.api import FactBase
from pyinfra.facts.server import Sysctl
from pyinfra.operations import apt, files, server

from tasks.common import (DAEMON_RELOAD, STAGING_DIR, absent_file, checked_file, enable_and_start, ensure_directory,
                          render, restart_if, run_pending)
from tasks.factcache import plan

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

SSH_DIR = "/etc/ssh"
# sshd keeps the FIRST value it reads for most keywords and reads sshd_config.d/*.conf in lexical order, so
# our drop-in must sort before any other (a cloud image's 50-cloud-init.conf says PasswordAuthentication yes)
SSHD_DROPIN_NAME = "00-mailstead.conf"
SSHD_DROPIN = f"{SSH_DIR}/sshd_config.d/{SSHD_DROPIN_NAME}"
OLD_SSHD_DROPINS = [f"{SSH_DIR}/sshd_config.d/50-mailstead.conf"]

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


def deploy(settings, env, results) -> None:
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
        secret=False,
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
        secret=False,
    )


def sshd_expectations(content: str) -> list[tuple[str, str]]:
    """(keyword, ERE of the accepted `sshd -T` values) for every setting of our drop-in, lower-cased as
    `sshd -T` prints them (it names PermitRootLogin prohibit-password 'without-password')."""
    wanted = []
    for line in content.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) != 2:
            raise ValueError(f"sshd drop-in line {line!r}: expected 'Keyword value'")
        key, value = words[0].lower(), re.sub(r"([.\[\]()*+?{}|^$\\])", r"\\\1", words[1].lower())
        if key == "permitrootlogin" and value in ("prohibit-password", "without-password"):
            value = "prohibit-password|without-password"
        wanted.append((key, value))
    return wanted


_SSHD_CHECK = r"""d=$(mktemp -d @WORK@/sshd-check.XXXXXX) || exit 1
for f in @SSHDIR@/sshd_config.d/*.conf; do
  case "${f##*/}" in @OURS@) continue ;; esac
  if [ -e "$f" ]; then cp -p "$f" "$d/" || { rm -rf "$d"; exit 1; }; fi
done
cp {staged} "$d/@NAME@" && sed 's#@SSHDIR@/sshd_config\.d/#'"$d"'/#g' @SSHDIR@/sshd_config > "$d/sshd_config" \
  || { rm -rf "$d"; exit 1; }
mkdir -p @RUNDIR@
out=$(@SSHD@ -T -f "$d/sshd_config" 2>&1); rc=$?
rm -rf "$d"
if [ $rc -ne 0 ]; then printf '%s\n' "$out" >&2; exit $rc; fi
bad=0
want() {
  if ! printf '%s\n' "$out" | grep -Eqx "$1 ($2)"; then
    got=$(printf '%s\n' "$out" | grep -E "^$1 " | head -n 1)
    from=$(grep -ilE "^[[:space:]]*$1[[:space:]]" @SSHDIR@/sshd_config @SSHDIR@/sshd_config.d/*.conf 2>/dev/null \
      | grep -v mailstead | tr '\n' ' ')
    echo "mailstead: sshd's effective configuration would say '${got:-nothing for $1}', not '$1 $2':" \
      "a file sshd reads before @NAME@ sets it (sshd keeps the first value it reads): ${from:-?}" >&2
    bad=1
  fi
}
@WANT@exit $bad"""


def sshd_check_command(content: str, sshd: str = "/usr/sbin/sshd", ssh_dir: str = SSH_DIR,
                       work_dir: str = STAGING_DIR, run_dir: str = "/run/sshd") -> str:
    """checked_file check for our sshd drop-in: ``sshd -T`` on a copy of the host's sshd configuration in
    which the staged file takes our drop-in's place (old mailstead drop-ins left out, every other drop-in
    kept, same order), and every setting of ``content`` must come out as the effective value. Fails with a
    message naming the key, the value that would win and the files that set it otherwise."""
    ours = "|".join(shlex.quote(n) for n in [SSHD_DROPIN_NAME, *(Path(p).name for p in OLD_SSHD_DROPINS)])
    wants = "".join(f"want {shlex.quote(k)} {shlex.quote(v)}\n" for k, v in sshd_expectations(content))
    return (_SSHD_CHECK.replace("@WORK@", shlex.quote(work_dir)).replace("@SSHDIR@", ssh_dir)
            .replace("@SSHD@", shlex.quote(sshd)).replace("@NAME@", SSHD_DROPIN_NAME).replace("@OURS@", ours)
            .replace("@RUNDIR@", shlex.quote(run_dir)).replace("@WANT@", wants))


def _ssh(settings) -> None:
    content = render("base/sshd.conf.j2",
                     root_login="prohibit-password" if settings.ssh_allow_root_keys else "no")
    config = checked_file(
        name="Harden SSH (keys only)",
        dest=SSHD_DROPIN,
        content=content,
        check=sshd_check_command(content),
        restarts="ssh",
        secret=False,
    )
    old = [absent_file(name=f"Remove the old {p} (cloud-init's 50-cloud-init.conf sorted first)", path=p,
                       restarts="ssh") for p in OLD_SSHD_DROPINS]
    enable_and_start("ssh")
    restart_if("ssh", config, *old, reload=True)


def _chrony(settings) -> None:
    dropin_path = "/etc/systemd/system/chrony.service.d/mailstead.conf"
    if settings.chrony_set_clock:
        dropin = absent_file(name="chrony sets the clock (no container drop-in)", path=dropin_path,
                             restarts=[DAEMON_RELOAD, "chrony"])
    else:
        ensure_directory(name="chrony drop-in directory", path="/etc/systemd/system/chrony.service.d")
        dropin = checked_file(
            name="chrony in a container: never set the clock",
            dest=dropin_path,
            src="base/chrony-container.conf.j2",
            restarts=[DAEMON_RELOAD, "chrony"],
            secret=False,
        )
    run_pending(name="Reload systemd units", marker=DAEMON_RELOAD, command="systemctl daemon-reload",
                ops=(dropin,))
    trusted = []
    if settings.ntp_trusted_certs:
        # as files.put did: a relative path is relative to the directory pyinfra runs in
        ca_file = Path(state.cwd or ".") / settings.ntp_trusted_certs
        trusted.append(checked_file(
            name="CA certificates trusted for NTS",
            dest=NTS_TRUSTED_CERTS,
            content=ca_file.read_bytes(),
            mode="644",
            restarts="chrony",
            secret=False,  # CA certificates: public
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
        restarts="chrony",
        secret=False,
    )
    enable_and_start("chrony")
    restart_if("chrony", config, dropin, *trusted)


def _sysctl() -> None:
    for key, value in NET_SYSCTLS.items():
        plan(host, Sysctl, keys=[key])  # read with the other planned facts (tasks/factcache.py)
        server.sysctl(
            name=f"sysctl {key}",
            key=key,
            value=value,
            persist=True,
            persist_file="/etc/sysctl.d/60-mailstead.conf",
        )
