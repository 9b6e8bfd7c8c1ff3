"""A cached overlay layer for the infra host: the base plus the lab's own infrastructure packages.

The infra host runs the lab's "outside world" services (PowerDNS, the NTS server). Installing their
packages at every `up` costs ~15-20 s of dpkg and service starts, so they are installed once per base
into a layer directory CACHE_DIR/infra-<key>/ stacked above the base (lowerdir=<layer>:<base>) for infra
only. The mail hosts never see it: the product's packages are installed by the deploy.
pdns is left disabled in the layer (it fails until a backend is configured); pdns_provision enables it.
Any failure here only costs time: the infra host then boots on the plain base and installs at provision.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from .util import CACHE_DIR, LabError, flock, log, run

PACKAGES = ("pdns-server", "pdns-backend-sqlite3", "chrony", "pebble")

# Runs in a private mount namespace (unshare -m): every mount disappears with it.
_SCRIPT = r"""
set -eu
mount -t overlay lab-infra-layer -o "lowerdir=$BASE,upperdir=$UPPER,workdir=$WORK" "$MNT"
mount -t proc proc "$MNT/proc"
mount --rbind /dev "$MNT/dev"
apt() { chroot "$MNT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        apt-get -q -o "Acquire::http::Proxy=$PROXY" "$@"; }
apt update >/dev/null
apt install -y $PACKAGES >/dev/null
chroot "$MNT" systemctl disable --quiet pdns
apt clean
rm -rf "$MNT"/var/lib/apt/lists/* "$MNT"/var/cache/apt/*.bin
"""


def layer_key(base: Path) -> str:
    h = hashlib.sha256(base.name.encode())
    h.update(" ".join(PACKAGES).encode())
    h.update(_SCRIPT.encode())
    return h.hexdigest()[:16]


def ensure_layer(base: Path, apt_port: int) -> Path | None:
    """The infra layer for this base (built when missing), or None when it cannot be built."""
    layer = CACHE_DIR / f"infra-{layer_key(base)}"
    with flock(CACHE_DIR / "base.lock"):
        if (layer / ".complete").exists():
            return layer
        t0 = time.monotonic()
        for old in CACHE_DIR.glob(".infra-build-*"):
            shutil.rmtree(old, ignore_errors=True)
        build = CACHE_DIR / f".infra-build-{os.getpid()}"
        for d in ("upper", "work", "mnt"):
            (build / d).mkdir(parents=True)
        env = dict(os.environ, BASE=str(base), UPPER=str(build / "upper"), WORK=str(build / "work"),
                   MNT=str(build / "mnt"), PROXY=f"http://127.0.0.1:{apt_port}", PACKAGES=" ".join(PACKAGES))
        try:
            run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _SCRIPT], env=env,
                timeout=900)
        except (LabError, OSError) as e:
            log(f"WARNING infra layer not built (infra installs its packages at provision instead): {e}")
            shutil.rmtree(build, ignore_errors=True)
            return None
        (build / "upper" / ".complete").touch()
        shutil.rmtree(layer, ignore_errors=True)
        os.rename(build / "upper", layer)
        shutil.rmtree(build, ignore_errors=True)
        log(f"infra layer: built {layer.name} ({' '.join(PACKAGES)}) in {time.monotonic() - t0:.1f}s")
        return layer
