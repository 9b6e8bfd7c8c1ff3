# Managed by mailstead (tasks/rspamd.py): global before-script. rspamd marked the message as spam
# (X-Spam: yes, added by filter-rspamd at the add_header action): file it into Junk. The user's own Sieve
# script runs after this one.
require ["fileinto", "mailbox"];
if header :is "X-Spam" "yes" {
  fileinto :create "Junk";
}
