"""Inbound mail authentication: DKIM, SPF, DMARC and ARC checks, their results and DMARC reports."""
