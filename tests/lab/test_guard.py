"""The root-namespace guard: nothing in this machine's own network namespace may send to a lab prefix.

The live guard is checked for presence; its behaviour is proven in a throw-away network namespace whose only
route leads into its own loopback, so even a broken rule could not send a packet off this machine.
"""

from __future__ import annotations

import subprocess
import uuid

from lablib import guard


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


def test_guard_is_active_in_the_root_namespace_while_the_lab_is_up(lab):
    listing = run("nft", "list", "table", "inet", guard.TABLE)
    assert listing.returncode == 0, listing.stderr
    assert "198.51.100.0/24" in listing.stdout and "2001:db8:51::/64" in listing.stdout
    assert "reject" in listing.stdout


def test_guard_ruleset_rejects_lab_destinations_at_once():
    ns = f"mailstead-guardtest-{uuid.uuid4().hex[:6]}"
    run("ip", "netns", "add", ns, check=True)
    try:
        run("ip", "-n", ns, "link", "set", "lo", "up", check=True)
        run("ip", "-n", ns, "route", "add", "default", "dev", "lo", check=True)
        run("ip", "netns", "exec", ns, "nft", "-f", "-", input=guard.RULESET, check=True)
        probe = ("import socket\ns=socket.socket(); s.settimeout(3)\n"
                 "try:\n    s.connect(('198.51.100.12', 25)); print('connected')\n"
                 "except OSError as e:\n    print(type(e).__name__)\n")
        out = run("ip", "netns", "exec", ns, "python3", "-c", probe, timeout=20).stdout.strip()
        assert out == "ConnectionRefusedError", out  # rejected locally, not timed out or sent
        counters = run("ip", "netns", "exec", ns, "nft", "list", "table", "inet", guard.TABLE).stdout
        assert "counter packets 0" not in counters.split("198.51.100.0/24", 1)[1].splitlines()[0]
    finally:
        run("ip", "netns", "delete", ns)
