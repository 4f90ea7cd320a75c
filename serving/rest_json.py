"""TF Serving's REST JSON <-> numpy: request bodies in, response bodies out.

A predict body holds ``"instances"`` (row format, answered with ``{"predictions": ...}``) or
``"inputs"`` (columnar, answered with ``{"outputs": ...}``). Strings are JSON strings, or
``{"b64": "..."}`` for bytes; the last dimension of a string input may be ragged (rows of item
ids of different lengths): it is right-padded with ``""``, the contract's padding. Every value
is typed by the signature's input (``TensorInfo``); what does not fit is INVALID_ARGUMENT.
"""

import base64
from typing import Dict, List, Tuple

import numpy as np

from peterrec.serving import errors, tensors
from peterrec.serving.servable import TensorInfo


def decode_string(value, name: str) -> bytes:
    """A JSON string, or ``{"b64": "..."}``, as bytes (INVALID_ARGUMENT for anything else)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (ValueError, TypeError) as error:
            raise errors.invalid_argument(f"input {name!r}: bad base64 in {value!r}: {error}") from error
    raise errors.invalid_argument(f"input {name!r} expects strings, got {type(value).__name__} {value!r:.60}")


def _depth(value) -> int:
    depth = 0
    while isinstance(value, list):
        if not value:
            return depth + 1
        value = value[0]
        depth += 1
    return depth


def _string_array(value, name: str) -> np.ndarray:
    """Nested lists of strings -> object array of bytes; ragged last dimension right-padded with ""."""
    depth = _depth(value)
    if depth == 0:
        array = np.empty((), dtype=object)
        array[()] = decode_string(value, name)
        return array

    shape: List[int] = [0] * depth

    def measure(node, level):
        if not isinstance(node, list):
            raise errors.invalid_argument(f"input {name!r} mixes lists and values at the same depth")
        if level < depth - 1:
            if shape[level] and len(node) != shape[level]:
                raise errors.invalid_argument(
                    f"input {name!r} is ragged in dimension {level} ({len(node)} vs {shape[level]} entries); "
                    "only the last dimension may vary (it is padded with \"\")"
                )
            shape[level] = len(node)
            for child in node:
                measure(child, level + 1)
        else:
            shape[level] = max(shape[level], len(node))

    measure(value, 0)
    count = 1
    for size in shape:
        count *= size
    array = np.full(shape, b"", dtype=object)
    if count == 0:
        return array

    def fill(node, index):
        if len(index) == depth - 1:
            row = array[tuple(index)]
            for position, leaf in enumerate(node):
                if isinstance(leaf, list):
                    raise errors.invalid_argument(f"input {name!r} has more nesting than its first entry")
                row[position] = decode_string(leaf, name)
            return
        for position, child in enumerate(node):
            fill(child, index + [position])

    fill(value, [])
    return array


def _numeric_array(value, info: TensorInfo, name: str) -> np.ndarray:
    dtype = tensors.numpy_dtype(info.dtype)

    def check(node):
        if isinstance(node, list):
            for child in node:
                check(child)
        elif isinstance(node, bool):
            if dtype != np.bool_:
                raise errors.invalid_argument(f"input {name!r} expects {info.dtype_name} numbers, got {node!r}")
        elif not isinstance(node, (int, float)):
            raise errors.invalid_argument(
                f"input {name!r} expects {info.dtype_name} numbers, got {type(node).__name__} {node!r:.60}"
            )
        elif dtype.kind in "iub" and isinstance(node, float):
            raise errors.invalid_argument(f"input {name!r} expects {info.dtype_name} integers, got {node!r}")

    check(value)
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, OverflowError) as error:
        raise errors.invalid_argument(f"input {name!r} is not a rectangular {info.dtype_name} array: {error}") from error


def json_to_array(value, info: TensorInfo, name: str) -> np.ndarray:
    """One input's JSON value -> numpy, typed by the signature (INVALID_ARGUMENT when it does not fit)."""
    depth = _depth(value)
    if (info.shape is not None and depth != len(info.shape)) or depth > 32:
        want = "at most 32" if info.shape is None else f"{len(info.shape)} (shape {list(info.shape)})"
        raise errors.invalid_argument(f"input {name!r} must have rank {want}, got {depth} levels of nesting")
    try:
        if info.dtype == tensors.dtype_enum("string"):
            return _string_array(value, name)
        return _numeric_array(value, info, name)
    except RecursionError:
        raise errors.invalid_argument(f"input {name!r} is nested too deeply") from None


def json_value(array: np.ndarray):
    """A numpy output as JSON: bytes as UTF-8 strings, or ``{"b64": ...}`` when they are not text."""
    if array.dtype == object:
        def convert(node):
            if isinstance(node, list):
                return [convert(child) for child in node]
            if isinstance(node, bytes):
                try:
                    return node.decode("utf-8")
                except UnicodeDecodeError:
                    return {"b64": base64.b64encode(node).decode("ascii")}
            return node
        return convert(array.tolist())
    return array.tolist()


def request_inputs(body: dict, runner) -> Tuple[Dict[str, np.ndarray], bool]:
    """Numpy inputs of a predict body, and whether it used the row ("instances") format."""
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise errors.invalid_argument('the body must hold exactly one of "instances" (rows) or "inputs" (columns)')
    names = sorted(runner.inputs)
    if has_instances:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise errors.invalid_argument('"instances" must be a non-empty list')
        if all(isinstance(instance, dict) and "b64" not in instance for instance in instances):
            keys = set(instances[0])
            if any(set(instance) != keys for instance in instances):
                raise errors.invalid_argument("every instance must name the same inputs")
            columns = {key: [instance[key] for instance in instances] for key in keys}
        elif len(names) == 1:
            columns = {names[0]: instances}
        else:
            raise errors.invalid_argument(
                f"signature {runner.name!r} takes inputs {names}: each instance must be an object naming them"
            )
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and "b64" not in inputs:
            columns = inputs
        elif len(names) == 1:
            columns = {names[0]: inputs}
        else:
            raise errors.invalid_argument(f'signature {runner.name!r} takes inputs {names}: "inputs" must name them')
    arrays = {}
    for key, value in columns.items():
        info = runner.inputs.get(key)
        if info is None:
            raise errors.invalid_argument(f"signature {runner.name!r} has no input {key!r}; inputs: {names}")
        arrays[key] = json_to_array(value, info, key)
    return arrays, has_instances


def response_body(outputs: Dict[str, np.ndarray], rows_format: bool) -> dict:
    """``{"predictions": ...}`` (row format) or ``{"outputs": ...}`` (columnar), as TF Serving answers."""
    names = sorted(outputs)
    if not rows_format:
        if len(names) == 1:
            return {"outputs": json_value(outputs[names[0]])}
        return {"outputs": {name: json_value(outputs[name]) for name in names}}
    columns = {name: json_value(outputs[name]) for name in names}
    sizes = {len(column) if isinstance(column, list) else -1 for column in columns.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise errors.invalid_argument("outputs do not share a batch dimension; ask with \"inputs\" (columnar)")
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][row] for name in names} for row in range(sizes.pop())]}
