"""Nothing a client sends can break the server: a matrix of bad requests over gRPC and REST,
each answered with a clear INVALID_ARGUMENT / NOT_FOUND (400 / 404...), then good requests
still work."""

import json
import socket
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from peterrec.serving import model_config, tensors, testing
from peterrec.serving.client import Client
from peterrec.serving.prediction import RequestLimits
from peterrec.serving.server import Server

LIMITS = RequestLimits(max_rows=16, max_elements=4096, max_body_bytes=64 << 10)
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
FAILED = grpc.StatusCode.FAILED_PRECONDITION


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("errors") / "peterrec"
    return str(base), testing.export_toy_model(str(base), 1)


@pytest.fixture(scope="module")
def server(toy):
    base, _ = toy
    entry = model_config.ModelEntry("peterrec", base, labels={"stable": 1, "canary": 5})
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0, limits=LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    opened = grpc.insecure_channel(server.grpc_target)
    yield opened
    opened.close()


def _items(rows):
    return tensors.ndarray_to_tensor_proto(tensors.string_array(rows))


def _predict(model="peterrec", signature="embed", inputs=None, version=None, label=None, output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for name, proto in ({"items": _items([["i1", "i2"]])} if inputs is None else inputs).items():
        request.inputs[name].CopyFrom(proto)
    request.output_filter.extend(output_filter)
    return request


def _float_tensor():
    return tensors.ndarray_to_tensor_proto(np.zeros((1, 2), np.float32))


def _strings_with_shape(shape, values):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    proto.string_val.extend(values)
    return proto


def _unknown_rank():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.unknown_rank = True
    proto.string_val.append(b"i1")
    return proto


GRPC_PREDICT_CASES = {
    "unknown model": (_predict(model="nope"), NOT_FOUND, "model 'nope' is not served"),
    "empty model name": (_predict(model=""), INVALID, "names no model"),
    "unknown version": (_predict(version=9), NOT_FOUND, "no loaded version 9"),
    "unknown label": (_predict(label="beta"), NOT_FOUND, "no version label 'beta'"),
    "label of a missing version": (_predict(label="canary"), NOT_FOUND, "points at version 5"),
    "unknown signature": (_predict(signature="nope"), FAILED, 'Serving signature key "nope" not found.'),
    "default signature absent": (_predict(signature=""), FAILED, '"serving_default" not found'),
    "no inputs": (_predict(inputs={}), INVALID, "missing input"),
    "unexpected input": (_predict(inputs={"items": _items([["i1"]]), "user": _items([["u"]])}), INVALID,
                         "no input 'user'"),
    "misnamed input": (_predict(inputs={"item": _items([["i1"]])}), INVALID, "no input 'item'"),
    "wrong dtype": (_predict(inputs={"items": _float_tensor()}), INVALID, "must be string, got float32"),
    "wrong rank": (_predict(inputs={"items": _items(["i1", "i2"])}), INVALID, "must have rank 2"),
    "scalar": (_predict(inputs={"items": _strings_with_shape([], [b"i1"])}), INVALID, "rank 2"),
    "empty sequence": (_predict(inputs={"items": _strings_with_shape([1, 0], [])}), INVALID, "is empty"),
    "no rows": (_predict(inputs={"items": _strings_with_shape([0, 3], [])}), INVALID, "is empty"),
    "too many rows": (_predict(inputs={"items": _items([["i1"]] * 17)}), INVALID, "the limit is 16"),
    "too many elements": (_predict(inputs={"items": _items([["i1"] * 5000])}), INVALID, "the limit is 4096"),
    "huge declared shape": (_predict(inputs={"items": _strings_with_shape([100000, 100000], [b"x"])}), INVALID,
                            "the limit is 4096"),
    "values do not fill the shape": (_predict(inputs={"items": _strings_with_shape([2, 2], [b"a", b"b", b"c"])}),
                                     INVALID, "holds 3 strings"),
    "negative dimension": (_predict(inputs={"items": _strings_with_shape([-1, 2], [b"a", b"b"])}), INVALID,
                           "negative dimension"),
    "unknown rank": (_predict(inputs={"items": _unknown_rank()}), INVALID, "unknown rank"),
    "unknown output filter": (_predict(output_filter=["nope"]), INVALID, "output_filter names ['nope']"),
}


@pytest.mark.parametrize("case", sorted(GRPC_PREDICT_CASES))
def test_bad_predict_requests_get_a_clear_status(channel, case):
    request, code, text = GRPC_PREDICT_CASES[case]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == code, raised.value.details()
    assert text in raised.value.details()


def _classify(signature="genre_classify", examples=None):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = signature
    for features in examples if examples is not None else [{"items": [b"i1"]}]:
        example = request.input.example_list.examples.add()
        for key, value in features.items():
            if isinstance(value[0], float):
                example.features.feature[key].float_list.value.extend(value)
            else:
                example.features.feature[key].bytes_list.value.extend(value)
    return request


def test_bad_requests_to_the_other_methods(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    cases = [
        (stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(), INVALID, "metadata_field"),
        (stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"]), INVALID,
         "unknown metadata_field"),
        (stub.Classify, _classify(signature="shop"), INVALID,
         "Expected classification signature method_name to be tensorflow/serving/classify"),
        (stub.Classify, _classify(signature="nope"), INVALID, "No signature was found with the name: nope"),
        (stub.Classify, _classify(examples=[]), INVALID, "no examples"),
        (stub.Classify, _classify(examples=[{"items": [1.0]}]), INVALID, "rejected the input"),
        (stub.Regress, regression_pb2.RegressionRequest(), grpc.StatusCode.UNIMPLEMENTED, "Regress"),
        (models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(), INVALID, "names no model"),
    ]
    for method, request, code, text in cases:
        if hasattr(request, "model_spec") and not request.model_spec.name and method != models.GetModelStatus:
            request.model_spec.name = "peterrec"
        with pytest.raises(grpc.RpcError) as raised:
            method(request, timeout=30)
        assert raised.value.code() == code and text in raised.value.details(), (text, raised.value.details())
    unknown = get_model_status_pb2.GetModelStatusRequest()
    unknown.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as raised:
        models.GetModelStatus(unknown, timeout=30)
    assert raised.value.code() == NOT_FOUND


def test_a_bad_config_reload_keeps_the_served_config(channel, server):
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.model_config_list.config.add(name="a", base_path="/x")
    reload.config.model_config_list.config.add(name="a", base_path="/y")
    with pytest.raises(grpc.RpcError) as raised:
        models.HandleReloadConfigRequest(reload, timeout=30)
    assert raised.value.code() == INVALID and "more than once" in raised.value.details()
    assert server.manager.model_names() == ["peterrec"]


def test_garbage_bytes_do_not_break_the_server(channel):
    for method in ("/tensorflow.serving.PredictionService/Predict", "/tensorflow.serving.ModelService/GetModelStatus",
                   "/tensorflow.serving.PredictionService/NoSuchMethod"):
        raw = channel.unary_unary(method, request_serializer=lambda x: x, response_deserializer=lambda x: x)
        with pytest.raises(grpc.RpcError) as raised:
            raw(b"\xff\xfe\x00garbage", timeout=30)
        assert raised.value.code() != grpc.StatusCode.OK


def _http(server, method, path, body=None, raw=None, headers=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(server.rest_url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


PREDICT = "/v1/models/peterrec:predict"
REST_CASES = {
    "unknown path": ("GET", "/v2/whatever", None, None, 404, "no such resource"),
    "unknown model": ("GET", "/v1/models/nope", None, None, 404, "not served"),
    "unknown model predict": ("POST", "/v1/models/nope:predict", {"inputs": [["i1"]]}, None, 404, "not served"),
    "bad version": ("GET", "/v1/models/peterrec/versions/abc", None, None, 400, "must be an integer"),
    "unknown version": ("POST", "/v1/models/peterrec/versions/9:predict", {"inputs": [["i1"]]}, None, 404,
                        "no loaded version 9"),
    "unknown label": ("GET", "/v1/models/peterrec/labels/beta/metadata", None, None, 404, "no version label"),
    "GET on predict": ("GET", PREDICT, None, None, 405, "use POST"),
    "POST on status": ("POST", "/v1/models/peterrec", {"x": 1}, None, 405, "use GET"),
    "DELETE": ("DELETE", "/v1/models/peterrec", None, None, 405, "not allowed"),
    "malformed JSON": ("POST", PREDICT, None, b"{not json", 400, "malformed JSON"),
    "not UTF-8": ("POST", PREDICT, None, b"\xff\xfe", 400, "malformed JSON"),
    "JSON not an object": ("POST", PREDICT, [1, 2], None, 400, "must be an object"),
    "neither instances nor inputs": ("POST", PREDICT, {"signature_name": "embed"}, None, 400, "exactly one of"),
    "both instances and inputs": ("POST", PREDICT, {"signature_name": "embed", "instances": [["i1"]],
                                                    "inputs": [["i1"]]}, None, 400,
                                  "exactly one of"),
    "empty instances": ("POST", PREDICT, {"signature_name": "embed", "instances": []}, None, 400, "non-empty"),
    "instances not a list": ("POST", PREDICT, {"signature_name": "embed", "instances": "i1"}, None, 400,
                             "non-empty list"),
    "unknown signature": ("POST", PREDICT, {"signature_name": "nope", "inputs": [["i1"]]}, None, 400,
                          'Serving signature key "nope" not found.'),
    "signature name not a string": ("POST", PREDICT, {"signature_name": 3, "inputs": [["i1"]]}, None, 400,
                                    "must be a string"),
    "numbers for strings": ("POST", PREDICT, {"signature_name": "embed", "inputs": [[1, 2]]}, None, 400,
                            "expects strings"),
    "null item": ("POST", PREDICT, {"signature_name": "embed", "inputs": [["i1", None]]}, None, 400,
                  "expects strings"),
    "wrong rank": ("POST", PREDICT, {"signature_name": "embed", "inputs": ["i1", "i2"]}, None, 400, "rank 2"),
    "too deep": ("POST", PREDICT, {"signature_name": "embed", "inputs": [[["i1"]]]}, None, 400, "rank 2"),
    "ragged and too deep": ("POST", PREDICT, {"signature_name": "embed", "inputs": [[["a"], ["b"]], [["c"]]]},
                            None, 400, "rank 2"),
    "mixed nesting": ("POST", PREDICT, {"signature_name": "embed", "inputs": [["a"], "b"]}, None, 400,
                      "mixes lists"),
    "empty rows": ("POST", PREDICT, {"signature_name": "embed", "inputs": [[]]}, None, 400, "is empty"),
    "too many rows": ("POST", PREDICT, {"signature_name": "embed", "inputs": [["i1"]] * 17}, None, 400,
                      "the limit is 16"),
    "bad base64": ("POST", PREDICT, {"signature_name": "embed", "inputs": [[{"b64": "%%%"}]]}, None, 400,
                   "bad base64"),
    "unknown input name": ("POST", PREDICT, {"signature_name": "embed", "inputs": {"user": [["u"]]}}, None, 400,
                           "no input 'user'"),
    "instances objects with different keys": ("POST", PREDICT, {"signature_name": "embed", "instances": [
        {"items": ["i1"]}, {"other": ["i2"]}]}, None, 400, "same inputs"),
    "classify a cold-start task": ("POST", "/v1/models/peterrec:classify",
                                   {"signature_name": "shop", "examples": [{"items": ["i1"]}]}, None, 400,
                                   "Expected classification signature method_name"),
    "classify a feature of the wrong type": ("POST", "/v1/models/peterrec:classify",
                                             {"signature_name": "genre_classify", "examples": [{"items": [1.5]}]},
                                             None, 400, "rejected the input"),
    "classify without examples": ("POST", "/v1/models/peterrec:classify", {"signature_name": "genre"}, None, 400,
                                  "examples"),
    "regress": ("POST", "/v1/models/peterrec:regress", {"examples": []}, None, 501, "regress"),
    "deeply nested JSON": ("POST", PREDICT, None, b'{"inputs": ' + b"[" * 30000 + b"]" * 30000 + b"}", 400,
                           "nested too deeply"),
    "nested just within the JSON parser": ("POST", PREDICT, None, b'{"signature_name": "embed", "inputs": '
                                           + b"[" * 900 + b'"a"' + b"]" * 900 + b"}", 400, "rank 2"),
    "body too large": ("POST", PREDICT, None, b" " * (65 << 10), 413, "exceeds the limit"),
}


@pytest.mark.parametrize("case", sorted(REST_CASES))
def test_bad_rest_requests_get_a_clear_json_error(server, case):
    method, path, body, raw, status, text = REST_CASES[case]
    code, answer = _http(server, method, path, body, raw)
    assert code == status, answer
    assert set(answer) == {"error"} and text in answer["error"], answer


def _raw_http(server, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as connection:
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_broken_http_framing_is_answered(server):
    no_length = _raw_http(server, b"POST /v1/models/peterrec:predict HTTP/1.1\r\nHost: x\r\n\r\n{}")
    assert no_length.startswith(b"HTTP/1.1 411") and b"Content-Length" in no_length
    truncated = _raw_http(server, b"POST /v1/models/peterrec:predict HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 100\r\n\r\n{\"inputs\"")
    assert truncated.startswith(b"HTTP/1.1 400") and b"ended after" in truncated
    bad_length = _raw_http(server, b"POST /v1/models/peterrec:predict HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: -5\r\n\r\n")
    assert bad_length.startswith(b"HTTP/1.1 400")
    nonsense = _raw_http(server, b"\x00\x01 garbage \r\n\r\n")
    assert nonsense.startswith(b"HTTP/1.") and b" 400 " in nonsense.split(b"\r\n")[0]
    assert b'{"error":' in nonsense
    head = _raw_http(server, b"HEAD /v1/models/peterrec HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and b'{"error":' not in head  # a HEAD answer has no body
    brew = _raw_http(server, b"BREW /v1/models/peterrec HTTP/1.1\r\nHost: x\r\n\r\n")
    assert brew.startswith(b"HTTP/1.1 405") and b"BREW is not allowed" in brew


def test_the_server_still_answers_after_every_bad_request(server, toy):
    _, model = toy
    rows = [["i1", "i2"], ["\udcff-not-utf8".encode("utf-8", "surrogateescape").decode("latin-1")]]
    for rest in (False, True):
        target = server.rest_url if rest else server.grpc_target
        with Client(target, rest=rest) as client:
            np.testing.assert_allclose(client.embed(rows[0]), model.reference("embed", rows[:1])["embedding"][0],
                                       atol=1e-5)
            assert client.embed(rows).shape == (2, 8)  # odd item ids are just unknown items
            assert client.status()[0]["state"] == "AVAILABLE"


def test_a_taken_port_is_a_clear_error(server, toy):
    base, _ = toy
    entry = model_config.ModelEntry("peterrec", base)
    for ports in ({"grpc_port": server.grpc_port, "rest_port": None},
                  {"grpc_port": None, "rest_port": server.rest_port}):
        with pytest.raises(OSError):
            Server(model_config=[entry], poll_seconds=0, warmup=False, **ports).start()
