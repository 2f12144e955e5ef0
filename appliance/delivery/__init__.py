"""Outbound delivery: workers, routing, the SMTP client edge and the pure retry/reply rules."""
