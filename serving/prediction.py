"""The request path both front ends share: find the version and signature, check, batch, run.

``Predictor.predict`` takes numpy inputs (the gRPC and REST front ends convert their
wire formats first) and returns numpy outputs. Every check a client can fail raises a
``ServingError``: unknown model, version or label is NOT_FOUND, an unknown signature
FAILED_PRECONDITION (HTTP 400), as in TF Serving; missing or
unexpected inputs, a wrong dtype or rank, an empty or oversized input, or an unknown
output filter is INVALID_ARGUMENT.
"""

import dataclasses
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from peterrec.serving import errors, signatures, tensors
from peterrec.serving.limits import RequestLimits  # noqa: F401 - public here too
from peterrec.serving.model_manager import ModelManager
from peterrec.serving.servable import ServableVersion, SignatureRunner, TensorInfo

DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass
class Prediction:
    """What a Predict call answers: which version and signature ran, and the outputs."""

    servable: ServableVersion
    runner: SignatureRunner
    outputs: Dict[str, np.ndarray]


def _batchable(runner: SignatureRunner) -> bool:
    infos = list(runner.inputs.values()) + list(runner.outputs.values())
    return all(info.shape is not None and len(info.shape) >= 1 and info.shape[0] == -1 for info in infos)


class Predictor:
    """Resolves, validates and runs requests; merges concurrent ones when given a Batcher."""

    def __init__(self, manager: ModelManager, batcher=None, limits: Optional[RequestLimits] = None, metrics=None):
        self.manager = manager
        self.batcher = batcher
        self.limits = limits or RequestLimits()
        self.metrics = metrics

    def resolve(self, model: str, version: Optional[int] = None, label: Optional[str] = None) -> ServableVersion:
        """The loaded version a request names (NOT_FOUND when there is none)."""
        if not model:
            raise errors.invalid_argument("the request names no model (model_spec.name is empty)")
        return self.manager.resolve(model, version, label)

    def signature(self, servable: ServableVersion, name: str) -> SignatureRunner:
        """The named signature (``serving_default`` when the name is empty)."""
        return servable.signature(name or DEFAULT_SIGNATURE)

    def check_input_dtype(self, runner: SignatureRunner, name: str, dtype: int) -> None:
        """INVALID_ARGUMENT unless ``name`` is an input of the signature with this dtype."""
        info = self._input_info(runner, name)
        if info.dtype != dtype:
            raise errors.invalid_argument(
                f"input {name!r} of signature {runner.name!r} must be {info.dtype_name}, "
                f"got {tensors.dtype_name(dtype)}"
            )

    def _input_info(self, runner: SignatureRunner, name: str) -> TensorInfo:
        info = runner.inputs.get(name)
        if info is None:
            raise errors.invalid_argument(
                f"signature {runner.name!r} has no input {name!r}; inputs: {sorted(runner.inputs)}"
            )
        return info

    def check_inputs(self, runner: SignatureRunner, inputs: Dict[str, np.ndarray]) -> None:
        """Checks names, dtypes, shapes and sizes of numpy inputs against the signature."""
        missing = sorted(set(runner.inputs) - set(inputs))
        if missing:
            raise errors.invalid_argument(
                f"missing input(s) {missing} for signature {runner.name!r}; it takes {sorted(runner.inputs)}"
            )
        rows = set()
        for name, array in inputs.items():
            info = self._input_info(runner, name)
            expected = tensors.numpy_dtype(info.dtype)
            if array.dtype != expected:
                raise errors.invalid_argument(
                    f"input {name!r} of signature {runner.name!r} must be {info.dtype_name}, got {array.dtype}"
                )
            if info.shape is not None:
                if array.ndim != len(info.shape):
                    raise errors.invalid_argument(
                        f"input {name!r} of signature {runner.name!r} must have rank {len(info.shape)} "
                        f"(shape {list(info.shape)}), got shape {list(array.shape)}"
                    )
                for axis, (want, got) in enumerate(zip(info.shape, array.shape)):
                    if want >= 0 and want != got:
                        raise errors.invalid_argument(
                            f"input {name!r} of signature {runner.name!r} must have size {want} in dimension "
                            f"{axis}, got shape {list(array.shape)}"
                        )
            if array.size == 0:
                raise errors.invalid_argument(f"input {name!r} is empty (shape {list(array.shape)})")
            if array.size > self.limits.max_elements:
                raise errors.invalid_argument(
                    f"input {name!r} has {array.size} elements; the limit is {self.limits.max_elements}"
                )
            if array.ndim >= 1:
                rows.add(array.shape[0])
        if len(rows) > 1:
            raise errors.invalid_argument(f"inputs disagree on the batch size: {sorted(rows)}")
        if rows and max(rows) > self.limits.max_rows:
            raise errors.invalid_argument(f"{max(rows)} rows in one request; the limit is {self.limits.max_rows}")

    def run(self, servable: ServableVersion, runner: SignatureRunner, inputs: Dict[str, np.ndarray],
            output_filter: Sequence[str] = ()) -> Prediction:
        """Checks and runs validated numpy inputs; returns the (filtered) outputs."""
        unknown = sorted(set(output_filter) - set(runner.outputs))
        if unknown:
            raise errors.invalid_argument(
                f"output_filter names {unknown}, which signature {runner.name!r} does not have; "
                f"outputs: {sorted(runner.outputs)}"
            )
        self.check_inputs(runner, inputs)
        started = time.perf_counter()
        status = errors.INTERNAL
        try:
            if self.batcher is not None and _batchable(runner):
                key = (servable.model_name, servable.version, runner.name)
                outputs = self.batcher.run(key, runner, inputs)
            else:
                outputs = runner(inputs)
            status = "OK"
        except errors.ServingError as error:
            status = error.code
            raise
        finally:
            if self.metrics is not None:
                self.metrics.record(servable.model_name, runner.name, status, time.perf_counter() - started)
        if output_filter:
            outputs = {name: outputs[name] for name in output_filter}
        return Prediction(servable, runner, outputs)

    def predict(self, model: str, version: Optional[int], label: Optional[str], signature_name: str,
                inputs: Dict[str, np.ndarray], output_filter: Sequence[str] = ()) -> Prediction:
        """Resolves the model version and signature, then ``run``."""
        servable = self.resolve(model, version, label)
        runner = self.signature(servable, signature_name)
        return self.run(servable, runner, inputs, output_filter)

    def classify(self, servable: ServableVersion, signature_name: str,
                 serialized: List[bytes]) -> Tuple[SignatureRunner, Dict[str, np.ndarray]]:
        """Runs a classify signature on serialized tf.Examples (the Classify API).

        As TF Serving: an unknown signature, or one whose method name is not
        ``tensorflow/serving/classify``, is INVALID_ARGUMENT with TF Serving's wording.
        """
        name = signature_name or DEFAULT_SIGNATURE
        runner = servable.runners.get(name)
        if runner is None:
            raise errors.invalid_argument(f"No signature was found with the name: {name}")
        if runner.method_name != signatures.CLASSIFY_METHOD_NAME:
            raise errors.invalid_argument(
                f"Expected classification signature method_name to be {signatures.CLASSIFY_METHOD_NAME}. "
                f"Was: {runner.method_name}"
            )
        if not serialized:
            raise errors.invalid_argument("the request holds no examples")
        array = np.empty(len(serialized), dtype=object)
        array[:] = serialized
        prediction = self.run(servable, runner, {signatures.CLASSIFY_INPUTS: array})
        return runner, prediction.outputs
