"""The settings model: one typed, validated, immutable view of a host's group_data, and of an environment.

Each value has one owner: a host's ``Settings`` (what may differ between hosts) or its environment's
``EnvironmentSettings`` (what is set once in group_data/<environment>.py or group_data/all.py and is the same
for every host: domains, users, aliases, DNS, policies). Stages get both: ``deploy(settings, env, results)``.

Every value a task or template uses comes from here, never from raw ``host.data``. ``from_host(host)`` builds
the model of one pyinfra host; ``mailstead.inventory.check`` builds and validates every host of an inventory
before pyinfra connects to anything and names the group_data file a bad value came from.

Modules (each depends only on those above it):
  errors       Issue / SettingsError and how values are shown in messages
  fields       constants, patterns and the strict string types of every field
  models       sub-models: users, DNS provider, TLS, OpenSMTPD source
  checks       cross-field checks of one host and of one environment
  host         Settings: what may differ from host to host
  environment  EnvironmentSettings: what one environment sets once for all its hosts (domains, users, aliases,
               DNS provider, policies), plus what its hosts add (mail hosts, traps, MX)
  messages     pydantic errors -> one-line issues naming file, field, value and fix
  build        merged pyinfra data -> Settings and EnvironmentSettings, with the file each value came from
  reference    the README's settings reference, generated from the field docstrings
"""

from mailstead.settings.build import (build_environment, build_settings, collect_issues, environment_data,
                                      environment_wide_message, from_host,
                                      is_data_value, is_pyinfra_key)
from mailstead.settings.checks import ssh_lockout_issues
from mailstead.settings.environment import (
                                            MX_PREFERENCE,
                                            EnvironmentSettings,
                                            MailHost,
                                            MxRecord,
                                            Spamtrap,
                                            environment_issues,
)
from mailstead.settings.errors import Issue, SettingsError
from mailstead.settings.fields import (
                                            DNS_PROVIDERS,
                                            ENVIRONMENT_WIDE_FIELDS,
                                            HASH_PATTERNS,
                                            ROLES,
                                            is_domain,
                                            quota_bytes,
                                            split_address,
)
from mailstead.settings.host import Settings
from mailstead.settings.models import DEFAULT_NTP, DNS_REQUIRED, DnsProvider, OpenSmtpd, Tls, User, signify_key_problem
from mailstead.settings.reference import settings_reference_markdown

__all__ = [
    "DEFAULT_NTP", "DNS_PROVIDERS", "DNS_REQUIRED", "ENVIRONMENT_WIDE_FIELDS", "HASH_PATTERNS", "MX_PREFERENCE",
    "ROLES", "DnsProvider", "EnvironmentSettings", "Issue", "MailHost", "MxRecord", "OpenSmtpd", "Settings",
    "SettingsError", "Spamtrap", "Tls", "User", "build_environment", "build_settings", "collect_issues",
    "environment_data", "environment_issues", "environment_wide_message",
    "from_host", "is_data_value", "is_domain", "is_pyinfra_key", "quota_bytes", "settings_reference_markdown",
    "signify_key_problem", "split_address", "ssh_lockout_issues",
]
