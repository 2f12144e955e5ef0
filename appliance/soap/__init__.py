"""The SOAP admin API (Halon-compatible): Spyne application, WSGI gateway, server."""
