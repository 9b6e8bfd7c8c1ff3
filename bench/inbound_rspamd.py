"""Inbound delivery with and without rspamd in the path, side by side in one run on the same host: the
messages of bench/mail_throughput.py (20 KiB, port 25 → LMTP → maildir), first as deployed (filter-rspamd
on 25), then with smtpd.conf's inbound chain temporarily without rspamd, then as deployed again (the machine's
CPU is shared, so the two "with" runs show the noise). Also prints rspamd's own mean scan time of the messages
(from its log). smtpd.conf is restored (and smtpd restarted) whatever happens.
Usage: python bench/inbound_rspamd.py [COUNT] [CONNECTIONS]   (defaults 200 messages, 4 connections)
Needs a deployed lab (`make lab`); uses $MAILSTEAD_LAB_ID like the tests.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))

from lablib import Lab  # noqa: E402
from mail_throughput import measure, staging_target  # noqa: E402

CONF = "/etc/opensmtpd/smtpd.conf"
SAVED = "/var/lib/mailstead/smtpd.conf.bench-saved"
SMTPD = "/opt/opensmtpd/sbin/smtpd"


def scan_ms(lab, host: str, token: str) -> float | None:
    """Mean rspamd scan time (its log's `time: ...ms`) of the messages whose Subject holds token."""
    out = lab.exec(host, "sh", "-c", "grep rspamd_task_write_log /var/log/rspamd/rspamd.log | tail -2000",
                   check=False).stdout
    times = [float(m) for m in re.findall(r"time: ([0-9.]+)ms", out)]
    return sum(times[-200:]) / len(times[-200:]) if times else None


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    lab = Lab()
    host, rcpt = staging_target(lab.status())
    name = host["name"]
    results = []
    r = measure(lab, host, rcpt, count, conns)
    results.append(("with rspamd", r, scan_ms(lab, name, r["token"]) if r else None))
    lab.exec(name, "sh", "-c", f"cp -p {CONF} {SAVED} && "
             f"sed -i 's/\"ownsenders\", \"rspamd\"/\"ownsenders\"/' {CONF} && {SMTPD} -n -f {CONF} >/dev/null && "
             "systemctl restart opensmtpd")
    try:
        results.append(("without rspamd", measure(lab, host, rcpt, count, conns), None))
    finally:
        lab.exec(name, "sh", "-c", f"mv -f {SAVED} {CONF} && systemctl restart opensmtpd")
    r = measure(lab, host, rcpt, count, conns)
    results.append(("with rspamd (again)", r, scan_ms(lab, name, r["token"]) if r else None))
    print(f"inbound: {count} x 20 KiB over {conns} SMTP connections to {name}:25 → LMTP → maildir")
    rates = {}
    for label, r, ms in results:
        if r is None:
            print(f"  {label:22s} failed")
            continue
        rates[label] = count / r["total_s"]
        extra = f"  (rspamd scan {ms:.0f} ms/msg)" if ms else ""
        print(f"  {label:22s} accepted {count / r['accept_s']:6.1f} msg/s, delivered {rates[label]:6.1f} msg/s{extra}")
    if "without rspamd" in rates and "with rspamd" in rates:
        print(f"  ratio with / without rspamd: {rates['with rspamd'] / rates['without rspamd']:.2f}")
    return 0 if len(rates) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
