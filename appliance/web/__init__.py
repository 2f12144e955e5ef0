"""What the API listener serves besides SOAP: health checks and Prometheus metrics."""
