# Managed by mailstead (tasks/rspamd.py): IMAPSieve, a message moved or copied out of Junk: rspamd learns it as
# ham, unless it went to Trash (deleting spam says nothing about it)
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];
if environment :matches "imap.mailbox" "*" {
  set "mailbox" "${1}";
}
if string :is "${mailbox}" "Trash" {
  stop;
}
pipe :copy "rspamd-learn" ["ham"];
