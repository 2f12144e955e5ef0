"""Mail authentication: DKIM signing of outbound mail, and the checks of inbound mail."""
