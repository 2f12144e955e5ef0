-- ratelimit.lua: limit each SASL user to 100 messages an hour, and warn the administrator
-- (at most once a day per user) when someone hits the limit.
--
-- Put it in the config and name it from a listener:
--
--   [scripts]
--   ratelimit = '''...this file...'''
--
--   [[listeners]]
--   id = "submission"
--   port = 587
--   auth = true
--   script = "ratelimit"
--
-- It runs in the RCPT TO flow. `session.recipients` holds the recipients accepted so far in
-- this transaction, so the first RCPT of a message is the one that counts the message; the
-- later recipients of a message that got through are not counted again.
-- rate(ns, entry, count, interval) is true (and counts one hit) while `entry` has had fewer
-- than `count` hits in the last `interval` seconds; refused calls are not counted.

ADMIN = "postmaster@example.com"
LIMIT, HOUR, DAY = 100, 3600, 86400

function rcpt_to(session, recipient)
  if not session.authenticated or #session.recipients > 0 then
    return accept()
  end
  local user = session.sasl
  if rate("sasl-messages", user, LIMIT, HOUR) then
    stat("policy", "sasl-message", user)
    return accept()
  end
  stat("policy", "sasl-limited", user)
  syslog("warning", user .. " is over " .. LIMIT .. " messages an hour")
  if rate("sasl-limit-warning", user, 1, DAY) then
    mail("", ADMIN, "Rate limit reached by " .. user,
         "The SASL user " .. user .. " (from " .. session.client_ip .. ") sent more than " ..
         LIMIT .. " messages in an hour; further mail is deferred until the hour passes.\n")
  end
  return defer(451, "4.7.1 Too many messages from " .. user .. ", try again later")
end
