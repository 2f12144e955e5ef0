"""Mail authentication: DKIM signing of outbound mail; DKIM, SPF, DMARC and ARC checks of inbound mail, their results and DMARC reports."""
