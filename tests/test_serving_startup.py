"""Start-up order of ``peterrec serve``: the gRPC and REST ports answer before TensorFlow is
imported and before the model server exists; the same ports then serve the models (issue 14, part 5).

Only the order is asserted, never a duration."""

import argparse
import http.client
import json
import subprocess
import sys

import grpc
import pytest

from peterrec.serving import cli, model_config, testing
from peterrec.serving.grpc_ports import STARTING_MESSAGE, EarlyGrpc
from peterrec.serving.rest_ports import EarlyRest
from peterrec.serving.server import Server

# A GetModelStatusRequest for model "peterrec", written by hand: the callers below must not need
# the TF Serving messages (they import TensorFlow).
STATUS_REQUEST = b"\x0a\x0a\x0a\x08peterrec"
AVAILABLE = b"\x10\x1e"  # ModelVersionStatus.state = AVAILABLE (30)


def status_call(port: int):
    """GetModelStatus on 127.0.0.1:port as raw bytes: (grpc code, details or the raw answer)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/tensorflow.serving.ModelService/GetModelStatus")
        try:
            return grpc.StatusCode.OK, call(STATUS_REQUEST, timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details()


def rest_status(port: int):
    """GET /v1/models/peterrec on 127.0.0.1:port: (HTTP status, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/v1/models/peterrec")
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def test_the_serve_command_and_the_early_port_import_no_tensorflow():
    code = ("import sys, peterrec.serving.cli, peterrec.serving.grpc_ports, "
            "peterrec.serving.rest_ports, peterrec.serving.limits; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_answers_on_its_port_before_the_server_is_built(monkeypatch):
    seen = {}

    def held_build_server(args, early_grpc=None, early_rest=None):
        # build_server is where TensorFlow gets imported: the ports must answer already.
        seen["grpc"] = status_call(early_grpc.port)
        seen["rest"] = rest_status(early_rest.port)
        raise ValueError("held: no server is built in this test")

    monkeypatch.setattr(cli, "build_server", held_build_server)
    args = argparse.Namespace(host="127.0.0.1", port=0, rest_port=0, max_rows=1024, log_level="WARNING")
    assert cli._serve(args) == 1  # the ValueError ends the command, which closes the ports
    assert seen["grpc"] == (grpc.StatusCode.UNAVAILABLE, STARTING_MESSAGE)
    assert seen["rest"] == (503, {"error": STARTING_MESSAGE})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "peterrec"
    testing.export_toy_model(str(path), 1)
    return str(path)


def test_the_early_ports_serve_the_model_once_the_server_adopts_them(base):
    early, early_rest = EarlyGrpc("127.0.0.1", 0), EarlyRest("127.0.0.1", 0)
    try:
        assert status_call(early.port) == (grpc.StatusCode.UNAVAILABLE, STARTING_MESSAGE)
        assert rest_status(early_rest.port)[0] == 503
        server = Server(model_config=[model_config.ModelEntry("peterrec", base)], grpc_port=None, rest_port=None,
                        poll_seconds=0, early_grpc=early, early_rest=early_rest)
    except BaseException:
        early.stop()
        early_rest.stop()
        raise
    with server:
        assert (server.grpc_port, server.rest_port) == (early.port, early_rest.port)
        code, answer = status_call(early.port)
        assert code == grpc.StatusCode.OK and AVAILABLE in answer
        status, body = rest_status(early_rest.port)
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        with grpc.insecure_channel(server.grpc_target) as channel:  # unknown methods: as without the early port
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary("/tensorflow.serving.ModelService/NoSuchMethod")(b"", timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
