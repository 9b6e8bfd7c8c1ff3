"""The host-side ACME client: certificates from an ACME CA (Let's Encrypt), issued and renewed on the mail host.

It runs on the mail host with Debian 13's own ``python3-acme`` (4.0) and ``python3-cryptography`` (the deploy
installs them and copies this package to /usr/local/lib/mailstead/), started by the ``mailstead-acme.timer``
twice a day and once by the deploy for the first certificate; the unit tests run the same code against the
deploy machine's ``acme``. Nothing here imports the rest of mailstead: the host has only this package.

  renewal.py   pure logic: the certificate's names, ARI's certID (RFC 9773), the renewal decision
  client.py    one run: account (found again by its key, never registered twice), order, HTTP-01 through
               nginx's webroot, finalize, chain checked against the key, atomic install, daemon reloads
  __main__.py  ``python3 -m mailstead.acme {run,due} --config /etc/mailstead/acme.json [--force]``
"""
