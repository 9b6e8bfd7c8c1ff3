"""Host packages, mirror discovery and the shared apt cache.

The apt cache is one apt-cacher-ng on 127.0.0.1 shared by all labs on this machine
(state under CACHE_DIR/acng/). Each lab registers itself in CACHE_DIR/acng/users/<id>;
`down` unregisters and stops the cache only when no other lab with live hosts uses it.
The port is 3142 unless something else holds it (then the first free port up to 3199),
or $MAILSTEAD_APT_CACHE_PORT. Hosts never see that port: they talk to 198.51.100.1:3142
inside their lab's namespace, bridged by socat over a unix socket (see network.py).
"""
from __future__ import annotations

import fcntl
import glob
import os
import pwd
import shutil
import socket
import time
from pathlib import Path

import topology  # tests/lab/topology.py, put on sys.path by lablib/__init__.py
from .util import (CACHE_DIR, LabError, find_procs, flock, log, read_json, run, spawn,
                   stop_pids, write_file, write_json)

HOST_PACKAGES = ("debootstrap", "systemd-container", "apt-cacher-ng", "socat", "dnsmasq-base",
                 "openssh-client", "curl", "swaks", "openssl", "nftables",
                 # swaks speaks TLS only with these (Recommends, which --no-install-recommends skips)
                 "libnet-ssleay-perl", "libio-socket-ssl-perl")

ACNG_DIR = CACHE_DIR / "acng"
ACNG_CONF = ACNG_DIR / "conf"
ACNG_LOCK = ACNG_DIR / "lock"


def ensure_host_packages() -> bool:
    """Install the host packages the lab needs; return True when something was installed."""
    p = run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *HOST_PACKAGES], check=False)
    installed = {line.split()[0] for line in p.stdout.splitlines() if line.endswith(" installed")}
    missing = [pkg for pkg in HOST_PACKAGES if pkg not in installed]
    if not missing:
        return False
    log(f"installing host packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    run(["apt-get", *lock, "update", "-q"], env=env)
    run(["apt-get", *lock, "install", "-y", "-q", "--no-install-recommends", *missing], env=env)
    return True


def _sources_stanzas():
    """(types, uris, suites) from this machine's apt configuration (deb822 and one-line)."""
    out = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for block in Path(path).read_text().split("\n\n"):
            fields = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.split()
            if fields.get("enabled", ["yes"])[0].lower() == "no":
                continue
            if "uris" in fields and "suites" in fields:
                out.append((fields.get("types", ["deb"]), fields["uris"], fields["suites"]))
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            lines = Path(path).read_text().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            parts = line.split("#", 1)[0].split()
            if len(parts) >= 3 and parts[0] in ("deb", "deb-src"):
                if parts[1].startswith("["):
                    while parts and not parts[1].endswith("]"):
                        parts.pop(1)
                    parts.pop(1)
                out.append(([parts[0]], [parts[1]], [parts[2]]))
    return out


def mirrors() -> dict:
    """{'main': URI, 'security': URI} read from this machine's apt sources."""
    main = security = None
    for types, uris, suites in _sources_stanzas():
        if "deb" not in types or not uris[0].startswith("http"):
            continue
        if any(s.endswith("-security") or "/updates" in s for s in suites):
            security = security or uris[0]
        else:
            main = main or uris[0]
    if not main:
        raise LabError("no http Debian mirror found in /etc/apt/sources.list{,.d/*.sources}")
    main = main.rstrip("/") + "/"
    if not security:
        security = main.rstrip("/") + "-security/"
    return {"main": main, "security": security.rstrip("/") + "/"}


def _port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _acng_pids() -> list[int]:
    conf = str(ACNG_CONF)
    return find_procs(lambda a: a[0].endswith("apt-cacher-ng") and conf in a)


def lab_lock_path(lab_id: str) -> Path:
    """The lock `up`/`down` of one lab id hold (machine-wide: lab ids name machine-wide things)."""
    return CACHE_DIR / "locks" / f"{lab_id}.lock"


def _lab_in_use(lab_id: str) -> bool:
    """A lab uses the cache while it has running hosts or an up/down is in progress."""
    machines = {f"--machine={lab_id}-{h.short}" for h in topology.HOSTS}
    if find_procs(lambda a: a[0].endswith("systemd-nspawn") and bool(machines & set(a))):
        return True
    path = lab_lock_path(lab_id)
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ensure_apt_cache(lab_id: str) -> tuple[int, bool]:
    """Start (or reuse) the shared apt cache, register lab_id as a user; return (port, started)."""
    with flock(ACNG_LOCK):
        (ACNG_DIR / "users").mkdir(parents=True, exist_ok=True)
        (ACNG_DIR / "users" / lab_id).touch()
        state = read_json(ACNG_DIR / "state.json", {})
        pids = _acng_pids()
        if pids and state.get("port") and _listening(state["port"]):
            return state["port"], False
        stop_pids(pids)
        want = os.environ.get("MAILSTEAD_APT_CACHE_PORT")
        if want:
            port = int(want)
        else:
            port = next((p for p in range(3142, 3200) if _port_free(p)), None)
            if port is None:
                raise LabError("no free port in 3142..3199 for the apt cache")
        m = mirrors()
        user = pwd.getpwnam("apt-cacher-ng")
        if ACNG_CONF.exists():
            shutil.rmtree(ACNG_CONF)
        shutil.copytree("/etc/apt-cacher-ng", ACNG_CONF)
        for src in Path("/etc/apt-cacher-ng").iterdir():   # e.g. security.conf is 0600 apt-cacher-ng
            st = src.stat()
            os.chown(ACNG_CONF / src.name, st.st_uid, st.st_gid)
        # Debian's postinst only reads one-line sources.list: give it the mirror read from this machine.
        write_file(ACNG_CONF / "backends_debian", m["main"] + "\n")
        write_file(ACNG_CONF / "zz_mailstead_lab.conf",
                   f"CacheDir: {ACNG_DIR / 'cache'}\nLogDir: {ACNG_DIR / 'log'}\n"
                   f"BindAddress: 127.0.0.1\nPort: {port}\nConnectProto: v4\n"
                   "PidFile: \nSocketPath: \n")
        for d in ("cache", "log"):
            (ACNG_DIR / d).mkdir(parents=True, exist_ok=True)
            os.chown(ACNG_DIR / d, user.pw_uid, user.pw_gid)
        for d in (CACHE_DIR, ACNG_DIR):
            os.chmod(d, 0o755)
        pid = spawn(["setpriv", "--reuid=apt-cacher-ng", "--regid=apt-cacher-ng", "--init-groups",
                     "/usr/sbin/apt-cacher-ng", "-c", ACNG_CONF, "ForeGround=1"],
                    ACNG_DIR / "daemon.log")
        deadline = time.monotonic() + 15
        while not _listening(port):
            if time.monotonic() > deadline:
                raise LabError(f"apt-cacher-ng did not listen on 127.0.0.1:{port}; see {ACNG_DIR}/daemon.log")
            time.sleep(0.1)
        write_json(ACNG_DIR / "state.json", {"pid": pid, "port": port, "mirrors": m})
        log(f"apt cache: apt-cacher-ng pid {pid} on 127.0.0.1:{port}")
        return port, True


def release_apt_cache(lab_id: str) -> None:
    """Unregister lab_id; stop the cache when no other lab with running hosts uses it."""
    with flock(ACNG_LOCK):
        users = ACNG_DIR / "users"
        (users / lab_id).unlink(missing_ok=True)
        others = [u.name for u in users.glob("*")] if users.exists() else []
        if any(_lab_in_use(u) for u in others):
            return
        for u in others:
            (users / u).unlink(missing_ok=True)
        pids = _acng_pids()
        if pids:
            stop_pids(pids)
            log(f"apt cache stopped (pid {' '.join(map(str, pids))})")


def apt_cache_port() -> int | None:
    state = read_json(ACNG_DIR / "state.json", {})
    if _acng_pids() and state.get("port"):
        return state["port"]
    return None
