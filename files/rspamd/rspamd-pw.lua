-- Managed by mailstead (tasks/rspamd.py): print the rspamd PBKDF hash of the controller password
local f = assert(io.open("/etc/mailstead/rspamd/controller.password"))
local pw = f:read("*l")
f:close()
print(require("rspamd_cryptobox").pbkdf(pw))
