"""The gRPC API over loopback: every signature kind, versions and labels, metadata, Classify,
model status, config reloads, batching of concurrent requests, and a hot reload under load."""

import os
import threading

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from peterrec.serving import model_config, signatures, tensors, testing
from peterrec.serving.batching import BatchingOptions
from peterrec.serving.client import Client
from peterrec.serving.server import Server

ROWS = [["i1", "i2", "i3"], ["i4", "unknown-item", ""]]
SIGNATURES = ["genre", "shop", "embed", "next_items"]  # the predict signatures; genre also has genre_classify


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("grpc") / "peterrec"
    return str(base), {v: testing.export_toy_model(str(base), v) for v in (1, 2)}


@pytest.fixture(scope="module")
def server(models):
    base, _ = models
    entry = model_config.ModelEntry("peterrec", base, policy="all", labels={"stable": 1, "canary": 2})
    with Server(model_config=[entry], grpc_port=0, rest_port=None, poll_seconds=0) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _request(signature, rows=ROWS, version=None, label=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    padded = signatures.pad_item_rows(rows)
    request.inputs["items"].CopyFrom(tensors.ndarray_to_tensor_proto(tensors.string_array(padded)))
    return request


def _assert_matches(outputs, expected):
    assert sorted(outputs) == sorted(expected)
    for key, value in expected.items():
        got = tensors.tensor_proto_to_ndarray(outputs[key]) if not isinstance(outputs[key], np.ndarray) else outputs[key]
        if value.dtype == object:
            assert got.tolist() == value.tolist(), key
        else:
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-5, err_msg=key)


def _listening_addresses(port):
    """Local addresses of the sockets listening on ``port`` (hex, as /proc/net/tcp[6] writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).read().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_binds_loopback_on_the_port_it_reports(server):
    assert server.host == "127.0.0.1" and server.grpc_port > 0
    if not os.path.exists("/proc/net/tcp"):
        pytest.skip("no /proc/net/tcp to read listening sockets from")
    addresses = _listening_addresses(server.grpc_port)
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, also as IPv4-mapped IPv6
    assert addresses and addresses <= loopback, addresses


@pytest.mark.parametrize("signature", SIGNATURES)
def test_predict_round_trip_for_every_signature(stub, models, signature):
    _, toy = models
    response = stub.Predict(_request(signature), timeout=30)
    assert (response.model_spec.name, response.model_spec.version.value) == ("peterrec", 2)
    assert response.model_spec.signature_name == signature
    _assert_matches(response.outputs, toy[2].reference(signature, ROWS))


@pytest.mark.parametrize("version, label, expected", [(1, None, 1), (2, None, 2), (None, "stable", 1),
                                                      (None, "canary", 2)])
def test_versions_and_labels_route_to_their_version(stub, models, version, label, expected):
    _, toy = models
    response = stub.Predict(_request("embed", version=version, label=label), timeout=30)
    assert response.model_spec.version.value == expected
    _assert_matches(response.outputs, toy[expected].reference("embed", ROWS))


def test_output_filter(stub):
    request = _request("genre")
    request.output_filter.append("label")
    assert list(stub.Predict(request, timeout=30).outputs) == ["label"]


def test_get_model_metadata_lists_every_signature(stub):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "peterrec"
    response = stub.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 2
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    assert sorted(signature_map.signature_def) == sorted(SIGNATURES + ["genre_classify"])
    for name, definition in signature_map.signature_def.items():
        key = "inputs" if signatures.is_classify_signature(name) else "items"
        assert tensors.dtype_name(definition.inputs[key].dtype) == "string"


def test_classify_answers_every_class_with_its_probability(stub, models):
    _, toy = models
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "peterrec"
    request.model_spec.signature_name = "genre_classify"
    for row in ROWS:
        example = request.input.example_list.examples.add()
        example.features.feature["items"].bytes_list.value.extend(item.encode() for item in row if item)
    response = stub.Classify(request, timeout=30)
    expected = toy[2].reference("genre", ROWS)
    for row, classifications in enumerate(response.result.classifications):
        assert [c.label.encode() for c in classifications.classes] == expected["classes"][row].tolist()
        np.testing.assert_allclose([c.score for c in classifications.classes], expected["probabilities"][row],
                                   rtol=1e-5)


def test_model_status_and_config_reload(server, models):
    base, _ = models
    channel = grpc.insecure_channel(server.grpc_target)
    models_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "peterrec"
    states = {s.version: s.state for s in models_stub.GetModelStatus(request, timeout=30).model_version_status}
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert states == {1: available, 2: available}

    original = server.manager.config
    reload = model_management_pb2.ReloadConfigRequest()
    reload.config.CopyFrom(original)
    reload.config.model_config_list.config.append(model_config.ModelEntry("second", base).to_proto())
    response = models_stub.HandleReloadConfigRequest(reload, timeout=60)
    assert response.status.error_code == 0
    request.model_spec.name = "second"
    assert [s.version for s in models_stub.GetModelStatus(request, timeout=30).model_version_status] == [2]
    with Client(server.grpc_target, model_name="second") as client:
        assert client.embed(ROWS[0]).shape == (8,)
    reload.config.CopyFrom(original)
    models_stub.HandleReloadConfigRequest(reload, timeout=60)
    with pytest.raises(grpc.RpcError) as raised:
        models_stub.GetModelStatus(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    channel.close()


def test_concurrent_requests_are_batched_and_each_caller_gets_its_rows(models):
    base, toy = models
    count = 12  # one row each
    # The batch closes when full, i.e. exactly when all the requests have arrived (the timeout is a safety net).
    batching = BatchingOptions(max_batch_size=count, batch_timeout_micros=60_000_000, num_batch_threads=1)
    entry = model_config.ModelEntry("peterrec", base)
    rows = [[[f"i{(n * 7 + j) % 30}" for j in range(1 + n % 4)]] for n in range(count)]
    with Server(model_config=[entry], grpc_port=0, rest_port=None, poll_seconds=0, batching=batching) as running:
        runner = running.manager.resolve("peterrec").signature("embed")
        calls_before = runner.calls
        results = [None] * count
        barrier = threading.Barrier(count)
        clients = [Client(running.grpc_target) for _ in range(count)]

        def call(n):
            barrier.wait()
            results[n] = clients[n].embed(rows[n])

        threads = [threading.Thread(target=call, args=(n,)) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for client in clients:
            client.close()
        assert runner.calls - calls_before == 1
    for n in range(count):
        np.testing.assert_allclose(results[n], toy[2].reference("embed", rows[n])["embedding"], atol=1e-5)


def test_hot_reload_under_concurrent_requests_fails_nothing(tmp_path, models):
    source, toy = models
    base = str(tmp_path / "peterrec")
    import shutil

    shutil.copytree(os.path.join(source, "1"), os.path.join(base, "1"))
    entry = model_config.ModelEntry("peterrec", base)  # latest 1: version 1 goes when 2 arrives
    reference = {v: toy[v].reference("embed", ROWS)["embedding"] for v in (1, 2)}
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0.1) as running:
        stop = threading.Event()
        progress = threading.Condition()  # notified whenever a worker records an answer
        seen = {name: [] for name in ("grpc0", "grpc1", "grpc2", "rest")}  # versions answered, in order
        failures = []

        def record(name, version):
            with progress:
                seen[name].append(version)
                progress.notify_all()

        def grpc_worker(name):
            channel = grpc.insecure_channel(running.grpc_target)
            worker_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.wait(0.005):  # paces the requests; stops at once when told
                try:
                    response = worker_stub.Predict(_request("embed"), timeout=30)
                    version = response.model_spec.version.value
                    got = tensors.tensor_proto_to_ndarray(response.outputs["embedding"])
                    if not np.allclose(got, reference[version], atol=1e-5):
                        failures.append(f"{name}: wrong answer for version {version}")
                    record(name, version)
                except Exception as error:  # every failure counts
                    failures.append(f"{name}: {error}")
            channel.close()

        def rest_worker(name):
            client = Client(running.rest_url, rest=True)
            while not stop.wait(0.005):  # paces the requests; stops at once when told
                try:
                    got = client.embed(ROWS)
                    version = 1 if np.allclose(got, reference[1], atol=1e-5) else 2
                    if not np.allclose(got, reference[version], atol=1e-5):
                        failures.append(f"{name}: answer from no known version")
                    record(name, version)
                except Exception as error:
                    failures.append(f"{name}: {error}")

        workers = [threading.Thread(target=grpc_worker, args=(f"grpc{n}",)) for n in range(3)]
        workers.append(threading.Thread(target=rest_worker, args=("rest",)))
        for worker in workers:
            worker.start()
        with progress:
            assert progress.wait_for(lambda: all(len(v) >= 3 for v in seen.values()), 60), \
                "workers did not get going"
        testing.export_toy_model(base, 2)

        def switched():
            states = {s.version: s.state for s in running.manager.status("peterrec")}
            return states.get(1) == "END" and all(v and v[-1] == 2 for v in seen.values())

        with progress:  # every worker is on version 2 and version 1 is gone
            assert progress.wait_for(switched, 60), "the workers did not all move to version 2"
            after = {name: len(versions) for name, versions in seen.items()}
            # ... and each answers three more requests after that (none may go back to version 1)
            assert progress.wait_for(lambda: all(len(seen[n]) >= after[n] + 3 for n in seen), 60)
        stop.set()
        for worker in workers:
            worker.join(60)
        with Client(running.grpc_target) as client:
            status = {s["version"]: s["state"] for s in client.status()}
    assert failures == []
    assert status == {2: "AVAILABLE", 1: "END"}
    for name, versions in seen.items():
        assert versions[0] == 1 and versions[-1] == 2, name
        first_two = versions.index(2)
        assert set(versions[first_two:]) == {2}, f"{name} went back to version 1"
