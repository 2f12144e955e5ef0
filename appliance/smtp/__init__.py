"""SMTP reception: listeners, aiosmtpd hooks, named replies."""
