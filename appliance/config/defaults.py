"""The config text a node starts with when it is given none."""

DEFAULT_TEXT = '''\
# appliance configuration. Every key is documented in appliance/config/schema.py;
# keys left out take their defaults. Edit with `appliance config edit` or configTextSet.

[node]
name = "node1"
hostname = "localhost"

[[listeners]]
id = "inbound"
address = "127.0.0.1"
port = 2525

[[transports]]
id = "default"
# nexthop = "127.0.0.1:25"   # empty: deliver by MX lookup

[queue]
workers = 4
retry_schedule = [60, 300, 900, 1800, 3600, 7200, 14400]

[api]
listen = "https://127.0.0.1:8443"

[relay]
# Mail for `domains` is taken from any client; mail for other domains only from clients that
# authenticated and clients in `mynetworks` (no open relay).
mynetworks = ["127.0.0.0/8", "::1/128"]
domains = []    # e.g. ["example.com", ".example.com"] (the dot form matches subdomains)
'''
