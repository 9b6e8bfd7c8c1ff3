# Managed by mailstead (tasks/rspamd.py): IMAPSieve, a message moved or copied into Junk: rspamd learns it as spam
require ["vnd.dovecot.pipe", "copy", "imapsieve"];
pipe :copy "rspamd-learn" ["spam"];
