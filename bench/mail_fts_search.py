"""Full-text search: `SEARCH BODY <word>` over IMAP on a generated 10 000-message mailbox, with the
flatcurve index vs the same search with FTS off (Dovecot's sequential scan), as a ratio.

The mailbox is written straight into the user's maildir (folder "FtsBench") on the deployed staging host and
indexed once with `doveadm index`. Both numbers come from the same code path, `doveadm search ... body WORD`
on the host: once as configured (flatcurve answers), once with `-o fts_search=no` (Dovecot reads and scans
every message). The FTS search is also timed over IMAPS from the lab's outside world, as a client sees it.

Usage: python bench/mail_fts_search.py [MESSAGES]   (default 10000). Needs a deployed lab (`make lab`).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))

from lablib import Lab  # noqa: E402

FOLDER = "FtsBench"
NEEDLE = "quixotrambulant"  # appears in the body of exactly NEEDLE_HITS messages
NEEDLE_HITS = 7

GENERATE = r"""
import os, pwd, random, sys, time
home, n, needle, hits = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
box = os.path.join(home, "Maildir", ".{folder}")
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(box, d), exist_ok=True)
open(os.path.join(box, "maildirfolder"), "a").close()
rnd = random.Random(42)
words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(3, 10))) for _ in range(5000)]
targets = set(rnd.sample(range(n), hits))
now = int(time.time())
for i in range(n):
    body = [" ".join(rnd.choices(words, k=12)) for _ in range(rnd.randint(10, 60))]
    if i in targets:
        body.insert(rnd.randrange(len(body)), "the word " + needle + " is here")
    msg = ("From: gen{0}@outside.example\nTo: bench@staging.test\nSubject: generated message {0}\n"
           "Message-ID: <gen{0}@bench>\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n\n").format(i) + "\n".join(body) + "\n"
    with open(os.path.join(box, "cur", "{0}.M{1}P1.bench,S={2}:2,S".format(now + i, i, len(msg))), "w") as f:
        f.write(msg)
vm = pwd.getpwnam("vmail")
for root, dirs, files in os.walk(home):
    for name in dirs + files:
        os.chown(os.path.join(root, name), vm.pw_uid, vm.pw_gid)
""".replace("{folder}", FOLDER)


def timed(lab, host, *cmd) -> tuple[float, str]:
    start = time.monotonic()
    out = lab.exec(host, *cmd, timeout=1800).stdout
    return time.monotonic() - start, out


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    lab = Lab()
    st = lab.status()
    host = next(h for h in st["hosts"] if "mailservers" in h["roles"] and h["environment"] == "staging")["name"]
    user = "bob@staging.test"
    home = "/var/vmail/staging.test/bob"
    lab.exec(host, "doveadm", "mailbox", "delete", "-u", user, "-s", FOLDER, check=False)
    lab.exec(host, "rm", "-rf", f"{home}/Maildir/.{FOLDER}")
    gen_s, _ = timed(lab, host, "python3", "-c", GENERATE, home, str(count), NEEDLE, str(NEEDLE_HITS))
    lab.exec(host, "doveadm", "mailbox", "subscribe", "-u", user, FOLDER, check=False)
    sync_s, _ = timed(lab, host, "doveadm", "force-resync", "-u", user, FOLDER)
    index_s, _ = timed(lab, host, "doveadm", "index", "-u", user, FOLDER)

    search = ["doveadm", "search", "-u", user, "mailbox", FOLDER, "body", NEEDLE]
    no_fts = ["doveadm", "-o", "fts_search=no", "search", "-u", user, "mailbox", FOLDER, "body", NEEDLE]
    on, off = [], []
    for _ in range(5):
        t, out = timed(lab, host, *search)
        assert len(out.split("\n")) - 1 == NEEDLE_HITS, f"FTS search found {out!r}"
        on.append(t)
    for _ in range(3):
        t, out = timed(lab, host, *no_fts)
        assert len(out.split("\n")) - 1 == NEEDLE_HITS, f"scan found {out!r}"
        off.append(t)
    # the same FTS search over IMAPS from the outside world, as a client sees it
    password = next(u["password"] for d in st["domains"] for u in d["users"] if u["address"] == user)
    imap = lab.net("python3", "-c", (
        "import imaplib, ssl, sys, time\n"
        "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
        "m = imaplib.IMAP4_SSL(sys.argv[1], 993, ssl_context=ctx)\n"
        "m.login(sys.argv[3], sys.argv[4]); m.select(sys.argv[5], readonly=True)\n"
        "ts = []\n"
        "for _ in range(5):\n"
        "    s = time.monotonic(); typ, d = m.search(None, 'BODY', sys.argv[6]); ts.append(time.monotonic() - s)\n"
        "print(len(d[0].split()), ts[0], sorted(ts)[2])\n"),
        next(h for h in st["hosts"] if h["name"] == host)["ipv4"], f"{st['state_dir']}/secrets/lab-ca/ca.crt",
        user, password, FOLDER, NEEDLE).stdout.split()
    lab.exec(host, "doveadm", "mailbox", "delete", "-u", user, "-s", FOLDER, check=False)
    lab.exec(host, "rm", "-rf", f"{home}/Maildir/.{FOLDER}")

    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"mailbox: {count} generated messages ({FOLDER} of {user}); word in {NEEDLE_HITS} bodies")
    print(f"generate {gen_s:6.1f} s, resync {sync_s:6.1f} s, flatcurve index {index_s:6.1f} s")
    print(f"SEARCH BODY, flatcurve FTS (doveadm, median of 5): {med_on * 1000:9.1f} ms")
    print(f"SEARCH BODY, FTS off / scan (doveadm, median of 3): {med_off * 1000:9.1f} ms")
    print(f"ratio scan / FTS:                                {med_off / med_on:9.1f} x")
    print(f"SEARCH BODY over IMAPS with FTS, first query:     {float(imap[1]) * 1000:9.1f} ms  ({imap[0]} hits)")
    print(f"  same query repeated in the session (median of 5): {float(imap[2]) * 1000:7.1f} ms")
    print("(doveadm times include process start-up; caches warm)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
