"""The local pipeline end to end on the tiny config (LocalDagRunner, SQLite, Beam in memory).

One run (``peterrec.pipeline.testing.shared_run``) serves every check: one execution per
component, all complete; the artifacts are wired as the design says (the fine-tuning Trainers
get the pretrained backbone as base_model, the vocabularies of the ingestion); each task is
evaluated against its baseline and blessed; the pushed model serves every task through the
client; the training runs left TensorBoard logs; and ``peterrec demo`` on the same folder
answers one request per task.
"""

import json
import os

import pytest

from peterrec.pipeline import metadata, pipeline, testing


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return testing.shared_run(str(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def first_run(shared):
    store = metadata.open_store(shared.pipeline_root)
    return store, metadata.latest_by_node(store, shared.result.run_id)


def test_one_execution_per_component_all_complete(shared, first_run):
    store, executions = first_run
    records = metadata.run_executions(store, shared.result.run_id)
    assert sorted(r.node_id for r in records) == sorted(pipeline.component_ids(shared.config)), \
        "exactly one execution per component"
    assert {r.state for r in records} == {"COMPLETE"}, {r.node_id: r.state for r in records}
    assert shared.result.cached() == []


def test_artifacts_are_wired_as_designed(first_run):
    _, executions = first_run
    gen = executions["SequenceExampleGen"]
    backbone = executions["Trainer_pretrain"].output("model")
    vocabulary = gen.output("vocabulary")
    assert [a.id for a in executions["Trainer_pretrain"].inputs["item_vocabulary"]] == [vocabulary.id]
    for task in ("gender", "cold_start"):
        trainer = executions[f"Trainer_{task}"]
        assert [a.id for a in trainer.inputs["base_model"]] == [backbone.id], "fine-tuning starts from the backbone"
        assert [a.id for a in trainer.inputs["item_vocabulary"]] == [vocabulary.id]
        task_gen = executions[f"TaskExampleGen_{task}"]
        assert [a.id for a in trainer.inputs["examples"]] == [task_gen.output("examples").id]
        assert [a.id for a in trainer.inputs["task_vocabulary"]] == [task_gen.output("task_vocabulary").id]
        assembler = executions["ServingModelAssembler"]
        assert [a.id for a in assembler.inputs[f"patch_{task}"]] == [trainer.output("model").id]
    assert [a.id for a in executions["ServingModelAssembler"].inputs["backbone"]] == [backbone.id]


def test_patches_are_small_and_on_the_pretrained_backbone(first_run):
    from peterrec.pipeline.components import backbone_dir_of, patch_dir_of
    from peterrec.trainer import artifacts

    _, executions = first_run
    backbone_dir = backbone_dir_of(executions["Trainer_pretrain"].output("model"))
    fingerprint = artifacts.read_backbone_metadata(backbone_dir)["fingerprint"]
    for task, strategy in (("gender", "peterrec-serial"), ("cold_start", "peterrec-parallel")):
        patch = artifacts.read_patch_metadata(patch_dir_of(executions[f"Trainer_{task}"].output("model")))
        assert (patch.task_name, patch.strategy, patch.backbone_fingerprint) == (task, strategy, fingerprint)
        assert 0 < patch.trainable_params < patch.fine_all_params


def test_each_task_beats_its_baseline_and_is_blessed(first_run):
    _, executions = first_run
    for task, metric, baseline in (("gender", "accuracy", "majority"), ("cold_start", "hr@10", "popularity")):
        record = executions[f"TaskEvaluator_{task}"]
        with open(os.path.join(record.output("evaluation").uri, "metrics.json"), encoding="utf-8") as handle:
            report = json.load(handle)
        assert (report["metric"], report["baseline"], report["split"]) == (metric, baseline, "test")
        assert report["value"] > report["baseline_value"], report["reason"]
        assert report["blessed"] and report["examples"] > 0
        blessing = record.output("blessing")
        assert metadata.artifact_property(blessing, "blessed") == 1
        assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assembled = executions["ServingModelAssembler"]
    assert metadata.artifact_property(assembled.output("blessing"), "blessed") == 1
    assert metadata.artifact_property(assembled.output("model"), "tasks") == "gender,cold_start"


def test_the_model_is_pushed_as_a_version_with_models_config(shared, first_run):
    from peterrec.serving import model_config

    _, executions = first_run
    pushed = executions["Pusher"].output("pushed_model")
    assert metadata.artifact_property(pushed, "pushed") == 1
    assert (shared.result.pushed_version, shared.result.pushed_path) == (
        1, os.path.join(shared.result.model_base, "1"))
    assert os.path.exists(os.path.join(shared.result.pushed_path, "saved_model.pb"))
    entries = model_config.entries_of(model_config.read_model_config(shared.result.model_config_path))
    assert [(e.name, e.base_path) for e in entries] == [("peterrec", shared.result.model_base)]


def test_the_pushed_model_serves_every_task_through_the_client(shared):
    from peterrec.components.vocabulary import Vocabulary
    from peterrec.serving.client import Client
    from peterrec.serving.server import Server

    run = shared.result
    items = Vocabulary.load(metadata.latest_by_node(metadata.open_store(shared.pipeline_root), run.run_id)
                            ["SequenceExampleGen"].output("vocabulary").uri).tokens[:6]
    with Server(run.model_config_path, grpc_port=0, rest_port=None) as server:
        with Client(server.grpc_target, model_name="peterrec") as client:
            described = client.metadata()
            assert described["version"] == run.pushed_version
            kinds = {name: info["kind"] for name, info in described["signatures"].items()}
            assert kinds == {"gender": "classification", "cold_start": "cold_start", "embed": "embed",
                             "next_items": "next_items"}, kinds
            gender = client.classify("gender", items)
            assert gender.label in ("F", "M") and set(gender.probabilities) == {"F", "M"}
            assert abs(sum(gender.probabilities.values()) - 1.0) < 1e-4
            recommended = client.recommend("cold_start", items, k=5)
            assert len(recommended) == 5 and all(item.startswith("t") for item, _ in recommended)
            scores = [score for _, score in recommended]
            assert scores == sorted(scores, reverse=True)
            assert client.embed(items).shape == (16,)
            assert all(item.startswith("s") for item, _ in client.next_items(items, k=3))


def test_training_runs_left_tensorboard_logs(shared):
    from peterrec.pipeline.tensorboard import event_dirs

    runs = [os.path.relpath(d, shared.pipeline_root) for d in event_dirs(shared.pipeline_root)]
    for trainer in ("Trainer_pretrain", "Trainer_gender", "Trainer_cold_start"):
        assert any(run.startswith(os.path.join(trainer, "model_run")) for run in runs), (trainer, runs)


def test_demo_on_the_same_folder_answers_every_task(shared):
    from peterrec.pipeline import demo

    lines = []
    result = demo.run_demo(shared.workdir, shared.config, beam_pipeline_args=testing.BEAM_ARGS, log=lines.append)
    assert result.run.executed() == [], "the demo reuses the finished run from the cache"
    assert set(result.answers) == {"gender", "cold_start", "next_items"}
    text = "\n".join(lines)
    assert "gender (classification):" in text and "cold_start (cold start): top 5:" in text
    assert f"held-out user {result.user.user_id}" in text and "== done in" in text
    assert result.user.labels["gender"] in ("F", "M")
