"""Tests of peterrec.serving.assembly: one SavedModel for many tasks reproduces every task model.

One tiny backbone (40 items, d=8, 2 blocks) and four tasks with random weights (two of them
share a structure, hence one traced forward), written as real artifacts and assembled once.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.serving import assembly, random_artifacts, served_tasks, serving_module, signatures

MAX_LEN = 6
TOP_K = 5
SPECS = [
    random_artifacts.TaskSpec("genre", "classification", "peterrec-serial", "tcl", num_classes=3, bottleneck=4),
    random_artifacts.TaskSpec("mood", "classification", "peterrec-serial", "tcl", num_classes=3, bottleneck=4),
    random_artifacts.TaskSpec("shop", "cold_start", "peterrec-parallel", "tcl+mean", num_targets=12, bottleneck=4),
    random_artifacts.TaskSpec("age", "classification", "fine-cls", "mean", num_classes=5),
    random_artifacts.TaskSpec("city", "classification", "iak", "tcl", num_classes=4, bottleneck=4),
    random_artifacts.TaskSpec("books", "cold_start", "fine-all", "tcl", num_targets=7),
    random_artifacts.TaskSpec("gender", "classification", "peterrec+items", "tcl+mean", num_classes=2, bottleneck=4,
                              item_rank=3),
]
# Right-padded rows: short, an unknown id, longer than MAX_LEN, "" inside, a reserved token.
ROWS = [
    ["item1", "item2", "item3"],
    ["item5", "never-seen"],
    [f"item{n}" for n in range(9)],
    ["item7", "", "item8"],
    ["<mask>", "item30", "item31", "item32", "item33", "item34", "item35"],
]


@pytest.fixture(scope="module")
def assembled(tmp_path_factory):
    import tensorflow as tf

    root = str(tmp_path_factory.mktemp("assembly"))
    made = random_artifacts.write_random_artifacts(root, SPECS, num_items=40, embedding_dim=8, dilations=(1, 2, 1, 2))
    result = assembly.export_serving_model(made.backbone_dir, [made.task_dirs[s.name] for s in SPECS],
                                           os.path.join(root, "models", "peterrec"), top_k=TOP_K, max_len=MAX_LEN)
    loaded = tf.saved_model.load(result.path)
    return made, result, loaded


def _call(loaded, name, rows):
    import tensorflow as tf

    outputs = loaded.signatures[name](items=tf.constant(signatures.pad_item_rows(rows)))
    return {key: value.numpy() for key, value in outputs.items()}


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_every_task_signature_reproduces_its_task_model(assembled):
    made, _, loaded = assembled
    item_ids = random_artifacts.left_padded_ids(made.vocabulary, ROWS, MAX_LEN)
    for spec in SPECS:
        logits = made.task_models[spec.name](item_ids, training=False).numpy()
        out = _call(loaded, spec.name, ROWS)
        names = made.metadata[spec.name].vocabulary().tokens
        if spec.kind == "classification":
            np.testing.assert_allclose(out["probabilities"], _softmax(logits), atol=1e-5)
            np.testing.assert_array_equal(out["label_id"], logits.argmax(axis=1))
            assert [x.decode() for x in out["label"]] == [names[i] for i in logits.argmax(axis=1)]
            assert out["classes"].shape == (len(ROWS), spec.num_classes)
            assert [x.decode() for x in out["classes"][0]] == list(names)
        else:
            real = logits[:, 1:]  # target id 0 is padding
            order = np.argsort(-real, axis=1)[:, :TOP_K]
            np.testing.assert_allclose(out["scores"], np.take_along_axis(real, order, axis=1), atol=1e-5)
            assert [[x.decode() for x in row] for row in out["items"]] == [[names[i] for i in row] for row in order]


def test_tasks_sharing_a_structure_keep_their_own_weights(assembled):
    _, _, loaded = assembled
    genre, mood = _call(loaded, "genre", ROWS), _call(loaded, "mood", ROWS)
    assert np.abs(genre["probabilities"] - mood["probabilities"]).max() > 1e-3


def test_embed_and_next_items_reproduce_the_pretrained_backbone(assembled):
    made, _, loaded = assembled
    item_ids = random_artifacts.left_padded_ids(made.vocabulary, ROWS, MAX_LEN)
    hidden = made.backbone(item_ids, training=False).numpy()
    mask = (item_ids != 0).astype(np.float32)[..., None]
    np.testing.assert_allclose(_call(loaded, "embed", ROWS)["embedding"], (hidden * mask).sum(1) / mask.sum(1),
                               atol=1e-5)
    scores = made.backbone.item_logits(hidden[:, -1, :]).numpy()[:, 4:]  # reserved ids excluded
    order = np.argsort(-scores, axis=1)[:, :TOP_K]
    out = _call(loaded, "next_items", ROWS)
    np.testing.assert_allclose(out["scores"], np.take_along_axis(scores, order, axis=1), atol=1e-5)
    tokens = made.vocabulary.tokens
    assert [[x.decode() for x in row] for row in out["items"]] == [[tokens[i] for i in row] for row in order]


def test_answers_do_not_depend_on_padding_or_batching(assembled):
    _, _, loaded = assembled
    together = _call(loaded, "shop", ROWS)
    for index, row in enumerate(ROWS):
        alone = _call(loaded, "shop", [row + [""] * 7])
        np.testing.assert_allclose(alone["scores"][0], together["scores"][index], atol=1e-5)
    # peterrec+items: the item table's padding row holds random values here, and is never read.
    together = _call(loaded, "gender", ROWS)
    for index, row in enumerate(ROWS):
        alone = _call(loaded, "gender", [row + [""] * 7])
        np.testing.assert_allclose(alone["probabilities"][0], together["probabilities"][index], atol=1e-5)


def test_items_become_left_padded_ids_of_the_most_recent_items(assembled, tmp_path):
    import tensorflow as tf

    made, _, _ = assembled
    module = serving_module.ServingModule(
        made.backbone, made.vocabulary, [], *serving_module.write_vocabulary_assets(made.vocabulary, str(tmp_path)),
        max_len=MAX_LEN)
    got = module.left_padded_ids(tf.constant(signatures.pad_item_rows(ROWS))).numpy()
    lookup = made.vocabulary.lookup
    assert got.shape == (len(ROWS), MAX_LEN)
    assert got[0].tolist() == [0, 0, 0] + [lookup(f"item{n}") for n in (1, 2, 3)]
    assert got[1].tolist() == [0, 0, 0, 0, lookup("item5"), 3]  # unknown -> UNK
    assert got[2].tolist() == [lookup(f"item{n}") for n in range(3, 9)]  # the most recent MAX_LEN
    assert got[3].tolist() == [0, 0, 0, 0, lookup("item7"), lookup("item8")]  # "" anywhere is padding
    assert got[4].tolist() == [lookup(f"item{n}") for n in range(30, 36)]
    np.testing.assert_array_equal(got, random_artifacts.left_padded_ids(made.vocabulary, ROWS, MAX_LEN))
    short = module.left_padded_ids(tf.constant([["item1", ""], ["", ""]])).numpy()
    assert short.tolist() == [[lookup("item1")], [0]]  # width: the longest row, at least 1
    module_unknown = module.left_padded_ids(tf.constant([["<mask>", "item1"]])).numpy()
    assert module_unknown.tolist() == [[3, lookup("item1")]]  # a reserved token sent by a client is unknown


def test_backbone_variables_are_stored_once(assembled):
    import tensorflow as tf

    made, result, _ = assembled
    stored = dict(tf.train.list_variables(os.path.join(result.path, "variables", "variables")))
    values = {key: int(np.prod(shape)) for key, shape in stored.items() if "VARIABLE_VALUE" in key}
    backbone = sum(int(np.prod(w.shape)) for w in made.backbone.weights)
    # a task stores its own variables; a fine-all copy of the backbone leaves its output layer out
    tasks = sum(int(np.prod(w.shape)) for m in made.task_models.values() for w in m.task_variables()
                if all(w is not x for x in m.backbone.output_layer.weights))
    assert sum(values.values()) == backbone + tasks
    vocab_size, dim = len(made.vocabulary), 8
    assert sum(1 for shape in stored.values() if list(shape) == [vocab_size, dim]) == 2  # embedding + scorer
    sizes = result.sizes
    assert set(sizes.patch_bytes) == {s.name for s in SPECS}
    assert sizes.separate_models_bytes == len(SPECS) * sizes.backbone_bytes + sizes.patches_total
    assert sizes.parts["variables"] < sizes.backbone_bytes + sizes.patches_total


def test_signatures_follow_the_contract_and_metadata(assembled):
    from peterrec.serving import servable, tensors

    _, result, _ = assembled
    defs = servable.read_signature_defs(result.path)
    classify = {signatures.classify_signature_name(s.name) for s in SPECS if s.kind == "classification"}
    assert set(defs) == {s.name for s in SPECS} | classify | {"embed", "next_items"}
    for name, definition in defs.items():
        def specs(mapping):
            return {k: (tensors.dtype_name(v.dtype), tensors.proto_shape(v.tensor_shape)) for k, v in mapping.items()}
        assert signatures.contract_problems(name, specs(definition.inputs), specs(definition.outputs)) == []
    document = signatures.read_tasks_metadata(result.path)
    assert document["max_len"] == MAX_LEN
    assert document["tasks"]["shop"]["kind"] == "cold_start" and document["tasks"]["shop"]["top_k"] == TOP_K
    assert document["tasks"]["genre"]["labels"] == ["class0", "class1", "class2"]
    assert document["tasks"]["next_items"]["top_k"] == TOP_K
    assert os.path.exists(os.path.join(result.path, "assets", serving_module.VOCABULARY_TSV))


def test_saved_model_cli_lists_every_signature(assembled):
    _, result, _ = assembled
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", result.path], capture_output=True, text=True,
                           timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in [s.name for s in SPECS] + ["embed", "next_items"]:
        assert f"signature_def['{name}']" in shown.stdout


def test_a_patch_of_another_backbone_is_refused(assembled, tmp_path):
    from peterrec.trainer import artifacts

    made, _, _ = assembled
    foreign = str(tmp_path / "foreign")
    shutil.copytree(made.task_dirs["genre"], foreign)
    path = os.path.join(foreign, "metadata.json")
    with open(path) as handle:
        metadata = json.load(handle)
    metadata["backbone_fingerprint"] = "0" * 64
    with open(path, "w") as handle:
        json.dump(metadata, handle)
    base = str(tmp_path / "models" / "m")
    with pytest.raises(artifacts.BackboneMismatchError, match="foreign"):
        assembly.export_serving_model(made.backbone_dir, [made.task_dirs["age"], foreign], base)
    assert not os.path.exists(base) or not os.listdir(base)


def test_task_names_must_be_unique_and_not_reserved(assembled, tmp_path):
    made, _, _ = assembled
    base = str(tmp_path / "m")
    with pytest.raises(assembly.AssemblyError, match="two artifacts are named 'genre'"):
        assembly.export_serving_model(made.backbone_dir, [made.task_dirs["genre"]] * 2, base)
    with pytest.raises(assembly.AssemblyError, match="reserved"):
        assembly.export_serving_model(made.backbone_dir, [f"embed={made.task_dirs['genre']}"], base)
    assert served_tasks.parse_task_argument("other=" + made.task_dirs["genre"]) == ("other", made.task_dirs["genre"])


def test_next_version_is_one_past_the_highest(tmp_path):
    assert assembly.next_version(str(tmp_path / "missing")) == 1
    for name in ("1", "5", ".export-x", "notes", "\u00b2"):  # "\u00b2".isdigit() but int() refuses it
        os.makedirs(tmp_path / name)
    assert assembly.next_version(str(tmp_path)) == 6


def test_server_and_client_round_trip_every_signature(assembled):
    from peterrec.serving import model_config
    from peterrec.serving.client import Client
    from peterrec.serving.server import Server

    _, result, loaded = assembled
    rows = ROWS[:3]
    entry = model_config.ModelEntry("peterrec", result.model_base)
    with Server(model_config=[entry], grpc_port=0, rest_port=0, poll_seconds=0) as server:
        for client in (Client(server.grpc_target), Client(server.rest_url, rest=True)):
            with client:
                recommended = client.recommend("shop", rows, k=3)
                expected = _call(loaded, "shop", rows)
                for row, answer in enumerate(recommended):
                    assert [item for item, _ in answer] == [x.decode() for x in expected["items"][row][:3]]
                    np.testing.assert_allclose([s for _, s in answer], expected["scores"][row][:3], atol=1e-5)
                for task in ("genre", "age"):
                    classified = client.classify(task, rows)
                    expected = _call(loaded, task, rows)
                    for row, answer in enumerate(classified):
                        assert answer.label == expected["label"][row].decode()
                        assert answer.label_id == expected["label_id"][row]
                        probabilities = [answer.probabilities[c.decode()] for c in expected["classes"][row]]
                        np.testing.assert_allclose(probabilities, expected["probabilities"][row], atol=1e-5)
                np.testing.assert_allclose(client.embed(rows), _call(loaded, "embed", rows)["embedding"], atol=1e-5)
                expected = _call(loaded, "next_items", rows)
                for row, answer in enumerate(client.next_items(rows, k=4)):
                    assert [item for item, _ in answer] == [x.decode() for x in expected["items"][row][:4]]
                kinds = {name: info["kind"] for name, info in client.metadata()["signatures"].items()}
                assert kinds == {**{s.name: s.kind for s in SPECS}, "embed": "embed", "next_items": "next_items"}
