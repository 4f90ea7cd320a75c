"""A client for served peterrec models, over TF Serving's gRPC API (or its REST API).

    from peterrec.serving import Client

    with Client("127.0.0.1:8500") as client:          # Client("http://127.0.0.1:8501", rest=True)
        client.recommend("shop", ["i1", "i7"], k=5)    # [("t3", 2.1), ...]
        client.classify("genre", ["i1", "i7"])         # Classification(label="comedy", ...)
        client.embed(["i1", "i7"])                     # numpy [d]
        client.next_items(["i1", "i7"], k=5)
        client.metadata()                              # signatures, their kinds, version

``items`` is one sequence of item ids (oldest first), or a list of sequences for a
batch; a batch gets a list of answers. The client pads rows with "" (the contract's
padding), sends ``PredictRequest``s (``ClassificationRequest``s to a task's classify
signature for ``classify``) through ``PredictionServiceStub`` and so works against the
official ``tensorflow_model_server`` as well. Failures raise
``ServingError`` with the server's status code and message.
"""

import dataclasses
import json
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from peterrec.serving import errors, signatures
from peterrec.serving.errors import ServingError

Items = Union[Sequence[str], Sequence[Sequence[str]]]
Recommendation = List[Tuple[str, float]]


@dataclasses.dataclass
class Classification:
    """A classification task's answer for one sequence."""

    label: str
    label_id: int
    probabilities: Dict[str, float]


def _rows(items: Items) -> Tuple[List[List[str]], bool]:
    """(rows, is_batch) of a single sequence or a batch of sequences."""
    if isinstance(items, (str, bytes)):
        raise TypeError("items must be a sequence of item ids (or a list of such sequences), not one string")
    items = list(items)
    if not items:
        raise ValueError("items is empty: give at least one item id")
    if all(isinstance(row, (list, tuple, np.ndarray)) for row in items):
        rows = [[str(item) for item in row] for row in items]
        if any(not row for row in rows):
            raise ValueError("every sequence in the batch needs at least one item id")
        return rows, True
    if any(isinstance(item, (list, tuple, np.ndarray)) for item in items):
        raise TypeError("items mixes item ids and sequences")
    return [[item.decode() if isinstance(item, bytes) else str(item) for item in items]], False


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Client:
    """Talks to a TF-Serving-compatible server that serves a peterrec model.

    ``target`` is ``host:port`` (gRPC) or, with ``rest=True``, ``http://host:port`` (or
    ``host:port``). ``version`` or ``version_label`` pin a version (default: the latest).
    """

    def __init__(
        self,
        target: str,
        rest: bool = False,
        model_name: str = signatures.DEFAULT_MODEL_NAME,
        version: Optional[int] = None,
        version_label: Optional[str] = None,
        timeout: float = 30.0,
        max_message_bytes: int = 32 << 20,
    ):
        if version is not None and version_label:
            raise ValueError("give a version or a version_label, not both")
        self.target = target
        self.rest = rest
        self.model_name = model_name
        self.version = version
        self.version_label = version_label
        self.timeout = timeout
        self._channel = None
        self._stub = None
        if rest:
            base = target if "://" in target else f"http://{target}"
            self._base_url = base.rstrip("/")
        else:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            self._channel = grpc.insecure_channel(
                target,
                options=[
                    ("grpc.max_receive_message_length", max_message_bytes),
                    ("grpc.max_send_message_length", max_message_bytes),
                ],
            )
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    # ---- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Closes the gRPC channel."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- generic calls ----------------------------------------------------------------
    def predict(self, signature: str, inputs: Mapping[str, np.ndarray],
                output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
        """Calls one signature with numpy inputs; returns its outputs (strings as ``bytes``)."""
        if self.rest:
            return self._predict_rest(signature, inputs, output_filter)
        return self._predict_grpc(signature, inputs, output_filter)

    def _set_spec(self, spec, signature: str = "") -> None:
        spec.name = self.model_name
        if signature:
            spec.signature_name = signature
        if self.version is not None:
            spec.version.value = int(self.version)
        elif self.version_label:
            spec.version_label = self.version_label

    def _predict_grpc(self, signature, inputs, output_filter):
        import grpc
        from tensorflow_serving.apis import predict_pb2

        from peterrec.serving import tensors

        request = predict_pb2.PredictRequest()
        self._set_spec(request.model_spec, signature)
        for name, value in inputs.items():
            tensors.ndarray_to_tensor_proto(np.asarray(value), request.inputs[name])
        request.output_filter.extend(output_filter)
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _from_rpc_error(error) from None
        return {name: tensors.tensor_proto_to_ndarray(proto, name) for name, proto in response.outputs.items()}

    def _url(self, suffix: str) -> str:
        url = f"{self._base_url}/v1/models/{self.model_name}"
        if self.version is not None:
            url += f"/versions/{int(self.version)}"
        elif self.version_label:
            url += f"/labels/{self.version_label}"
        return url + suffix

    def _http(self, url: str, body: Optional[dict] = None) -> dict:
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                return json.loads(answer.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except ValueError:
                message = text
            code = errors.CODE_OF_HTTP_STATUS.get(error.code, errors.UNKNOWN if error.code < 500 else errors.INTERNAL)
            raise ServingError(code, f"HTTP {error.code}: {message}") from None
        except urllib.error.URLError as error:
            raise ServingError(errors.UNAVAILABLE, f"cannot reach {url}: {error.reason}") from None

    def _predict_rest(self, signature, inputs, output_filter):
        body = {"inputs": {name: _json_input(np.asarray(value)) for name, value in inputs.items()}}
        if signature:
            body["signature_name"] = signature
        answer = self._http(self._url(":predict"), body)
        outputs = answer.get("outputs")
        if not isinstance(outputs, dict):
            # TF Serving answers a single-output signature with the bare value.
            names = list(output_filter) or self._output_names(signature)
            if len(names) != 1:
                raise ServingError(errors.INTERNAL, f"cannot tell which output {signature!r} answered")
            outputs = {names[0]: outputs}
        result = {name: _from_json(value) for name, value in outputs.items()}
        if output_filter:
            result = {name: result[name] for name in output_filter}
        return result

    def _output_names(self, signature: str) -> List[str]:
        info = self.metadata()["signatures"].get(signature, {})
        return sorted(info.get("outputs", {}))

    # ---- the peterrec calls -----------------------------------------------------------
    def items_array(self, items: Items) -> Tuple[np.ndarray, bool]:
        """The ``items`` input of a sequence or batch (right-padded bytes), and whether it is a batch."""
        rows, is_batch = _rows(items)
        padded = signatures.pad_item_rows(rows)
        array = np.empty((len(padded), len(padded[0])), dtype=object)
        for index, row in enumerate(padded):
            array[index, :] = [item.encode("utf-8") for item in row]
        return array, is_batch

    def _top_k(self, signature: str, items: Items, k: int):
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        array, is_batch = self.items_array(items)
        outputs = self.predict(signature, {signatures.INPUT_ITEMS: array})
        names, scores = outputs[signatures.OUTPUT_ITEMS], outputs[signatures.OUTPUT_SCORES]
        answers = []
        for row in range(names.shape[0]):
            pairs = [(_text(name), float(score)) for name, score in zip(names[row], scores[row])
                     if _text(name) != signatures.PAD_ITEM]
            answers.append(pairs[: int(k)])
        return answers if is_batch else answers[0]

    def recommend(self, task: str, items: Items, k: int = 10):
        """Top-``k`` target items of a cold-start task: ``[(item, score), ...]`` best first.

        ``k`` larger than the ``K`` the model exports gives ``K`` items.
        """
        return self._top_k(task, items, k)

    def next_items(self, items: Items, k: int = 10):
        """Top-``k`` next items of the pretrained backbone: ``[(item, score), ...]``."""
        return self._top_k(signatures.NEXT_ITEMS_SIGNATURE, items, k)

    def classify(self, task: str, items: Items):
        """A classification task's ``Classification`` (label, label_id, probability of every class).

        Asks TF Serving's Classify API on the task's classify signature (``<task>_classify``); a
        model exported before it had those signatures is asked through Predict on ``<task>``.
        """
        rows, is_batch = _rows(items)
        try:
            results = self._classify_call(signatures.classify_signature_name(task), rows)
        except ServingError as error:
            if "No signature was found with the name" not in error.message:
                raise
            return self._classify_by_predict(task, items)
        answers = []
        for pairs in results:
            label_id = int(np.argmax([score for _, score in pairs]))
            answers.append(Classification(label=pairs[label_id][0], label_id=label_id, probabilities=dict(pairs)))
        return answers if is_batch else answers[0]

    def _classify_call(self, signature: str, rows: List[List[str]]) -> List[List[Tuple[str, float]]]:
        """(class, score) pairs of each row, from the Classify API."""
        if self.rest:
            body = {"signature_name": signature, "examples": [{signatures.INPUT_ITEMS: row} for row in rows]}
            answer = self._http(self._url(":classify"), body)
            return [[(str(name), float(score)) for name, score in result] for result in answer["results"]]
        import grpc
        from tensorflow_serving.apis import classification_pb2

        from peterrec.serving.classify_requests import serialized_item_examples

        request = classification_pb2.ClassificationRequest()
        self._set_spec(request.model_spec, signature)
        for serialized in serialized_item_examples(rows):
            request.input.example_list.examples.add().ParseFromString(serialized)
        try:
            response = self._stub.Classify(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _from_rpc_error(error) from None
        return [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]

    def _classify_by_predict(self, task: str, items: Items):
        array, is_batch = self.items_array(items)
        outputs = self.predict(task, {signatures.INPUT_ITEMS: array})
        answers = []
        for row in range(array.shape[0]):
            classes = [_text(name) for name in outputs[signatures.OUTPUT_CLASSES][row]]
            probabilities = [float(p) for p in outputs[signatures.OUTPUT_PROBABILITIES][row]]
            answers.append(
                Classification(
                    label=_text(outputs[signatures.OUTPUT_LABEL][row]),
                    label_id=int(outputs[signatures.OUTPUT_LABEL_ID][row]),
                    probabilities=dict(zip(classes, probabilities)),
                )
            )
        return answers if is_batch else answers[0]

    def embed(self, items: Items) -> np.ndarray:
        """The user vector(s): float32 ``[d]`` for one sequence, ``[B, d]`` for a batch."""
        array, is_batch = self.items_array(items)
        embedding = self.predict(signatures.EMBED_SIGNATURE, {signatures.INPUT_ITEMS: array})[
            signatures.OUTPUT_EMBEDDING
        ]
        embedding = np.asarray(embedding, dtype=np.float32)
        return embedding if is_batch else embedding[0]

    def metadata(self) -> dict:
        """``{"model", "version", "signatures": {name: {"kind", "inputs", "outputs"}}, "classify_signatures"}``.

        ``inputs``/``outputs`` map tensor names to ``{"dtype", "shape"}``; ``kind`` is
        the contract kind (classification, cold_start, embed, next_items) or None.
        ``signatures`` are those that take ``items``; the classify signatures
        (``<task>_classify``, kind ``classify``, for ``classify()``) are listed apart.
        """
        if self.rest:
            answer = self._http(self._url("/metadata"))
            defs = answer["metadata"]["signature_def"].get("signature_def", {})
            version = int(answer["model_spec"]["version"])
            parsed = {name: _signature_from_json(definition) for name, definition in defs.items()}
        else:
            import grpc
            from tensorflow_serving.apis import get_model_metadata_pb2

            from peterrec.serving import tensors

            request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            self._set_spec(request.model_spec)
            try:
                response = self._stub.GetModelMetadata(request, timeout=self.timeout)
            except grpc.RpcError as error:
                raise _from_rpc_error(error) from None
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signature_map)
            version = response.model_spec.version.value
            parsed = {}
            for name, definition in signature_map.signature_def.items():
                parsed[name] = {
                    "inputs": {k: _spec(tensors.dtype_name(v.dtype), v.tensor_shape) for k, v in definition.inputs.items()},
                    "outputs": {k: _spec(tensors.dtype_name(v.dtype), v.tensor_shape) for k, v in definition.outputs.items()},
                }
        for name, info in parsed.items():
            info["kind"] = signatures.signature_kind(name, info["outputs"])
        classify = {name: parsed.pop(name) for name in sorted(parsed) if signatures.is_classify_signature(name)}
        return {"model": self.model_name, "version": version, "signatures": parsed, "classify_signatures": classify}

    def status(self) -> List[dict]:
        """GetModelStatus: ``[{"version", "state", "error_code", "error_message"}]``, highest first."""
        if self.rest:
            answer = self._http(self._url(""))
            return [
                {"version": int(entry["version"]), "state": entry["state"],
                 "error_code": entry.get("status", {}).get("error_code", "OK"),
                 "error_message": entry.get("status", {}).get("error_message", "")}
                for entry in answer.get("model_version_status", [])
            ]
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        request = get_model_status_pb2.GetModelStatusRequest()
        self._set_spec(request.model_spec)
        try:
            response = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus(
                request, timeout=self.timeout
            )
        except grpc.RpcError as error:
            raise _from_rpc_error(error) from None
        states = {number: name for name, number in get_model_status_pb2.ModelVersionStatus.State.items()}
        return [
            {"version": entry.version, "state": states[entry.state],
             "error_code": errors.CODE_NAMES.get(entry.status.error_code, str(entry.status.error_code)),
             "error_message": entry.status.error_message}
            for entry in response.model_version_status
        ]


def _spec(dtype: str, shape_proto) -> dict:
    shape = None if shape_proto.unknown_rank else [int(dim.size) for dim in shape_proto.dim]
    return {"dtype": dtype, "shape": shape}


_JSON_DTYPES = {"DT_STRING": "string", "DT_FLOAT": "float32", "DT_INT64": "int64", "DT_INT32": "int32",
                "DT_DOUBLE": "float64", "DT_BOOL": "bool"}


def _signature_from_json(definition: dict) -> dict:
    def tensors_of(mapping):
        result = {}
        for key, info in (mapping or {}).items():
            shape_info = info.get("tensor_shape", {})
            shape = None if shape_info.get("unknown_rank") else [int(d.get("size", 0)) for d in shape_info.get("dim", [])]
            result[key] = {"dtype": _JSON_DTYPES.get(info.get("dtype"), info.get("dtype")), "shape": shape}
        return result

    return {"inputs": tensors_of(definition.get("inputs")), "outputs": tensors_of(definition.get("outputs"))}


def _json_input(array: np.ndarray):
    if array.dtype.kind in ("O", "S", "U"):
        def convert(node):
            if isinstance(node, list):
                return [convert(child) for child in node]
            return node.decode("utf-8") if isinstance(node, bytes) else str(node)
        return convert(array.tolist())
    return array.tolist()


def _from_json(value) -> np.ndarray:
    def has_strings(node):
        while isinstance(node, list) and node:
            node = node[0]
        return isinstance(node, (str, dict))

    if has_strings(value):
        import base64

        def convert(node):
            if isinstance(node, list):
                return [convert(child) for child in node]
            if isinstance(node, dict):
                return base64.b64decode(node["b64"])
            return node.encode("utf-8")

        return np.array(convert(value), dtype=object)
    return np.asarray(value)


def _from_rpc_error(error) -> ServingError:
    code = error.code()
    name = code.name if code is not None and code.name in errors.CODE_NUMBERS else errors.UNKNOWN
    return ServingError(name, error.details() or str(code))
