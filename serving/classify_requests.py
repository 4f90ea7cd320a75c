"""The Classify API's tf.Examples: built from item rows, read from gRPC requests and REST JSON.

A classify signature (``peterrec.serving.classify_signatures``) takes serialized tf.Examples;
each carries its item ids in the bytes feature ``items``. ``serialized_examples`` reads a gRPC
``tensorflow.serving.Input`` (context features merged into each example, as TF Serving does),
``serialized_json_examples`` converts REST ``examples`` the way TF Serving's REST API does
(strings and ``{"b64": ...}`` to bytes, integers to int64, other numbers to float), and
``serialized_item_examples`` builds them from item-id rows for clients and warm-up requests.
"""

import base64
import binascii
import numbers
from typing import List, Optional, Sequence

from peterrec.serving import errors, signatures


def _example_pb2():
    from tensorflow.core.example import example_pb2

    return example_pb2


def _utf8(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def serialized_item_examples(rows: Sequence[Sequence]) -> List[bytes]:
    """One serialized tf.Example per row of item ids (str or bytes), in the ``items`` feature."""
    example_pb2 = _example_pb2()
    serialized = []
    for row in rows:
        example = example_pb2.Example()
        example.features.feature[signatures.INPUT_ITEMS].bytes_list.value.extend(_utf8(item) for item in row)
        serialized.append(example.SerializeToString())
    return serialized


def serialized_examples(model_input) -> List[bytes]:
    """The serialized tf.Examples of a ``tensorflow.serving.Input``, context merged into each."""
    kind = model_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in model_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = model_input.example_list_with_context
        merged = []
        for example in with_context.examples:
            combined = type(example)()
            combined.CopyFrom(with_context.context)
            combined.MergeFrom(example)  # the example's own features win over the context's
            merged.append(combined.SerializeToString())
        return merged
    raise errors.invalid_argument("the request input holds no examples (set input.example_list)")


def _feature(feature, value, where: str) -> None:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, dict) for v in values) and values:
        try:
            feature.bytes_list.value.extend(base64.b64decode(v["b64"], validate=True) for v in values)
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise errors.invalid_argument(f'{where}: objects must be {{"b64": "<base64>"}}') from None
    elif all(isinstance(v, str) for v in values):
        feature.bytes_list.value.extend(v.encode("utf-8") for v in values)
    elif all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        feature.int64_list.value.extend(values)
    elif all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        feature.float_list.value.extend(float(v) for v in values)
    else:
        raise errors.invalid_argument(f"{where}: a feature holds strings, b64 objects, or numbers, not a mix")


def _json_example(features: dict, where: str):
    example = _example_pb2().Example()
    for key, value in features.items():
        _feature(example.features.feature[key], value, f"{where}, feature {key!r}")
    return example


def serialized_json_examples(examples, context: Optional[dict] = None) -> List[bytes]:
    """REST ``examples`` (a list of objects; ``context`` features go into each) as serialized tf.Examples."""
    if not isinstance(examples, list) or not examples:
        raise errors.invalid_argument('"examples" must be a non-empty list of objects')
    if not isinstance(context, dict):
        raise errors.invalid_argument('"context" must be an object')
    serialized = []
    for index, features in enumerate(examples):
        if not isinstance(features, dict):
            raise errors.invalid_argument(f"example {index} must be an object")
        serialized.append(_json_example({**context, **features}, f"example {index}").SerializeToString())
    return serialized
