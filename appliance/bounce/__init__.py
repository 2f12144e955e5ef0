"""Bounces: the RFC 3464 DSN builder and the store-side bounce of a queue entry."""
