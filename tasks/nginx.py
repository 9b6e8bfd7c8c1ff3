"""nginx stage (mail hosts): the MTA-STS policy and mail client autoconfig over HTTPS.

Serves, for every mail domain D:
  https://mta-sts.D/.well-known/mta-sts.txt      text/plain, the policy from mailstead.dns.records.mta_sts_policy
                                                  (the same text whose hash is the id in the _mta-sts TXT record)
  https://autoconfig.D/mail/config-v1.1.xml       application/xml, Thunderbird clientConfig 1.1

Certificate: /etc/mailstead/tls/fullchain.pem + privkey.pem from the TLS stage (its names include
mta-sts.D and autoconfig.D on mail hosts), so run this stage after tasks.tls. Port 80 serves only the ACME
HTTP-01 challenge files (tasks.certificates.WEBROOT) and redirects the rest to HTTPS; the Debian default site
is disabled. The configuration is /etc/nginx/conf.d/mailstead.conf; a new
version is checked with ``nginx -t`` (inside a minimal main config that includes the staged file) before it
replaces the live one, then nginx is reloaded. A replaced certificate also reloads nginx.
"""

from __future__ import annotations

from pyinfra.operations import apt

from mailstead.dns.records import mta_sts_policy
from tasks.certificates import WEBROOT as ACME_WEBROOT
from tasks.common import absent_file, checked_file, enable_and_start, ensure_directory, restart_if
from tasks.tls import CERT_PATH, KEY_PATH

CONF = "/etc/nginx/conf.d/mailstead.conf"
WEBROOT = "/var/www/mailstead"
CHECK_CONF = "/run/mailstead-nginx-check.conf"


def _check_command() -> str:
    wrapper = (
        "user www-data;\\npid /run/mailstead-nginx-check.pid;\\nerror_log stderr;\\nevents { }\\n"
        "http { include /etc/nginx/mime.types; include %s; }\\n"
    )
    return f"printf '{wrapper}' {{staged}} > {CHECK_CONF} && nginx -t -q -c {CHECK_CONF}; rc=$?; rm -f {CHECK_CONF}; exit $rc"


def deploy(settings, env, results) -> None:
    """``env``: the EnvironmentSettings of the host's environment (its MX set is in the MTA-STS policy);
    ``results.tls_changed``: the TLS stage's operations (a new certificate reloads nginx)."""

    results.open_ports += [80, 443]  # 443: MTA-STS, autoconfig; 80: ACME HTTP-01 (the ACME stage)
    mail_host = settings.fqdn
    install = apt.packages(name="nginx: install", packages=["nginx"], no_recommends=True)
    default_site = absent_file(name="nginx: disable the default site", path="/etc/nginx/sites-enabled/default",
                               restarts="nginx")
    ops = [
        default_site,
        ensure_directory(name=f"nginx: {WEBROOT}", path=WEBROOT, user="root", group="root", mode="755"),
    ]
    for d in env.domains:
        for sub in (".well-known", "mail"):
            ensure_directory(name=f"nginx: {WEBROOT}/{d}/{sub}", path=f"{WEBROOT}/{d}/{sub}", user="root",
                            group="root", mode="755")
        ops.append(checked_file(name=f"nginx: MTA-STS policy of {d}", dest=f"{WEBROOT}/{d}/.well-known/mta-sts.txt",
                                content=mta_sts_policy(env), mode="644", secret=False))
        ops.append(checked_file(name=f"nginx: autoconfig of {d}", dest=f"{WEBROOT}/{d}/mail/config-v1.1.xml",
                                src="nginx/config-v1.1.xml.j2", context={"domain": d, "mail_host": mail_host},
                                mode="644", secret=False))
    conf = checked_file(
        name="nginx: mailstead.conf (checked with nginx -t)",
        dest=CONF,
        src="nginx/mailstead.conf.j2",
        context={"domains": env.domains, "cert": CERT_PATH, "key": KEY_PATH, "webroot": WEBROOT,
                 "acme_webroot": ACME_WEBROOT},
        check=_check_command(),
        mode="644",
        restarts="nginx",
        secret=False,
    )
    ops.append(conf)
    enable_and_start("nginx")
    restart_if("nginx", install, conf, default_site, *results.tls_changed, reload=True)
