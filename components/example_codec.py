"""A pure-Python encoder of the sequence example (``example_format``) as wire-format bytes.

Beam workers would otherwise import TensorFlow only to serialise ``tf.train.Example``
protos, which costs seconds per worker process. This module writes the very same
protobuf bytes by hand (``tf.train.Example.FromString`` reads them back; the tests check
that every field round-trips against ``example_format.make_example``), with feature keys
in sorted order, so equal inputs always give equal bytes.

Wire layout (tensorflow/core/example/{example,feature}.proto)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }      // entries: key = 1, value = 2
    Feature  { BytesList bytes_list = 1; Int64List int64_list = 3; }
    BytesList { repeated bytes value = 1; }  Int64List { repeated int64 value = 1 [packed]; }
"""

from typing import Dict, Optional, Sequence

from peterrec.components import example_format

_MASK64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _MASK64  # negative int64 values are written as 10-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _int64_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))


def encode_features(features: Dict[str, bytes]) -> bytes:
    """Serialises an Example from already encoded Feature messages, keys sorted."""
    entries = b"".join(_field(1, _field(1, key.encode("utf-8")) + _field(2, value))
                       for key, value in sorted(features.items()))
    return _field(1, entries)


def encode_example(user_id: str, item_ids: Sequence[int], timestamps: Optional[Sequence[int]] = None,
                   label: Optional[int] = None, target_item_ids: Optional[Sequence[int]] = None) -> bytes:
    """Returns the serialised ``tf.train.Example`` that ``example_format.make_example`` builds."""
    features = {
        example_format.USER_ID: _bytes_feature([str(user_id).encode("utf-8")]),
        example_format.ITEM_IDS: _int64_feature(item_ids),
    }
    if timestamps is not None:
        if len(timestamps) != len(item_ids):
            raise ValueError(f"{len(timestamps)} timestamps for {len(item_ids)} items (user {user_id})")
        features[example_format.TIMESTAMPS] = _int64_feature(timestamps)
    if label is not None:
        features[example_format.LABEL] = _int64_feature([label])
    if target_item_ids is not None:
        features[example_format.TARGET_ITEM_IDS] = _int64_feature(target_item_ids)
    return encode_features(features)
