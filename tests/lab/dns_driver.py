"""The lab's DNS driver: run inside the lab's network namespace (helpers.drive), where the PowerDNS API and port
53 of infra.lab.test are reachable. It loads an environment of the lab's inventory (tests/lab/inventory.py,
as `python -m mailstead dns ... --inventory tests/lab/inventory.py` does), optionally changes some of its
settings, runs ``mailstead.dns.stage`` and answers with one JSON line: plan, read/write call counts, resolver
answers from the lab resolver 198.51.100.1.

Usage (from the repository root, PYTHONPATH=.): python tests/lab/dns_driver.py '<JSON request>'
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAB_INVENTORY = "tests/lab/inventory.py"
RESOLVER = "198.51.100.1"


def handle(req: dict) -> dict:
    """Runs inside the lab netns."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import dns.resolver
    import requests

    from mailstead.dns import desired_records, stage
    from mailstead.dns.plan import ApplyError, Change
    from mailstead.dns.providers import from_settings, read_secret
    from mailstead.dns.providers.powerdns import PowerDNS
    from mailstead.inventory import load_environment_settings
    from mailstead.settings import DnsProvider

    env = load_environment_settings(req.get("env", "production"), LAB_INVENTORY)
    update = {}
    for k in ("domains", "dmarc", "secrets_dir"):
        if k in req:
            update[k] = req[k]
    if "dns" in req:
        update["dns"] = DnsProvider(**req["dns"])
    env = env.model_copy(update=update)
    out: dict = {}
    pdns_key = read_secret(load_environment_settings("production", LAB_INVENTORY).dns, env.secrets_dir)
    admin = PowerDNS("http://198.51.100.10:8081", pdns_key)

    for z in req.get("create_zones", []):
        admin.delete_zone(z)
        admin.create_zone(z, nameservers=["infra.lab.test."])
    for z in req.get("delete_zones", []):
        admin.delete_zone(z)

    if req.get("seed"):
        seeder = from_settings(env.dns, env.secrets_dir)
        for zone, name, rtype, ttl, values in req["seed"]:
            seeder.apply(zone, [Change("change", name, rtype, ttl, new=tuple(values))])

    provider = from_settings(env.dns, env.secrets_dir)
    proxy = None
    if req.get("fail_patch"):
        upstream, fail_at, count = env.dns.api_url.rstrip("/"), req["fail_patch"], {"PATCH": 0}

        class Proxy(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _do(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "PATCH":
                    count["PATCH"] += 1
                    if count["PATCH"] == fail_at:
                        data = b'{"error": "injected by the lab test proxy"}'
                        self.send_response(500)
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                r = requests.request(self.command, upstream + self.path, data=body or None,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_PATCH = do_POST = do_DELETE = do_PUT = _do

        proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        provider = PowerDNS(f"http://127.0.0.1:{proxy.server_address[1]}", pdns_key)

    if "stage" in req:
        buf = io.StringIO()
        try:
            plan = stage(env, dry=req["stage"] == "plan", provider=provider, out=buf)
            out["changes"] = [[c.action, c.name, c.type] for c in plan.changes]
        except ApplyError as exc:
            out["error"] = str(exc)
            out["error_records"] = exc.records
        out["calls"] = provider.calls
        out["output"] = buf.getvalue()
    if req.get("records"):
        out["records"] = [[r.name, r.type, r.ttl, list(r.values)] for r in desired_records(env, create_keys=False)]
    if req.get("dkim"):
        from mailstead import dkim

        out["dkim"] = {d: {k.selector: k.txt() for k in dkim.published_keys(env.secrets_dir, d)} for d in env.domains}
    if req.get("resolve"):
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [req.get("resolver", RESOLVER)]
        res.cache = None
        answers = {}
        for name, rtype in req["resolve"]:
            try:
                ans = res.resolve(name, rtype, raise_on_no_answer=False, lifetime=5)
                answers[f"{name} {rtype}"] = [rd.to_text() for rd in ans.rrset] if ans.rrset else []
            except dns.resolver.NXDOMAIN:
                answers[f"{name} {rtype}"] = []
        out["answers"] = answers
    if proxy:
        proxy.shutdown()
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(handle(json.loads(sys.argv[1]))))
