# Managed by mailstead (tasks/dovecot.py): global before-script, runs first at every delivery.
# OpenSMTPD's LMTP client writes Return-Path (and Delivered-To) into the message, and Dovecot's LMTP adds its own
# Return-Path above it: keep Dovecot's (the first), delete OpenSMTPD's, so a delivered message has exactly one.
require ["editheader"];
deleteheader :index 2 "Return-Path";
