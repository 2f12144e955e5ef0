<?php
// Runs appliance commands through PHP's SoapClient as Halon API clients create it.
// argv: WSDL-URL USER PASSWORD; stdin: JSON list of scenarios
//   {"argv": [...], "push": "bytes to push once output appeared" | null,
//    "stop_when": "text after which commandStop is called" | null,
//    "other_poll": true  (also poll a made-up id and report its fault)}
// stdout: JSON list of {"id", "output" (base64), "fault": [code, string], "chunk_types"} or
//   {"run_fault": [code, string]}.
ini_set('soap.wsdl_cache_enabled', '0');
[$_, $wsdl, $user, $password] = $argv;
$client = new SoapClient($wsdl, [
    'login' => $user,
    'password' => $password,
    'uri' => 'urn:halon',
    'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
    'compression' => SOAP_COMPRESSION_ACCEPT | SOAP_COMPRESSION_GZIP,
    'exceptions' => true,
    'cache_wsdl' => WSDL_CACHE_NONE,
]);

function run_scenario($client, $s) {
    try {
        $id = $client->commandRun(['argv' => ['item' => $s['argv']], 'cols' => 80, 'rows' => 24])->result;
    } catch (SoapFault $f) {
        return ['run_fault' => [$f->faultcode, $f->faultstring]];
    }
    $output = '';
    $pushed = false;
    $stopped = false;
    $types = [];
    $deadline = microtime(true) + 30;
    while (microtime(true) < $deadline) {
        try {
            $r = $client->commandPoll(['commandid' => $id]);
        } catch (SoapFault $f) {
            return ['id' => $id, 'output' => base64_encode($output), 'fault' => [$f->faultcode, $f->faultstring],
                    'chunk_types' => array_values(array_unique($types))];
        }
        foreach ($r->result->item ?? [] as $chunk) {
            $types[] = gettype($chunk);
            $output .= $chunk;
        }
        if (!$pushed && isset($s['push']) && $output !== '') {
            $client->commandPush(['commandid' => $id, 'data' => $s['push']]);
            $pushed = true;
        }
        if (!$stopped && isset($s['stop_when']) && strpos($output, $s['stop_when']) !== false) {
            $client->commandStop(['commandid' => $id]);
            $stopped = true;
        }
    }
    return ['id' => $id, 'output' => base64_encode($output), 'fault' => null];
}

$out = [];
foreach (json_decode(stream_get_contents(STDIN), true) as $scenario) {
    if (isset($scenario['poll'])) {  // poll an id this user did not start
        try {
            $client->commandPoll(['commandid' => $scenario['poll']]);
            $out[] = ['fault' => null];
        } catch (SoapFault $f) {
            $out[] = ['fault' => [$f->faultcode, $f->faultstring]];
        }
        continue;
    }
    if (isset($scenario['list'])) {
        $out[] = ['list' => array_map(fn($c) => $c->name, $client->commandList()->result->item)];
        continue;
    }
    $out[] = run_scenario($client, $scenario);
}
echo json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_UNICODE), "\n";
