"""Outbound DKIM signing throughput: the same 20 KiB messages, on the same deployed lab mail host, signed with
both the domain's RSA-2048 and Ed25519 keys by
  - rspamd (what mailstead runs: /checkv2 as filter-rspamd asks it, for an authenticated user, so it also
    scans the message; both signatures come back in the reply),
  - Perl Mail::DKIM (Debian's libmail-dkim-perl: the engine the seed's dkimproxy was built on; dkimproxy itself
    is not in Debian 13), one Signer per algorithm,
  - OpenSMTPD's own C signer opensmtpd-filter-dkimsign (Debian), two instances (one per algorithm) driven
    through smtpd's filter protocol as smtpd would chain them.
One message at a time for every engine (bounded count). Prints messages/s and the ratios.
Usage: python bench/dkim_signing.py [COUNT] [ENVIRONMENT]   (default 200, staging)
Needs a deployed lab (`make lab`); installs libmail-dkim-perl, libcryptx-perl and opensmtpd-filter-dkimsign on
the staging mail host. Uses $MAILSTEAD_LAB_ID like the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "lab"))

from lablib import Lab  # noqa: E402

HOST_SCRIPT = r'''
import base64, glob, json, os, subprocess, sys, time, urllib.request
ARGS = json.loads(sys.argv[1])
N, DOMAIN, USER = ARGS["count"], ARGS["domain"], ARGS["user"]
work = "/tmp/mailstead-dkim-bench"
os.makedirs(work, exist_ok=True)
keys = json.loads(ARGS["keys"])  # {"rsa": (selector, path), "ed25519": (selector, path)}
# Ed25519 as PKCS#8 PEM for the two engines that read PEM (mailstead keeps rspamd's raw base64 form)
seed = base64.b64decode(open(keys["ed25519"][1]).read().strip())[:32]
der = bytes.fromhex("302e020100300506032b657004220420") + seed
ed_pem = f"{work}/ed25519.pem"
with open(ed_pem, "w") as f:
    f.write("-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PRIVATE KEY-----\n")
# Mail::DKIM reads RSA keys in the traditional PKCS#1 form only
rsa_pem = f"{work}/rsa.pem"
subprocess.run(["openssl", "rsa", "-in", keys["rsa"][1], "-traditional", "-out", rsa_pem], check=True,
               capture_output=True)
body = ("x" * 76 + "\r\n") * (20 * 1024 // 78)
msgs = []
for i in range(N):
    msgs.append((f"From: {USER}\r\nTo: someone@example.net\r\nSubject: bench {i}\r\nDate: Sun, 29 Nov 2026 05:00:00 +0000\r\n"
                 f"Message-ID: <bench-{i}@{DOMAIN}>\r\n\r\n" + body).encode())
for i, m in enumerate(msgs):
    with open(f"{work}/m{i:05d}.eml", "wb") as f:
        f.write(m)
out = {}

# rspamd: as filter-rspamd asks (the whole scan, signing included), and signing only (a per-request setting
# that enables nothing but the DKIM signing symbol: the engine alone)
for name, extra in (("rspamd", {}), ("rspamd_sign_only", {"Settings": '{"symbols_enabled": ["DKIM_SIGNED"]}'})):
    t0 = time.perf_counter()
    sigs = 0
    for m in msgs:
        req = urllib.request.Request("http://127.0.0.1:11333/checkv2", data=m, headers={
            "IP": "198.51.100.250", "User": USER, "From": USER, "Rcpt": "someone@example.net", "Helo": "client",
            **extra})
        r = json.load(urllib.request.urlopen(req))
        s = r.get("dkim-signature")
        sigs += len(s) if isinstance(s, list) else (1 if s else 0)
    out[name] = {"seconds": time.perf_counter() - t0, "signatures": sigs}

# Perl Mail::DKIM
perl = r"""
use strict; use Mail::DKIM::Signer; use Mail::DKIM::PrivateKey; use Mail::DKIM::TextWrap;
my ($dom, $rsel, $rkey, $esel, $ekey, @files) = @ARGV; my $n = 0;
my $rk = Mail::DKIM::PrivateKey->load(Type => 'rsa', File => $rkey);
my $ek = Mail::DKIM::PrivateKey->load(Type => 'ed25519', File => $ekey);
for my $f (@files) {
  open(my $fh, '<', $f) or die; binmode $fh; local $/; my $msg = <$fh>; close $fh;
  for my $a (['rsa-sha256', $rsel, $rk], ['ed25519-sha256', $esel, $ek]) {
    my $s = Mail::DKIM::Signer->new(Algorithm => $a->[0], Method => 'relaxed', Domain => $dom,
                                    Selector => $a->[1], Key => $a->[2]);
    $s->PRINT($msg); $s->CLOSE; $n++ if $s->signature->as_string;
  }
}
print "$n\n";
"""
files = sorted(glob.glob(f"{work}/m*.eml"))
t0 = time.perf_counter()
p = subprocess.run(["perl", "-e", perl, DOMAIN, keys["rsa"][0], rsa_pem, keys["ed25519"][0], ed_pem, *files],
                   capture_output=True, text=True)
out["mail_dkim"] = {"seconds": time.perf_counter() - t0, "signatures": int(p.stdout.strip() or 0), "error": p.stderr[-500:]}

# opensmtpd-filter-dkimsign: two instances, as an smtpd filter chain would run them
def start(alg, sel, key):
    p = subprocess.Popen(["/usr/libexec/opensmtpd/filter-dkimsign", "-a", alg, "-c", "relaxed/relaxed", "-d", DOMAIN,
                          "-s", sel, "-k", key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    for line in ("config|smtpd-version|7.9.0", "config|protocol|0.7", "config|smtp-session-timeout|300",
                 "config|subsystem|smtp-in", "config|ready"):
        p.stdin.write(line + "\n")
    p.stdin.flush()
    while not p.stdout.readline().startswith("register|ready"):
        pass
    return p
chain = [start("rsa-sha256", keys["rsa"][0], keys["rsa"][1]), start("ed25519-sha256", keys["ed25519"][0], ed_pem)]
sid = "0123456789abcdef"
for p in chain:
    p.stdin.write(f"report|0.7|1795929353.000001|smtp-in|link-connect|{sid}|localhost|pass|127.0.0.1:1|127.0.0.1:25\n")
t0 = time.perf_counter()
sigs = 0
for i, m in enumerate(msgs):
    lines = m.decode().split("\r\n")[:-1] + ["."]
    tok = f"{i + 1:016x}"
    for p in chain:
        p.stdin.write(f"report|0.7|1795929353.000001|smtp-in|tx-begin|{sid}|{i + 1:08x}\n")
        p.stdin.write("".join(f"filter|0.7|1795929353.000001|smtp-in|data-line|{sid}|{tok}|{line}\n" for line in lines))
        p.stdin.flush()
        lines = []
        while True:
            got = p.stdout.readline().rstrip("\n").split("|", 3)[3]
            lines.append(got)
            if got == ".":
                break
        p.stdin.write(f"report|0.7|1795929353.000001|smtp-in|tx-commit|{sid}|{i + 1:08x}|{len(m)}\n")
    sigs += sum(1 for line in lines if line.startswith("DKIM-Signature:"))  # what leaves the chain
out["dkimsign"] = {"seconds": time.perf_counter() - t0, "signatures": sigs}
for p in chain:
    p.kill()
print(json.dumps(out))
'''


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    environment = sys.argv[2] if len(sys.argv) > 2 else "staging"
    lab = Lab()
    st = lab.status()
    host = next(h for h in st["hosts"] if "mailservers" in h["roles"] and h["environment"] == environment)
    domain = f"{environment}.test"
    user = next(u["address"] for d in st["domains"] if d["domain"] == domain for u in d["users"])
    lab.exec(host["name"], "sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "
             "libmail-dkim-perl libcryptx-perl opensmtpd-filter-dkimsign >/dev/null", timeout=600)
    # the active pair: what rspamd's dkim_signing.conf names
    conf = lab.exec(host["name"], "cat", "/etc/rspamd/local.d/dkim_signing.conf").stdout
    keys = {}
    for line in conf.splitlines():
        if "path =" in line:
            path = line.split('path = "')[1].split('"')[0]
            sel = line.split('selector = "')[1].split('"')[0]
            keys["rsa" if sel.startswith("r") else "ed25519"] = (sel, path)
    args = json.dumps({"count": count, "domain": domain, "user": user, "keys": json.dumps(keys)})
    proc = lab.exec(host["name"], "python3", "-c", HOST_SCRIPT, args, timeout=1800, check=False)
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        return 1
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"DKIM dual signing (RSA-2048 + Ed25519), {count} messages of 20 KiB, one at a time, on {host['name']}:")
    rates = {}
    for name, label in (("rspamd", "rspamd 3.12 (filter-rspamd's request; also scans)"),
                        ("rspamd_sign_only", "rspamd 3.12, signing only (no scan)"),
                        ("mail_dkim", "Perl Mail::DKIM (dkimproxy's engine)"),
                        ("dkimsign", "opensmtpd-filter-dkimsign x2")):
        r = res[name]
        rates[name] = count / r["seconds"]
        print(f"  {label:52s} {rates[name]:8.1f} msg/s  ({r['signatures']} signatures)")
        if r.get("error") and not r["signatures"]:
            print("    error:", r["error"])
    print(f"  ratio rspamd / Mail::DKIM:     {rates['rspamd'] / rates['mail_dkim']:.2f}")
    print(f"  ratio rspamd / filter-dkimsign: {rates['rspamd'] / rates['dkimsign']:.2f}")
    print(f"  ratio rspamd signing only / Mail::DKIM:     {rates['rspamd_sign_only'] / rates['mail_dkim']:.2f}")
    print(f"  ratio rspamd signing only / filter-dkimsign: {rates['rspamd_sign_only'] / rates['dkimsign']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
