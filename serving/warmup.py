"""Warm-up requests stored with a SavedModel, as TF Serving reads them.

``assets.extra/tf_serving_warmup_requests`` is a TFRecord file of
``tensorflow.serving.PredictionLog`` records; TF Serving (and this package's server)
replays them when a version loads, before it takes traffic, so the first real request
does not pay for lazy initialisation. ``contract_warmup_requests`` makes one Predict
request per signature of a served peterrec model (for a classify signature, the rows go in
as serialized tf.Examples).
"""

import os
from typing import Iterable, List, Sequence

from peterrec.serving import signatures

MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def warmup_path(version_dir: str) -> str:
    """Where a SavedModel version keeps its warm-up requests."""
    return os.path.join(version_dir, signatures.ASSETS_EXTRA_DIR, signatures.WARMUP_FILE)


def contract_warmup_requests(
    model_name: str, signature_names: Iterable[str], rows: Sequence[Sequence[str]] = (("warmup",),)
) -> list:
    """One ``PredictRequest`` per signature, feeding ``rows`` of item ids as ``items`` (or, to a
    classify signature, as serialized tf.Examples in ``inputs``)."""
    from tensorflow_serving.apis import predict_pb2

    from peterrec.serving import tensors
    from peterrec.serving.classify_requests import serialized_item_examples

    items = tensors.ndarray_to_tensor_proto(tensors.string_array(signatures.pad_item_rows(rows)))
    examples = tensors.ndarray_to_tensor_proto(tensors.string_array(serialized_item_examples(rows)))
    requests = []
    for name in signature_names:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = name
        if signatures.is_classify_signature(name):
            request.inputs[signatures.CLASSIFY_INPUTS].CopyFrom(examples)
        else:
            request.inputs[signatures.INPUT_ITEMS].CopyFrom(items)
        requests.append(request)
    return requests


def write_warmup_requests(version_dir: str, requests: Sequence) -> str:
    """Writes Predict requests as PredictionLog records into ``assets.extra``; returns the path."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    if not requests:
        raise ValueError("no warm-up requests to write")
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warm-up requests; TF Serving reads at most {MAX_WARMUP_RECORDS}")
    path = warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: str, limit: int = MAX_WARMUP_RECORDS) -> List:
    """The Predict requests of a version's warm-up file (empty if it has none).

    Raises ValueError for a record that is not a PredictionLog with a predict_log.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = warmup_path(version_dir)
    if not os.path.exists(path):
        return []
    requests = []
    for index, record in enumerate(tf.data.TFRecordDataset(path)):
        if index >= limit:
            raise ValueError(f"{path} holds more than {limit} warm-up records")
        log = prediction_log_pb2.PredictionLog()
        log.ParseFromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            raise ValueError(f"{path} record {index} is a {log.WhichOneof('log_type')}; only predict_log is replayed")
        requests.append(log.predict_log.request)
    return requests
