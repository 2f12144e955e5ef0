"""Users, access levels and the audit log."""
