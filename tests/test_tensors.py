"""numpy <-> TensorProto conversions, agreeing with TensorFlow's and refusing bad protos early."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from peterrec.serving import errors, tensors


@pytest.mark.parametrize("array", [
    np.arange(6, dtype=np.float32).reshape(2, 3),
    np.arange(4, dtype=np.int64),
    np.array([[True, False]]),
    np.array([[b"a", b""], [b"\xff", b"ccc"]], dtype=object),
])
def test_round_trip_and_agreement_with_tensorflow(array):
    proto = tensors.ndarray_to_tensor_proto(array)
    back = tensors.tensor_proto_to_ndarray(proto)
    assert back.dtype == array.dtype and back.tolist() == array.tolist()
    assert tf.make_ndarray(proto).tolist() == array.tolist()
    assert tensors.tensor_proto_to_ndarray(tf.make_tensor_proto(array)).tolist() == array.tolist()


def test_str_arrays_become_utf8_strings():
    proto = tensors.ndarray_to_tensor_proto(np.array(["é", "b"]))
    assert proto.dtype == types_pb2.DT_STRING and list(proto.string_val) == ["é".encode(), b"b"]


def test_typed_value_fields_and_the_single_value_fill():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.5])
    proto.tensor_shape.dim.add(size=3)
    assert tensors.tensor_proto_to_ndarray(proto).tolist() == [1.5, 1.5, 1.5]
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[1, 2])
    proto.tensor_shape.dim.add(size=2)
    assert tensors.tensor_proto_to_ndarray(proto).tolist() == [1, 2]


def _proto(dtype, shape, **fields):
    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


@pytest.mark.parametrize("proto, text", [
    (_proto(types_pb2.DT_FLOAT, [2, 2], tensor_content=b"\x00" * 12), "tensor_content has 12 bytes"),
    (_proto(types_pb2.DT_FLOAT, [3], float_val=[1.0, 2.0]), "holds 2 values"),
    (_proto(types_pb2.DT_STRING, [3], string_val=[b"a", b"b"]), "holds 2 strings"),
    (_proto(types_pb2.DT_STRING, [-1]), "negative dimension"),
    (_proto(types_pb2.DT_STRING, [10 ** 6, 10 ** 6], string_val=[b"a"]), "the limit is 1000"),
    (_proto(types_pb2.DT_COMPLEX64, [1]), "unsupported dtype"),
])
def test_bad_protos_are_invalid_arguments(proto, text):
    with pytest.raises(errors.ServingError) as raised:
        tensors.tensor_proto_to_ndarray(proto, "items", max_elements=1000)
    assert raised.value.code == errors.INVALID_ARGUMENT and text in raised.value.message


def test_string_array():
    assert tensors.string_array([["a", b"b"]]).tolist() == [[b"a", b"b"]]
    with pytest.raises(ValueError, match="expected strings"):
        tensors.string_array([[1]])


def test_dtype_names():
    assert tensors.dtype_name(types_pb2.DT_STRING) == "string"
    assert tensors.dtype_enum("float32") == types_pb2.DT_FLOAT
    assert tensors.numpy_dtype(types_pb2.DT_STRING) == np.dtype(object)
