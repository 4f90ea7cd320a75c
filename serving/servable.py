"""One SavedModel version: found on disk, loaded, warmed up, and run one signature at a time.

``list_versions`` finds the complete versions under a model's base path (numeric folders holding
``saved_model.pb``); ``load_servable`` loads one, reads its SignatureDefs and task metadata and
replays its warm-up requests; the ``ServableVersion`` it returns holds one ``SignatureRunner``
per signature (numpy inputs in, numpy outputs out). ``peterrec.serving.model_manager`` decides
which versions to load and unload; ``peterrec.serving.prediction`` runs requests on them.
"""

import dataclasses
import os
import threading
from typing import Dict, Optional, Tuple

import numpy as np

from peterrec.serving import errors, signatures, tensors

SERVE_TAG = "serve"


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """dtype (a ``DataType`` enum) and shape (None = unknown rank, -1 = any size) of a tensor."""

    dtype: int
    shape: Optional[Tuple[int, ...]]

    @property
    def dtype_name(self) -> str:
        """TF's dtype name ("string", "float32"...)."""
        return tensors.dtype_name(self.dtype)

    def describe(self) -> str:
        """``string [-1, -1]``-style text for messages."""
        shape = "unknown rank" if self.shape is None else list(self.shape)
        return f"{self.dtype_name} {shape}"


def _tensor_infos(mapping) -> Dict[str, TensorInfo]:
    return {key: TensorInfo(info.dtype, tensors.proto_shape(info.tensor_shape)) for key, info in mapping.items()}


class SignatureRunner:
    """One signature of a loaded version: numpy inputs in, numpy outputs out.

    Holds the loaded concrete function, so a request costs one call. ``calls`` counts
    model calls (a batched call counts once).
    """

    def __init__(self, name: str, function, signature_def):
        self.name = name
        self._function = function
        self.signature_def = signature_def
        self.inputs = _tensor_infos(signature_def.inputs)
        self.outputs = _tensor_infos(signature_def.outputs)
        self.kind = signatures.signature_kind(name, self.outputs)
        self.method_name = signature_def.method_name  # which TF Serving API may run it
        self._lock = threading.Lock()
        self.calls = 0

    def __call__(self, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import tensorflow as tf

        with self._lock:
            self.calls += 1
        feeds = {key: tf.convert_to_tensor(value) for key, value in arrays.items()}
        try:
            results = self._function(**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as error:
            message = getattr(error, "message", None) or str(error)
            raise errors.invalid_argument(f"signature {self.name!r} rejected the input: {message}") from error
        return {key: value.numpy() for key, value in results.items()}


class ServableVersion:
    """One loaded version of a model: its signatures, SignatureDefs and task metadata."""

    def __init__(self, model_name: str, version: int, path: str, loaded, signature_defs: dict, tasks: dict):
        self.model_name = model_name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps the variables and tables alive
        self.signature_defs = signature_defs
        self.tasks = tasks
        self.runners = {
            name: SignatureRunner(name, loaded.signatures[name], signature_defs[name])
            for name in loaded.signatures
            if name in signature_defs
        }

    def signature(self, name: str) -> SignatureRunner:
        """The runner of a signature, or FAILED_PRECONDITION naming the ones there are (as TF Serving)."""
        runner = self.runners.get(name)
        if runner is None:
            # TF Serving's code and wording (predict_util.cc), then the keys there are.
            raise errors.ServingError(
                errors.FAILED_PRECONDITION,
                f'Serving signature key "{name}" not found. Model {self.model_name!r} version {self.version} '
                f"has signatures: {sorted(self.runners)}",
            )
        return runner

    def signature_def_map(self):
        """The ``tensorflow.serving.SignatureDefMap`` GetModelMetadata answers with."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        proto = get_model_metadata_pb2.SignatureDefMap()
        for name in sorted(self.runners):
            proto.signature_def[name].CopyFrom(self.signature_defs[name])
        return proto


def read_signature_defs(path: str, tag: str = SERVE_TAG) -> dict:
    """The SignatureDefs of the meta graph tagged ``tag`` in a SavedModel directory."""
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    binary = os.path.join(path, "saved_model.pb")
    if os.path.exists(binary):
        with open(binary, "rb") as handle:
            saved_model.ParseFromString(handle.read())
    else:
        with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as handle:
            text_format.Parse(handle.read(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    raise ValueError(f"{path} has no meta graph tagged {tag!r}")


def load_servable(model_name: str, version: int, path: str, warmup: bool = True) -> ServableVersion:
    """Loads one SavedModel version and replays its warm-up requests."""
    import tensorflow as tf

    from peterrec.serving import warmup as warmup_module

    signature_defs = read_signature_defs(path)
    loaded = tf.saved_model.load(path, tags=[SERVE_TAG])
    servable = ServableVersion(model_name, version, path, loaded, signature_defs, signatures.read_tasks_metadata(path))
    if not servable.runners:
        raise ValueError(f"{path} has no signatures to serve")
    if warmup:
        for request in warmup_module.read_warmup_requests(path):
            runner = servable.signature(request.model_spec.signature_name or "serving_default")
            runner({key: tensors.tensor_proto_to_ndarray(value, key) for key, value in request.inputs.items()})
    return servable


def list_versions(base_path: str) -> Dict[int, str]:
    """Version number -> directory of every complete version under a base path."""
    found = {}
    for name in os.listdir(base_path):
        if not (name.isascii() and name.isdigit()):  # "²".isdigit() too, and int() refuses it
            continue
        path = os.path.join(base_path, name)
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(
            os.path.join(path, "saved_model.pbtxt")
        ):
            found[int(name)] = path
    return found


def saved_model_stamp(path: str) -> Optional[float]:
    """The modification time of a version's saved_model.pb (or .pbtxt); None when it has neither."""
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        try:
            return os.path.getmtime(os.path.join(path, name))
        except OSError:
            continue
    return None
