"""A bounded fuzz of the server's gRPC and REST APIs (fixed seed, a few hundred requests each).

Valid requests to a served toy model are mutated (wrong dtypes, shapes, huge or negative dims,
bad names and versions, random and non-UTF-8 bytes, flipped and truncated serialized messages;
bad JSON, paths, methods and Content-Lengths) and sent with a raw channel / a raw socket. Every
answer must be clean: a gRPC status other than UNKNOWN, INTERNAL, DEADLINE_EXCEEDED or
UNAVAILABLE (except gRPC's own INTERNAL "Exception deserializing request!" for bytes that are
not the request message), an HTTP status below 500, and no request may hang. At the end the
server must still answer a valid request correctly. A failure lists every bad case with the
exact request to reproduce it.
"""

import json
import random
import socket

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
)

from peterrec.serving import model_config, signatures, tensors, testing
from peterrec.serving.server import Server

SEED = 20261130
GRPC_CASES = 320
REST_CASES = 200
DEADLINE = 10.0  # seconds; an answer slower than this counts as a hang
MODEL = "peterrec"
ITEMS = ["i1", "i2", "i3", "i4"]
DESERIALIZE_FAILURE = "Exception deserializing request!"
BAD_GRPC_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED,
                  grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS, grpc.StatusCode.CANCELLED}
METHODS = {
    "/tensorflow.serving.PredictionService/Predict": predict_pb2.PredictRequest,
    "/tensorflow.serving.PredictionService/Classify": classification_pb2.ClassificationRequest,
    "/tensorflow.serving.PredictionService/GetModelMetadata": get_model_metadata_pb2.GetModelMetadataRequest,
    "/tensorflow.serving.ModelService/GetModelStatus": get_model_status_pb2.GetModelStatusRequest,
}
SIGNATURE_NAMES = ["genre", "genre_classify", "shop", "embed", "next_items", "", "serving_default", "nope",
                   "géné", "a" * 300]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = str(tmp_path_factory.mktemp("fuzz") / MODEL)
    toy = testing.export_toy_model(base, 1)
    entry = model_config.ModelEntry(MODEL, base, labels={"stable": 1})
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0) as running:
        running.toy = toy
        yield running


# ---- gRPC -------------------------------------------------------------------------------

def _spec(rng, spec):
    spec.name = rng.choice([MODEL] * 6 + ["", "other", "peterrec/1", "\u00e9", "x" * 500])
    roll = rng.random()
    if roll < 0.15:
        spec.version.value = rng.choice([0, 1, 2, -1, -(2 ** 63), 2 ** 63 - 1])
    elif roll < 0.3:
        spec.version_label = rng.choice(["stable", "canary", "", "bad label", "\x00"])
    elif roll < 0.35:
        spec.version.value = 1
        spec.version_label = "stable"


def _items_tensor(rng):
    rows = [[rng.choice(ITEMS + ["", "unknown"]) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(1, 3))]
    proto = tensors.ndarray_to_tensor_proto(tensors.string_array(signatures.pad_item_rows(rows)))
    roll = rng.random()
    if roll < 0.1:
        proto.dtype = rng.choice([1, 3, 9, 10, 0, 999])  # float, int32, int64, bool, invalid, unknown
    elif roll < 0.2:
        proto.dtype = 1
        proto.ClearField("string_val")
        proto.float_val.extend([rng.uniform(-1e30, 1e30) for _ in range(rng.randint(0, 6))])
    elif roll < 0.35:
        del proto.tensor_shape.dim[:]
        for _ in range(rng.randint(0, 4)):
            proto.tensor_shape.dim.add().size = rng.choice([0, 1, 2, 3, -1, -7, 2 ** 31, 2 ** 40, 2 ** 62])
    elif roll < 0.45:
        proto.tensor_shape.unknown_rank = True
    elif roll < 0.55:
        proto.string_val.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))))
    elif roll < 0.62:
        proto.tensor_content = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
    elif roll < 0.68:
        proto.ClearField("string_val")
    return proto


def _predict(rng):
    request = predict_pb2.PredictRequest()
    _spec(rng, request.model_spec)
    request.model_spec.signature_name = rng.choice(SIGNATURE_NAMES)
    key = rng.choice(["items"] * 8 + ["", "inputs", "ITEMS"])
    request.inputs[key].CopyFrom(_items_tensor(rng))
    if rng.random() < 0.1:
        request.inputs["extra"].CopyFrom(_items_tensor(rng))
    if rng.random() < 0.05:
        request.ClearField("inputs")
    if rng.random() < 0.15:
        request.output_filter.extend(rng.sample(["scores", "items", "probabilities", "nope", ""], 2))
    return request


def _classify(rng):
    request = classification_pb2.ClassificationRequest()
    _spec(rng, request.model_spec)
    request.model_spec.signature_name = rng.choice(SIGNATURE_NAMES)
    examples = (request.input.example_list_with_context.examples if rng.random() < 0.15
                else request.input.example_list.examples)
    for _ in range(rng.randint(0, 3)):
        feature = examples.add().features.feature[rng.choice(["items"] * 5 + ["item", ""])]
        roll = rng.random()
        if roll < 0.6:
            feature.bytes_list.value.extend(
                [rng.choice(ITEMS).encode() if rng.random() < 0.8 else bytes([rng.getrandbits(8)])
                 for _ in range(rng.randint(0, 4))])
        elif roll < 0.8:
            feature.int64_list.value.extend([rng.randint(-2 ** 63, 2 ** 63 - 1) for _ in range(3)])
        else:
            feature.float_list.value.extend([rng.random() for _ in range(3)])
    return request


def _metadata(rng):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    _spec(rng, request.model_spec)
    request.metadata_field.extend(rng.choice([["signature_def"], [], ["nope"], ["signature_def", "x"]]))
    return request


def _status(rng):
    request = get_model_status_pb2.GetModelStatusRequest()
    _spec(rng, request.model_spec)
    return request


MAKERS = dict(zip(METHODS, (_predict, _classify, _metadata, _status)))


def _mutate_bytes(rng, data: bytes) -> bytes:
    data = bytearray(data)
    roll = rng.random()
    if roll < 0.4 and data:
        return bytes(data[: rng.randrange(len(data))])  # truncated
    if roll < 0.8 and data:
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.getrandbits(8)
        return bytes(data)
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 80)))


def _grpc_cases(rng):
    for number in range(GRPC_CASES):
        method = rng.choice(list(METHODS))
        payload = MAKERS[method](rng).SerializeToString()
        if number % 3 == 2:
            payload = _mutate_bytes(rng, payload)
        yield number, method, payload


def _decodes(method, payload) -> bool:
    try:
        METHODS[method].FromString(payload)
    except DecodeError:
        return False
    return True


def test_mutated_grpc_requests_get_clean_status_codes(server):
    rng = random.Random(SEED)
    bad = []
    codes = {}
    with grpc.insecure_channel(server.grpc_target) as channel:
        for number, method, payload in _grpc_cases(rng):
            call = channel.unary_unary(method)  # bytes in, bytes out: the server parses them
            try:
                call(payload, timeout=DEADLINE)
                code, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as error:
                code, details = error.code(), error.details() or ""
            codes[code.name] = codes.get(code.name, 0) + 1
            gRPC_own = code == grpc.StatusCode.INTERNAL and details == DESERIALIZE_FAILURE
            if code in BAD_GRPC_CODES and not (gRPC_own and not _decodes(method, payload)):
                bad.append(f"case {number}: {method} payload={payload!r} -> {code.name}: {details[:300]}")
    print("gRPC status codes:", codes)
    assert not bad, f"{len(bad)} unclean gRPC answers:\n" + "\n".join(bad)


# ---- REST -------------------------------------------------------------------------------

def _json_value(rng, depth=0):
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([None, True, 0, -1, 2 ** 70, 1.5, "i1", "", "\u00e9\u0000", [], {}])
    if roll < 0.65:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["items", "b64", "x", ""]): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 2))}


def _predict_body(rng):
    rows = [[rng.choice(ITEMS) for _ in range(rng.randint(1, 3))] for _ in range(rng.randint(1, 2))]
    if rng.random() < 0.5:
        body = {"signature_name": rng.choice(SIGNATURE_NAMES), "instances": [{"items": row} for row in rows]}
    else:
        body = {"signature_name": rng.choice(SIGNATURE_NAMES), "inputs": {"items": rows}}
    roll = rng.random()
    if roll < 0.25:
        body[rng.choice(["instances", "inputs", "signature_name", "extra"])] = _json_value(rng)
    elif roll < 0.35:
        body = _json_value(rng)
    elif roll < 0.42:
        body = {"signature_name": "genre", "instances": [{"items": {"b64": rng.choice(["!!", "aTE=", ""])}}]}
    return json.dumps(body, allow_nan=True).encode()


def _classify_body(rng):
    examples = [{"items": [rng.choice(ITEMS) for _ in range(rng.randint(0, 3))]} for _ in range(rng.randint(0, 2))]
    body = {"signature_name": rng.choice(SIGNATURE_NAMES), "examples": examples}
    if rng.random() < 0.3:
        body["examples"] = _json_value(rng)
    return json.dumps(body).encode()


def _path(rng, verb):
    where = rng.choice(["", "", "/versions/1", "/labels/stable", "/versions/-1", "/versions/abc",
                        "/versions/99999999999999999999", "/labels/", "/labels/nope"])
    name = rng.choice([MODEL] * 5 + ["other", "%ff", "..", "%2e%2e", "p" * 2000])
    return f"/v1/models/{name}{where}{verb}"


def _rest_cases(rng):
    for number in range(REST_CASES):
        roll = rng.random()
        headers = {}
        if roll < 0.45:
            method, path, body = "POST", _path(rng, ":predict"), _predict_body(rng)
        elif roll < 0.6:
            method, path, body = "POST", _path(rng, ":classify"), _classify_body(rng)
        elif roll < 0.7:
            method, path, body = "GET", _path(rng, rng.choice(["", "/metadata"])), b""
        elif roll < 0.8:
            method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "GET", "BREW"])
            path = rng.choice([_path(rng, ":predict"), "/", "/v1", "/v1/models", "/v2/x", "*", "/%00"])
            body = _predict_body(rng) if rng.random() < 0.5 else b""
        else:
            method, path = "POST", _path(rng, ":predict")
            body = rng.choice([b"\xff\xfe\x00garbage", b"{\"instances\": [\"\xc3\x28\"]}", b"", b"{",
                               bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 60)))])
        length = len(body)
        framing = rng.random()
        if framing < 0.08:
            headers["Content-Length"] = str(length + rng.randint(1, 50))  # promised more than sent
        elif framing < 0.14 and length:
            headers["Content-Length"] = str(rng.randrange(length))  # fewer than sent
        elif framing < 0.2:
            headers["Content-Length"] = rng.choice(["-5", "abc", "1e3", " 12", str(2 ** 64)])
        elif framing < 0.24:
            headers["Transfer-Encoding"] = "chunked"
        elif not (method in ("GET", "HEAD") and not body):
            headers["Content-Length"] = str(length)
        yield number, method, path, headers, body


def _http(address, method, path, headers, body) -> bytes:
    """Sends one raw HTTP/1.1 request, closes the sending side and returns the whole answer."""
    lines = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close"]
    lines += [f"{key}: {value}" for key, value in headers.items()]
    with socket.create_connection(address, timeout=DEADLINE) as connection:
        connection.sendall("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
        connection.shutdown(socket.SHUT_WR)
        with connection.makefile("rb") as answer:
            return answer.read()  # until the server closes the connection (or the deadline passes)


def test_mutated_rest_requests_get_no_5xx(server):
    rng = random.Random(SEED + 1)
    address = ("127.0.0.1", server.rest_port)
    bad = []
    statuses = {}
    for number, method, path, headers, body in _rest_cases(rng):
        try:
            answer = _http(address, method, path, headers, body)
        except socket.timeout:
            answer = b"(no answer within the deadline)"
        status_line = answer.split(b"\r\n", 1)[0]
        parts = status_line.split()
        status = int(parts[1]) if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit() else None
        statuses[status] = statuses.get(status, 0) + 1
        if status is None or status >= 500:
            request = (method, path[:200], headers, body)
            bad.append(f"case {number}: {request!r} -> {answer[:300]!r}")
    print("HTTP statuses:", statuses)
    assert not bad, f"{len(bad)} bad REST answers:\n" + "\n".join(bad)


def test_the_server_still_answers_after_the_fuzz(server):
    from peterrec.serving.client import Client

    rows = [["i1", "i2"], ["i3"]]
    expected = server.toy.reference("next_items", rows)
    for client in (Client(server.grpc_target), Client(server.rest_url, rest=True)):
        with client:
            answer = client.predict("next_items", {"items": client.items_array(rows)[0]})
        np.testing.assert_array_equal(answer["items"], expected["items"])
        np.testing.assert_allclose(answer["scores"], expected["scores"], atol=1e-5)
