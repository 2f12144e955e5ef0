"""The durable queue: spool bodies plus per-recipient entries in the store."""
