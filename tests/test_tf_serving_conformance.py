"""Where the server must answer exactly as TF Serving does (issue 12): status codes and wording
a client written against ``tensorflow_model_server`` relies on."""

import json
import logging
import socket
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

from peterrec.serving import model_config, servable, signatures, tensors, testing
from peterrec.serving.client import Client
from peterrec.serving import model_manager as mm
from peterrec.serving.grpc_payloads import RateLimitedLog
from peterrec.serving.server import Server


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    base = tmp_path_factory.mktemp("conformance") / "peterrec"
    return str(base), testing.export_toy_model(str(base), 1)


@pytest.fixture(scope="module")
def server(toy):
    base, _ = toy
    entry = model_config.ModelEntry("peterrec", base, labels={"stable": 1})
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    opened = grpc.insecure_channel(server.grpc_target)
    yield opened
    opened.close()


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_unknown_signature_is_failed_precondition_with_tf_servings_wording(channel, server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = "nope"
    request.inputs["items"].CopyFrom(tensors.ndarray_to_tensor_proto(tensors.string_array([["i1"]])))
    with pytest.raises(grpc.RpcError) as raised:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert raised.value.details().startswith('Serving signature key "nope" not found.')

    status, body = _post(server.rest_url + "/v1/models/peterrec:predict",
                         {"signature_name": "nope", "instances": [["i1"]]})
    assert status == 400
    assert body["error"].startswith('Serving signature key "nope" not found.')


def _reload(channel, request, timeout=60):
    return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=timeout)


def test_an_empty_reload_config_takes_no_action(channel, server):
    before = server.manager.config
    assert _reload(channel, model_management_pb2.ReloadConfigRequest()).status.error_code == 0
    empty_config = model_management_pb2.ReloadConfigRequest()
    empty_config.config.SetInParent()  # a config message with none of its choices set
    assert _reload(channel, empty_config).status.error_code == 0
    assert server.manager.model_names() == ["peterrec"]
    assert server.manager.available_versions("peterrec") == [1]
    assert server.manager.config is before


def test_garbage_payloads_write_one_short_log_line(channel, caplog):
    raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                              request_serializer=lambda x: x, response_deserializer=lambda x: x)
    with caplog.at_level(logging.DEBUG):
        for _ in range(50):
            with pytest.raises(grpc.RpcError) as raised:
                raw(b"\xff\xfe\x00garbage", timeout=30)
            assert raised.value.code() == grpc.StatusCode.INTERNAL
    lines = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    assert "malformed gRPC payload" in lines[0].getMessage() and lines[0].exc_info is None


def test_the_malformed_payload_log_counts_what_it_held_back(caplog):
    now = [0.0]
    log = RateLimitedLog(interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="peterrec.serving"):
        written = [log.report("bad payload") for _ in range(5)]
        now[0] = 10.5
        written.append(log.report("bad payload"))
    assert written == [True, False, False, False, False, True]
    assert "4 more since the last such line" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2 and log.total == 6


def _counting_loads(monkeypatch, before=None):
    """Replaces the manager's loader by one that records each load (and first calls ``before``)."""
    calls = []
    real = mm.load_servable

    def load(*args, **kwargs):
        calls.append(args)
        if before is not None:
            before()
        return real(*args, **kwargs)

    monkeypatch.setattr(mm, "load_servable", load)
    return calls


def test_a_busy_port_fails_before_any_model_loads(server, toy, monkeypatch):
    base, _ = toy
    calls = _counting_loads(monkeypatch)
    entry = model_config.ModelEntry("peterrec", base)
    for ports, port in (({"grpc_port": server.grpc_port, "rest_port": 0}, server.grpc_port),
                        ({"grpc_port": 0, "rest_port": server.rest_port}, server.rest_port)):
        with pytest.raises(OSError, match=f":{port}\\b"):
            Server(model_config=[entry], poll_seconds=0, warmup=False, **ports).start()
    assert calls == []


def test_the_server_answers_while_its_model_loads(toy, monkeypatch):
    base, _ = toy
    entered, release = threading.Event(), threading.Event()

    def hold():
        entered.set()
        assert release.wait(120)

    _counting_loads(monkeypatch, before=hold)
    entry = model_config.ModelEntry("peterrec", base)
    loading = Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0, warmup=False)
    try:
        loading.start(wait=False)
        assert entered.wait(60)
        with grpc.insecure_channel(loading.grpc_target) as opened:
            status = get_model_status_pb2.GetModelStatusRequest()
            status.model_spec.name = "peterrec"
            answer = model_service_pb2_grpc.ModelServiceStub(opened).GetModelStatus(status, timeout=30)
            assert [(s.version, s.state) for s in answer.model_version_status] == [
                (1, get_model_status_pb2.ModelVersionStatus.LOADING)]
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "peterrec"
            request.model_spec.signature_name = "embed"
            request.inputs["items"].CopyFrom(tensors.ndarray_to_tensor_proto(tensors.string_array([["i1"]])))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(opened)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            with urllib.request.urlopen(loading.rest_url + "/v1/models/peterrec", timeout=30) as rest:
                assert json.loads(rest.read())["model_version_status"][0]["state"] == "LOADING"
            release.set()
            assert loading.wait_until_loaded(120)
            assert stub.Predict(request, timeout=30).outputs["embedding"].tensor_shape.dim[0].size == 1
    finally:
        release.set()
        loading.stop()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_host_serves_rest_and_grpc_on_ipv4_and_ipv6(toy, host):
    base, _ = toy
    entry = model_config.ModelEntry("peterrec", base)
    loopbacks = ["127.0.0.1"] + (["[::1]"] if _ipv6_loopback() else [])
    with Server(model_config=[entry], host=host, grpc_port=0, rest_port=0, poll_seconds=0, warmup=False) as running:
        for loopback in loopbacks:
            url = f"http://{loopback}:{running.rest_port}/v1/models/peterrec"
            with urllib.request.urlopen(url, timeout=30) as answer:
                assert json.loads(answer.read())["model_version_status"][0]["state"] == "AVAILABLE"
            with grpc.insecure_channel(f"{loopback}:{running.grpc_port}") as opened:
                status = get_model_status_pb2.GetModelStatusRequest()
                status.model_spec.name = "peterrec"
                stub = model_service_pb2_grpc.ModelServiceStub(opened)
                assert stub.GetModelStatus(status, timeout=30).model_version_status[0].version == 1
    if len(loopbacks) == 1:
        pytest.skip("IPv4 checked; this machine has no IPv6 loopback (::1), so the IPv6 half was not")


ROWS = [["i1", "i2", "i3"], ["i4", "unknown-item"]]


def _classify_request(signature):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = signature
    for row in ROWS:
        example = request.input.example_list.examples.add()
        example.features.feature["items"].bytes_list.value.extend(item.encode() for item in row)
    return request


def _predicted_probabilities(channel):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = "genre"
    padded = signatures.pad_item_rows(ROWS)
    request.inputs["items"].CopyFrom(tensors.ndarray_to_tensor_proto(tensors.string_array(padded)))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    return (tensors.tensor_proto_to_ndarray(response.outputs["classes"], "classes"),
            tensors.tensor_proto_to_ndarray(response.outputs["probabilities"], "probabilities"))


def test_classify_signatures_answer_the_predict_signatures_probabilities(channel, server, toy):
    _, model = toy
    definitions = servable.read_signature_defs(model.path)
    assert definitions["genre_classify"].method_name == "tensorflow/serving/classify"
    assert definitions["genre"].method_name == "tensorflow/serving/predict"
    classes, probabilities = _predicted_probabilities(channel)

    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
        _classify_request("genre_classify"), timeout=30)
    assert response.model_spec.signature_name == "genre_classify"
    for row, result in enumerate(response.result.classifications):
        assert [c.label.encode() for c in result.classes] == classes[row].tolist()
        np.testing.assert_allclose([c.score for c in result.classes], probabilities[row], rtol=0, atol=1e-6)

    status, body = _post(server.rest_url + "/v1/models/peterrec:classify",
                         {"signature_name": "genre_classify", "examples": [{"items": row} for row in ROWS]})
    assert status == 200, body
    for row, result in enumerate(body["results"]):
        assert [label.encode() for label, _ in result] == classes[row].tolist()
        np.testing.assert_allclose([score for _, score in result], probabilities[row], rtol=0, atol=1e-6)


def test_classify_on_a_predict_signature_is_refused_as_tf_serving_refuses_it(channel, server):
    wording = ("Expected classification signature method_name to be tensorflow/serving/classify. "
               "Was: tensorflow/serving/predict")
    with pytest.raises(grpc.RpcError) as raised:
        prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(_classify_request("genre"), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and raised.value.details() == wording
    status, body = _post(server.rest_url + "/v1/models/peterrec:classify",
                         {"signature_name": "genre", "examples": [{"items": ["i1"]}]})
    assert (status, body) == (400, {"error": wording})


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_the_client_classifies_through_the_classify_signature(server, rest):
    runner = server.manager.resolve("peterrec").runners["genre_classify"]
    calls = runner.calls
    with Client(server.rest_url if rest else server.grpc_target, rest=rest) as client:
        answers = client.classify("genre", ROWS)
        by_predict = client._classify_by_predict("genre", ROWS)
    assert runner.calls == calls + 1
    for answer, expected in zip(answers, by_predict):
        assert (answer.label, answer.label_id) == (expected.label, expected.label_id)
        assert list(answer.probabilities) == list(expected.probabilities)
        np.testing.assert_allclose(list(answer.probabilities.values()), list(expected.probabilities.values()),
                                   rtol=0, atol=1e-6)
