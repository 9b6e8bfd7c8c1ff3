"""The cached Debian 13 base root filesystem shared by every lab host (the overlay's lowerdir).

Built with debootstrap through the apt cache, prepared (prepare() below), then kept as a zstd
tarball CACHE_DIR/base-<key>.tar.zst, where <key> hashes the package list, the mirror URIs, the
masked units and prepare()'s source (see cache_key). The tarball is extracted once to
CACHE_DIR/base-<key>/ and used read-only by all labs. Nothing lab-specific (SSH keys, host keys,
machine ids) is in the base. A build removes other keys' bases that no overlay uses any more.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path

from .util import CACHE_DIR, LabError, flock, log, run, write_file

SUITE = "trixie"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
            "ca-certificates", "apt-utils")

# Units that only make sense on real machines; masked so hosts reach `running`, not `degraded`.
MASKED_UNITS = ("getty@tty1.service", "apt-daily.timer", "apt-daily-upgrade.timer", "fstrim.timer",
                "dpkg-db-backup.timer", "systemd-pstore.service", "e2scrub_all.timer",
                "e2scrub_reap.service")

APT_PROXY = "http://198.51.100.1:3142"   # the lab gateway's apt bridge, same in every lab


def cache_key(mirrors: dict) -> str:
    """Hash of what goes into the base: packages, mirrors, masked units, proxy and prepare()'s code."""
    h = hashlib.sha256()
    h.update(json.dumps({"suite": SUITE, "packages": PACKAGES, "mirrors": mirrors, "masked": MASKED_UNITS,
                         "proxy": APT_PROXY}, sort_keys=True).encode())
    h.update(inspect.getsource(prepare).encode())
    return h.hexdigest()[:16]


def prepare(root: Path, mirrors: dict) -> None:
    """Turn a fresh debootstrap into the lab base (recipe: lab.md §3)."""
    for key in root.glob("etc/ssh/ssh_host_*"):
        key.unlink()
    (root / "etc/hostname").unlink(missing_ok=True)
    write_file(root / "etc/machine-id", "", 0o444)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    write_file(resolv, "nameserver 198.51.100.1\n")
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    signed = f"Signed-By: {keyring}\n" if (root / keyring.lstrip("/")).exists() else ""
    write_file(root / "etc/apt/sources.list.d/debian.sources",
               f"Types: deb\nURIs: {mirrors['main']}\nSuites: {SUITE} {SUITE}-updates\n"
               f"Components: main\n{signed}\n"
               f"Types: deb\nURIs: {mirrors['security']}\nSuites: {SUITE}-security\n"
               f"Components: main\n{signed}")
    write_file(root / "etc/apt/apt.conf.d/01mailstead-lab",
               f'Acquire::http::Proxy "{APT_PROXY}";\n'
               'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to("/dev/null")
    # Smaller tarball, and no lists from build time: hosts run `apt-get update` before installing.
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (root / d).glob("*"):
            if f.is_file():
                f.unlink()
    (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)


def ensure_base(mirrors: dict, apt_port: int) -> Path:
    """Return the extracted base root for these mirrors, building/extracting it when needed."""
    key = cache_key(mirrors)
    tarball = CACHE_DIR / f"base-{key}.tar.zst"
    root = CACHE_DIR / f"base-{key}"
    with flock(CACHE_DIR / "base.lock"):
        if (root / ".complete").exists():
            return root
        if not tarball.exists():
            _build(tarball, mirrors, apt_port)
            _prune(key)
        t0 = time.monotonic()
        tmp = CACHE_DIR / f".extract-{key}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        run(["tar", "-I", "zstd -T0", "--numeric-owner", "--xattrs", "--xattrs-include=*",
             "-xpf", tarball, "-C", tmp])
        (tmp / ".complete").touch()
        shutil.rmtree(root, ignore_errors=True)
        os.rename(tmp, root)
        log(f"base image: extracted {tarball.name} in {time.monotonic() - t0:.1f}s")
        return root


def _build(tarball: Path, mirrors: dict, apt_port: int) -> None:
    t0 = time.monotonic()
    for old in CACHE_DIR.glob(".build-*"):   # left by failed builds (builds are serialised by base.lock)
        shutil.rmtree(old, ignore_errors=True)
    work = CACHE_DIR / f".build-{os.getpid()}"
    work.mkdir(parents=True)
    log(f"base image: debootstrap {SUITE} (this takes about a minute)")
    env = dict(os.environ, http_proxy=f"http://127.0.0.1:{apt_port}")
    env.pop("https_proxy", None)
    try:
        run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, work,
             mirrors["main"]], env=env)
        prepare(work, mirrors)
        tmp = tarball.with_name(tarball.name + f".tmp{os.getpid()}")
        run(["tar", "-I", "zstd -T0 -3", "--numeric-owner", "--xattrs", "--xattrs-include=*",
             "-cpf", tmp, "-C", work, "."])
        os.replace(tmp, tarball)
    except LabError:
        log(f"base image build failed; debootstrap log: {work}/debootstrap/debootstrap.log")
        raise
    shutil.rmtree(work, ignore_errors=True)
    log(f"base image: built {tarball.name} ({tarball.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.1f}s")


def lowerdirs_in_use() -> set[str]:
    """Every overlay lower layer mounted in this mount namespace."""
    used = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            for opt in line.rstrip("\n").split(" - ", 1)[-1].split(" ")[-1].split(","):
                if opt.startswith("lowerdir="):
                    used.update(opt[len("lowerdir="):].split(":"))
    return used


def _prune(keep_key: str) -> None:
    """Remove other keys' bases and infra layers that no overlay uses any more (called after a build)."""
    in_use = lowerdirs_in_use()
    for p in [*CACHE_DIR.glob("base-*"), *CACHE_DIR.glob("infra-*")]:
        if keep_key in p.name:
            continue
        if p.is_dir():
            if str(p) not in in_use:
                shutil.rmtree(p, ignore_errors=True)
                log(f"base image: removed unused {p.name}")
        elif not (CACHE_DIR / p.name.split(".")[0]).exists():
            p.unlink(missing_ok=True)
