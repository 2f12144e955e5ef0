"""Fan-out SOAP client: zeep builds and parses, pycurl's CurlMulti carries the calls."""
