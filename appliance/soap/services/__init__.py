"""One SOAP service module per area; each is registered in appliance.soap.app.SERVICES."""
