"""Start-up order of ``peterrec serve``: the gRPC port answers before TensorFlow is imported and
before the model server exists; the same port then serves the models (issue 14, part 5).

Only the order is asserted, never a duration."""

import argparse
import subprocess
import sys

import grpc
import pytest

from peterrec.serving import cli, model_config, testing
from peterrec.serving.grpc_ports import STARTING_MESSAGE, EarlyGrpc
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


def test_the_serve_command_and_the_early_port_import_no_tensorflow():
    code = ("import sys, peterrec.serving.cli, peterrec.serving.grpc_ports, peterrec.serving.limits; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_answers_on_its_port_before_the_server_is_built(monkeypatch):
    seen = {}

    def held_build_server(args, early_grpc=None):
        # build_server is where TensorFlow gets imported: the port must answer already.
        seen["answer"] = status_call(early_grpc.port)
        raise ValueError("held: no server is built in this test")

    monkeypatch.setattr(cli, "build_server", held_build_server)
    args = argparse.Namespace(host="127.0.0.1", port=0, max_rows=1024, log_level="WARNING")
    assert cli._serve(args) == 1  # the ValueError ends the command, which closes the port
    assert seen["answer"] == (grpc.StatusCode.UNAVAILABLE, STARTING_MESSAGE)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("startup") / "peterrec"
    testing.export_toy_model(str(path), 1)
    return str(path)


def test_the_early_port_serves_the_model_once_the_server_adopts_it(base):
    early = EarlyGrpc("127.0.0.1", 0)
    try:
        assert status_call(early.port) == (grpc.StatusCode.UNAVAILABLE, STARTING_MESSAGE)
        server = Server(model_config=[model_config.ModelEntry("peterrec", base)], grpc_port=None, rest_port=None,
                        poll_seconds=0, early_grpc=early)
    except BaseException:
        early.stop()
        raise
    with server:
        assert server.grpc_port == early.port
        code, answer = status_call(early.port)
        assert code == grpc.StatusCode.OK and AVAILABLE in answer
        with grpc.insecure_channel(server.grpc_target) as channel:  # unknown methods: as without the early port
            with pytest.raises(grpc.RpcError) as raised:
                channel.unary_unary("/tensorflow.serving.ModelService/NoSuchMethod")(b"", timeout=30)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
