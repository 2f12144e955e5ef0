"""The node's store: engine, sessions, schema management and ORM models."""
