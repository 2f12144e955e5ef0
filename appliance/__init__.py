"""appliance: an email gateway node whose admin surface is a SOAP API."""

__version__ = "0.1.0"
