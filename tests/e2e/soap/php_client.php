<?php
// Drives PHP's SoapClient the way existing Halon API clients create it, for the e2e tests.
// argv: WSDL-URL USER PASSWORD GZIP(0|1); stdin: JSON [[operation, {args}], ...];
// stdout: JSON [{"ok": result} | {"fault": [code, string]}, ...]. Binary strings are sent back
// base64-encoded under {"b64": ...} so that JSON can carry them.
ini_set('soap.wsdl_cache_enabled', '0');
[$_, $wsdl, $user, $password, $gzip] = $argv;
$compression = SOAP_COMPRESSION_ACCEPT | SOAP_COMPRESSION_GZIP;
if ($gzip === '1') {
    $compression |= 9;  // a level OR'ed in: request bodies are compressed too
}
$options = [
    'uri' => 'urn:halon',
    'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    'compression' => $compression,
    'trace' => 1,
    'exceptions' => true,
    'cache_wsdl' => WSDL_CACHE_NONE,
];
if ($user !== '') {  // an empty user: no credentials at all (the WSDL is public)
    $options['login'] = $user;
    $options['password'] = $password;
}
if (getenv('PHP_SOAP_CAFILE')) {  // HTTPS with the node's own certificate
    $options['stream_context'] = stream_context_create(['ssl' => ['cafile' => getenv('PHP_SOAP_CAFILE')]]);
}
try {
    $client = new SoapClient($wsdl, $options);
} catch (SoapFault $f) {
    echo json_encode([['wsdl_fault' => [$f->faultcode, $f->faultstring]]]), "\n";
    exit(0);
}

function plain($value) {
    if (is_object($value) || is_array($value)) {
        $out = [];
        foreach ((array)$value as $k => $v) {
            $out[$k] = plain($v);
        }
        return is_object($value) ? (object)$out : $out;
    }
    if (is_string($value) && !preg_match('//u', $value)) {
        return ['b64' => base64_encode($value)];
    }
    return $value;
}

$out = [];
foreach (json_decode(stream_get_contents(STDIN), true) as [$op, $args]) {
    try {
        $result = $client->__soapCall($op, [(object)$args]);
        $out[] = ['ok' => plain($result),
                  'response_gzip' => stripos($client->__getLastResponseHeaders() ?? '', 'Content-Encoding: gzip') !== false];
    } catch (SoapFault $f) {
        $out[] = ['fault' => [$f->faultcode, $f->faultstring]];
    }
}
echo json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE), "\n";
