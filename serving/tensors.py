"""Fast, checked conversions between numpy arrays and ``tensorflow.TensorProto``.

The server converts every request input and response output, so these avoid the
general (slower) ``tf.make_tensor_proto`` path for the dtypes signatures use, and they
check a proto's declared size *before* allocating anything: a client cannot make the
server build a huge array from a tiny message.
"""

from typing import Optional, Sequence, Tuple

import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2

from peterrec.serving import errors

# dtype enum -> (numpy dtype, name of the repeated value field, TF dtype name)
_NUMERIC = {
    types_pb2.DT_FLOAT: (np.float32, "float_val", "float32"),
    types_pb2.DT_DOUBLE: (np.float64, "double_val", "float64"),
    types_pb2.DT_INT32: (np.int32, "int_val", "int32"),
    types_pb2.DT_INT16: (np.int16, "int_val", "int16"),
    types_pb2.DT_INT8: (np.int8, "int_val", "int8"),
    types_pb2.DT_UINT8: (np.uint8, "int_val", "uint8"),
    types_pb2.DT_UINT16: (np.uint16, "int_val", "uint16"),
    types_pb2.DT_INT64: (np.int64, "int64_val", "int64"),
    types_pb2.DT_UINT32: (np.uint32, "uint32_val", "uint32"),
    types_pb2.DT_UINT64: (np.uint64, "uint64_val", "uint64"),
    types_pb2.DT_BOOL: (np.bool_, "bool_val", "bool"),
}
_ENUM_OF_NUMPY = {np.dtype(numpy_dtype): enum for enum, (numpy_dtype, _, _) in _NUMERIC.items()}
_NAMES = {enum: name for enum, (_, _, name) in _NUMERIC.items()}
_NAMES[types_pb2.DT_STRING] = "string"
_ENUM_OF_NAME = {name: enum for enum, name in _NAMES.items()}


def dtype_name(enum: int) -> str:
    """TF's name of a ``DataType`` enum value ("float32", "string"...)."""
    if enum in _NAMES:
        return _NAMES[enum]
    try:
        return types_pb2.DataType.Name(enum)
    except ValueError:
        return f"dtype#{enum}"


def dtype_enum(name: str) -> int:
    """The ``DataType`` enum value of a TF dtype name."""
    if name not in _ENUM_OF_NAME:
        raise ValueError(f"unsupported dtype {name!r}")
    return _ENUM_OF_NAME[name]


def numpy_dtype(enum: int):
    """The numpy dtype of a supported ``DataType`` (``object`` for strings)."""
    if enum == types_pb2.DT_STRING:
        return np.dtype(object)
    if enum not in _NUMERIC:
        raise errors.invalid_argument(f"unsupported tensor dtype {dtype_name(enum)}")
    return np.dtype(_NUMERIC[enum][0])


def proto_shape(proto) -> Optional[Tuple[int, ...]]:
    """The shape of a ``TensorShapeProto`` (None for unknown rank; -1 for unknown sizes)."""
    if proto.unknown_rank:
        return None
    return tuple(int(dim.size) for dim in proto.dim)


def tensor_proto_to_ndarray(proto, name: str = "tensor", max_elements: Optional[int] = None) -> np.ndarray:
    """Converts a request ``TensorProto`` to numpy, raising INVALID_ARGUMENT on a bad proto.

    Strings come back as an object array of ``bytes``. ``max_elements`` bounds the
    declared size, checked before any allocation.
    """
    shape = proto_shape(proto.tensor_shape)
    if shape is None:
        raise errors.invalid_argument(f"input {name!r} has an unknown rank; send a concrete shape")
    if any(size < 0 for size in shape):
        raise errors.invalid_argument(f"input {name!r} has a negative dimension in shape {list(shape)}")
    count = 1
    for size in shape:
        count *= size
    if max_elements is not None and count > max_elements:
        raise errors.invalid_argument(
            f"input {name!r} has {count} elements (shape {list(shape)}); the limit is {max_elements}"
        )
    dtype = proto.dtype
    if dtype == types_pb2.DT_STRING:
        values = list(proto.string_val)
        if len(values) == count:
            array = np.empty(count, dtype=object)
            array[:] = values
            return array.reshape(shape)
        if len(values) == 1:  # TF's convention: one value fills the tensor
            array = np.empty(count, dtype=object)
            array[:] = values * count
            return array.reshape(shape)
        raise errors.invalid_argument(
            f"input {name!r} declares shape {list(shape)} ({count} values) but holds {len(values)} strings"
        )
    if dtype not in _NUMERIC:
        raise errors.invalid_argument(f"input {name!r} has unsupported dtype {dtype_name(dtype)}")
    np_dtype, field, _ = _NUMERIC[dtype]
    np_dtype = np.dtype(np_dtype)
    if proto.tensor_content:
        if len(proto.tensor_content) != count * np_dtype.itemsize:
            raise errors.invalid_argument(
                f"input {name!r} declares shape {list(shape)} of {dtype_name(dtype)} "
                f"({count * np_dtype.itemsize} bytes) but its tensor_content has {len(proto.tensor_content)} bytes"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    values = getattr(proto, field)
    if len(values) == count:
        return np.asarray(values, dtype=np_dtype).reshape(shape)
    if len(values) == 1 or (len(values) == 0 and count > 0):
        fill = values[0] if len(values) else 0
        return np.full(shape, fill, dtype=np_dtype)
    raise errors.invalid_argument(
        f"input {name!r} declares shape {list(shape)} ({count} values) but holds {len(values)} values"
    )


def ndarray_to_tensor_proto(array, proto=None) -> "tensor_pb2.TensorProto":
    """Converts a numpy array (object/bytes/str arrays become DT_STRING) to a ``TensorProto``.

    Fills ``proto`` in place when given (e.g. ``response.outputs[name]``, saving a copy).
    """
    array = np.asarray(array)
    if proto is None:
        proto = tensor_pb2.TensorProto()
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    kind = array.dtype.kind
    if kind in ("O", "S", "U"):
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            value if isinstance(value, bytes) else str(value).encode("utf-8") for value in array.reshape(-1)
        )
        return proto
    enum = _ENUM_OF_NUMPY.get(array.dtype.newbyteorder("=") if array.dtype.byteorder == ">" else array.dtype)
    if enum is None:
        raise errors.ServingError(errors.INTERNAL, f"cannot encode a numpy array of dtype {array.dtype}")
    proto.dtype = enum
    proto.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return proto


def string_array(rows: Sequence) -> np.ndarray:
    """An object array of utf-8 ``bytes`` from nested lists of str/bytes (rectangular)."""
    array = np.array(rows, dtype=object)
    flat = array.reshape(-1)
    for index, value in enumerate(flat):
        if isinstance(value, str):
            flat[index] = value.encode("utf-8")
        elif not isinstance(value, bytes):
            raise ValueError(f"expected strings, got {type(value).__name__} {value!r}")
    return array
