"""One SOAP service module per area; each is listed in appliance.soap.app.default_services()."""
