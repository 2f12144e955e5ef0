"""The SOAP API of a real `appliance run` process: the WSDL it serves is the published file,
HTTPS is the default, and all three clients talk to it."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zeep

from appliance.soap.wsdl import PLACEHOLDER_URL, with_address
from tests.e2e.soap.conftest import PHP_CLIENT
from tests.support.node import RunningNode, wait_for_port
from tests.support.postgres import free_port

WSDL_FILE = Path(__file__).resolve().parents[3] / "wsdl" / "appliance.wsdl"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningNode]:
    with RunningNode(tmp_path_factory.mktemp("soap-node")) as running:
        yield running


def test_served_wsdl_is_the_published_file(node: RunningNode) -> None:
    served = requests.get(node.soap_url + "?wsdl", auth=("admin", node.admin_password), timeout=10)
    assert served.status_code == 200
    assert f'location="{node.soap_url}"'.encode() in served.content
    assert with_address(served.content, PLACEHOLDER_URL) == WSDL_FILE.read_bytes()


def test_clients_against_the_node(node: RunningNode) -> None:
    session = requests.Session()
    session.auth = ("admin", node.admin_password)
    client = zeep.Client(node.soap_url + "?wsdl", transport=zeep.Transport(session=session))
    serial = client.service.getSerial()
    assert serial and client.service.systemStatus().serial == serial
    assert client.service.mailQueueCount(filter="") == 0
    if shutil.which("php"):
        done = subprocess.run(["php", str(PHP_CLIENT), node.soap_url + "?wsdl", "admin",
                               node.admin_password, "1"], input='[["getSerial", {}]]',
                              capture_output=True, text=True, timeout=60, check=True)
        assert serial in done.stdout


def test_https_by_default(tmp_path: Path) -> None:
    port = free_port()
    with RunningNode(tmp_path) as running:
        pass  # creates the data dir and the admin user
    argv = [*running._base(), "run", "--smtp-listen", f"127.0.0.1:{free_port()}",
            "--soap-listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, env=running._env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        cert = running.data_dir / "tls" / "node.crt"
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        response = requests.get(f"https://127.0.0.1:{port}/remote/?wsdl", verify=str(cert),
                                auth=("admin", running.admin_password), timeout=10)
        assert response.status_code == 200 and b"https://127.0.0.1" in response.content
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/remote/", timeout=5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
