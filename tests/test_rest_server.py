"""TF Serving's REST API over loopback: status, metadata, predict (rows and columns) for every
signature kind, classify, versions and labels, metrics."""

import base64
import json
import urllib.request

import numpy as np
import pytest

from peterrec.serving import model_config, testing
from peterrec.serving.server import Server

ROWS = [["i1", "i2", "i3"], ["i4", "unknown-item"]]  # ragged: the server pads with ""
SIGNATURES = ["genre", "shop", "embed", "next_items"]  # the predict signatures; genre also has genre_classify


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("rest") / "peterrec"
    return str(base), {v: testing.export_toy_model(str(base), v) for v in (1, 2)}


@pytest.fixture(scope="module")
def server(models):
    base, _ = models
    entry = model_config.ModelEntry("peterrec", base, policy="all", labels={"stable": 1, "canary": 2})
    with Server(model_config=[entry], grpc_port=None, rest_port=0, poll_seconds=0,
                monitoring=model_config.MonitoringConfig()) as running:
        yield running


def _call(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.rest_url + path, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.headers["Content-Type"].startswith("application/json")
        return json.loads(answer.read())


def _as_expected(value, expected):
    if expected.dtype == object:
        assert value == [v.decode() for v in expected.tolist()] if expected.ndim == 1 else \
            [[v.decode() for v in row] for row in expected.tolist()]
    else:
        np.testing.assert_allclose(np.asarray(value, dtype=np.float64), expected, rtol=1e-5, atol=1e-5)


def test_binds_loopback_and_reports_its_port(server):
    assert server.rest_url.startswith("http://127.0.0.1:") and server.rest_port > 0


def test_model_status(server):
    answer = _call(server, "/v1/models/peterrec")
    assert answer == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
    ]}
    assert [s["version"] for s in _call(server, "/v1/models/peterrec/versions/1")["model_version_status"]] == ["1"]
    assert [s["version"] for s in _call(server, "/v1/models/peterrec/labels/canary")["model_version_status"]] == ["2"]


def test_metadata(server):
    answer = _call(server, "/v1/models/peterrec/metadata")
    assert answer["model_spec"] == {"name": "peterrec", "signature_name": "", "version": "2"}
    definitions = answer["metadata"]["signature_def"]["signature_def"]
    assert sorted(definitions) == sorted(SIGNATURES + ["genre_classify"])
    assert definitions["genre"]["inputs"]["items"]["dtype"] == "DT_STRING"
    assert _call(server, "/v1/models/peterrec/labels/stable/metadata")["model_spec"]["version"] == "1"


@pytest.mark.parametrize("signature", SIGNATURES)
def test_predict_columnar_for_every_signature(server, models, signature):
    _, toy = models
    expected = toy[2].reference(signature, ROWS)
    answer = _call(server, "/v1/models/peterrec:predict", {"signature_name": signature, "inputs": {"items": ROWS}})
    outputs = answer["outputs"]
    if len(expected) == 1:  # TF Serving answers one output with the bare value
        outputs = {next(iter(expected)): outputs}
    assert sorted(outputs) == sorted(expected)
    for name, value in expected.items():
        _as_expected(outputs[name], value)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_predict_rows_for_every_signature(server, models, signature):
    _, toy = models
    expected = toy[1].reference(signature, ROWS)
    answer = _call(server, "/v1/models/peterrec/versions/1:predict", {"signature_name": signature, "instances": ROWS})
    predictions = answer["predictions"]
    assert len(predictions) == len(ROWS)
    for name, value in expected.items():
        column = [row if len(expected) == 1 else row[name] for row in predictions]
        _as_expected(column, value)


def test_instances_as_objects_and_b64_strings(server, models):
    _, toy = models
    instances = [{"items": [{"b64": base64.b64encode(item.encode()).decode()} for item in row]} for row in ROWS]
    answer = _call(server, "/v1/models/peterrec/labels/stable:predict", {"signature_name": "embed",
                                                                         "instances": instances})
    _as_expected(answer["predictions"], toy[1].reference("embed", ROWS)["embedding"])


def test_classify(server, models):
    _, toy = models
    answer = _call(server, "/v1/models/peterrec:classify",
                   {"signature_name": "genre_classify", "examples": [{"items": row} for row in ROWS]})
    expected = toy[2].reference("genre", ROWS)
    for row, result in enumerate(answer["results"]):
        assert [label for label, _ in result] == [c.decode() for c in expected["classes"][row]]
        np.testing.assert_allclose([score for _, score in result], expected["probabilities"][row], rtol=1e-5)


def test_prometheus_metrics_count_requests(server):
    _call(server, "/v1/models/peterrec:predict", {"signature_name": "embed", "inputs": [["i1"]]})
    with urllib.request.urlopen(server.rest_url + model_config.DEFAULT_METRICS_PATH, timeout=30) as answer:
        text = answer.read().decode()
    line = [l for l in text.splitlines()
            if l.startswith(':tensorflow:serving:request_count{model_name="peterrec",signature_name="embed",status="OK"}')]
    assert line and int(line[0].split()[-1]) >= 1
    assert ':tensorflow:serving:loaded_versions{model_name="peterrec"} 2' in text


def test_keep_alive_connection_serves_several_requests(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    body = json.dumps({"signature_name": "embed", "inputs": [["i1"]]})
    for _ in range(3):
        connection.request("POST", "/v1/models/peterrec:predict", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        assert answer.status == 200 and len(json.loads(answer.read())["outputs"][0]) == 8
    connection.close()


def test_json_inputs_are_typed_by_the_signature():
    from tensorflow.core.framework import types_pb2

    from peterrec.serving import errors
    from peterrec.serving.servable import TensorInfo
    from peterrec.serving.rest_json import json_to_array

    strings3 = TensorInfo(types_pb2.DT_STRING, (-1, -1, -1))
    assert json_to_array([[["a"], ["b", "c"]]], strings3, "x").tolist() == [[[b"a", b""], [b"b", b"c"]]]
    with pytest.raises(errors.ServingError, match="ragged in dimension 1"):
        json_to_array([[["a"], ["b"]], [["c"]]], strings3, "x")
    floats = TensorInfo(types_pb2.DT_FLOAT, (-1, 2))
    assert json_to_array([[1, 2.5]], floats, "x").dtype == np.float32
    with pytest.raises(errors.ServingError, match="not a rectangular"):
        json_to_array([[1, 2], [3]], floats, "x")
    with pytest.raises(errors.ServingError, match="expects float32 numbers"):
        json_to_array([["1", 2]], floats, "x")
    with pytest.raises(errors.ServingError, match="integers"):
        json_to_array([[1.5, 2]], TensorInfo(types_pb2.DT_INT64, (-1, 2)), "x")
