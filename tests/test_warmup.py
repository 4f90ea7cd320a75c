"""Tests of peterrec.serving.warmup: TF Serving's warm-up file, and the one an assembled model ships."""

import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.serving import assembly, random_artifacts, served_tasks, serving_module, signatures, warmup


def test_requests_round_trip_through_the_tfrecord_file(tmp_path):
    rows = [["a", "b"], ["c"]]
    requests = warmup.contract_warmup_requests("m", ["shop", "embed"], rows)
    path = warmup.write_warmup_requests(str(tmp_path), requests)
    assert path == os.path.join(str(tmp_path), "assets.extra", "tf_serving_warmup_requests")
    read = warmup.read_warmup_requests(str(tmp_path))
    assert [r.model_spec.signature_name for r in read] == ["shop", "embed"]
    assert all(r.model_spec.name == "m" for r in read)
    from peterrec.serving import tensors

    items = tensors.tensor_proto_to_ndarray(read[0].inputs["items"], "items")
    assert items.tolist() == [[b"a", b"b"], [b"c", b""]]  # right-padded with ""


def test_bad_files_and_requests_are_refused(tmp_path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    assert warmup.read_warmup_requests(str(tmp_path)) == []
    with pytest.raises(ValueError, match="no warm-up requests"):
        warmup.write_warmup_requests(str(tmp_path), [])
    too_many = warmup.contract_warmup_requests("m", ["embed"]) * (warmup.MAX_WARMUP_RECORDS + 1)
    with pytest.raises(ValueError, match="at most"):
        warmup.write_warmup_requests(str(tmp_path), too_many)
    path = warmup.warmup_path(str(tmp_path))
    os.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        log = prediction_log_pb2.PredictionLog()
        log.classify_log.request.model_spec.name = "m"
        writer.write(log.SerializeToString())
    with pytest.raises(ValueError, match="only predict_log"):
        warmup.read_warmup_requests(str(tmp_path))


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory):
    """A small assembled model (one task, embed, next_items) saved with warm-up requests."""
    root = str(tmp_path_factory.mktemp("warmup"))
    vocabulary = random_artifacts.item_vocabulary(20)
    backbone = random_artifacts.build_backbone(vocabulary, embedding_dim=4, dilations=(1, 2))
    model, metadata = random_artifacts.build_task(backbone, vocabulary, random_artifacts.TaskSpec(
        "genre", "classification", "fine-cls", "mean", num_classes=3))
    task = served_tasks.served_task(model, metadata)
    module, concrete = serving_module.build_serving_module(backbone, vocabulary, [task], os.path.join(root, "assets"))
    _, path = assembly.save_version(module, concrete, os.path.join(root, "models", "peterrec"),
                                    assembly.task_entries(module, [task], backbone), assembly.warmup_rows(vocabulary))
    return path


def test_an_assembled_model_warms_up_every_signature(version_dir):
    import tensorflow as tf

    from peterrec.serving import tensors

    requests = warmup.read_warmup_requests(version_dir)
    assert sorted(r.model_spec.signature_name for r in requests) == ["embed", "genre", "genre_classify",
                                                                     "next_items"]
    assert all(r.model_spec.name == "peterrec" for r in requests)
    loaded = tf.saved_model.load(version_dir)
    for request in requests:
        name = request.model_spec.signature_name
        key = signatures.CLASSIFY_INPUTS if signatures.is_classify_signature(name) else signatures.INPUT_ITEMS
        feed = tensors.tensor_proto_to_ndarray(request.inputs[key], key)
        assert feed.shape[0] == 2 and assembly.WARMUP_UNKNOWN_ITEM.encode() in b"".join(feed.ravel())
        outputs = loaded.signatures[name](**{key: tf.constant(feed)})
        assert all(np.all(np.isfinite(v.numpy())) for v in outputs.values() if v.dtype.is_floating)


def test_loading_a_version_replays_them(version_dir):
    from peterrec.serving import servable as servable_module

    servable = servable_module.load_servable("peterrec", 1, version_dir, warmup=True)
    assert {name: runner.calls for name, runner in servable.runners.items()} == {
        "embed": 1, "genre": 1, "genre_classify": 1, "next_items": 1}
