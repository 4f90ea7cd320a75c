"""TaskExampleGen consumes InteractionExampleGen's Vocabulary artifact in a local TFX pipeline.

One pipeline (LocalDagRunner, SQLite metadata, tiny CSVs written here): InteractionExampleGen
on the source domain, then a classification task (labels from a user,gender CSV) and a
cold-start task (target-domain items) built over its item vocabulary. Checked through the
metadata store: executions complete, the task examples use the item vocabulary's ids,
labels and targets map through the task vocabularies, and the artifacts carry the task's
name, kind and fingerprints.
"""

import json
import os
import random

import pytest

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
NUM_USERS = 30
UNKNOWN_USER_LINE = "u999,F"


def write_two_domain_data(root: str):
    """Writes interactions (user,item,timestamp,domain) and a gender table; returns their paths."""
    rng = random.Random(3)
    interactions = ["user,item,timestamp,domain"]
    labels = ["user,gender"]
    for user in range(NUM_USERS):
        gender = "F" if user % 3 == 0 else "M"
        labels.append(f"u{user},{gender}")
        for step in range(rng.randint(3, 8)):
            interactions.append(f"u{user},s{rng.randint(0, 19)},{100 + step}")
        for step in range(rng.randint(1, 4)):
            interactions.append(f"u{user},t{rng.randint(0, 9)},{200 + step},target")
    # Every row names its domain: source rows get theirs here.
    interactions = [line if line.count(",") == 3 else line + ",source" for line in interactions]
    labels.append(UNKNOWN_USER_LINE)
    paths = (os.path.join(root, "interactions.csv"), os.path.join(root, "gender.csv"))
    for path, lines in zip(paths, (interactions, labels)):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return paths


def outputs_of(store, execution_id: int):
    """Returns {output key: artifact} of one execution (keys from the event paths)."""
    from ml_metadata.proto import metadata_store_pb2

    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    return {e.path.steps[0].key: artifacts[e.artifact_id] for e in events}


def test_task_example_gen_uses_the_vocabulary_artifact(tmp_path):
    from ml_metadata import metadata_store as mlmd_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline
    from tfx.orchestration.local import local_dag_runner

    from peterrec.components import example_format
    from peterrec.components.component import InteractionExampleGen, TaskExampleGen
    from peterrec.components.ingest import IngestConfig
    from peterrec.components.vocabulary import Vocabulary

    root = str(tmp_path)
    interactions, gender_table = write_two_domain_data(root)
    base = IngestConfig(source_format="csv", source_path=interactions, max_len=6, domain="source",
                        max_reject_fraction=0.05)
    gen = InteractionExampleGen(base)
    gender = TaskExampleGen(task_name="gender", kind="classification", vocabulary=gen.outputs["vocabulary"],
                            task_config=base, label_format="csv", label_path=gender_table, attribute="gender")
    cold = TaskExampleGen(task_name="cold_target", kind="cold_start", vocabulary=gen.outputs["vocabulary"],
                          task_config=base, max_target_items=2)
    assert (gender.id, cold.id) == ("TaskExampleGen_gender", "TaskExampleGen_cold_target")
    connection = metadata.sqlite_metadata_connection_config(os.path.join(root, "mlmd.sqlite"))
    pipeline = tfx_pipeline.Pipeline(pipeline_name="peterrec-task-test", pipeline_root=os.path.join(root, "pipeline"),
                                metadata_connection_config=connection, components=[gen, gender, cold],
                                enable_cache=True, beam_pipeline_args=BEAM_ARGS)
    local_dag_runner.LocalDagRunner().run(pipeline)

    store = mlmd_store.MetadataStore(connection)
    executions = {e.custom_properties["__tfx_node_id__"].string_value if "__tfx_node_id__" in e.custom_properties
                  else e.name: e for e in store.get_executions()}
    assert len(executions) == 3
    assert all(e.last_known_state == metadata_store_pb2.Execution.COMPLETE for e in executions.values())
    by_type = {t.id: t.name for t in store.get_execution_types()}
    by_name = {by_type[e.type_id]: e for e in executions.values()}
    gen_execution = next(e for name, e in by_name.items() if name.endswith("InteractionExampleGen"))
    item_artifact = outputs_of(store, gen_execution.id)["vocabulary"]
    items = Vocabulary.load(item_artifact.uri)
    assert all(token.startswith("s") for token in items.tokens), "only source-domain items in the item vocabulary"

    task_executions = [e for e in store.get_executions() if e.id != gen_execution.id]
    results = {}
    for execution in task_executions:
        # The task consumed the Vocabulary artifact InteractionExampleGen published.
        inputs = [ev.artifact_id for ev in store.get_events_by_execution_ids([execution.id])
                  if ev.type == metadata_store_pb2.Event.INPUT]
        assert inputs == [item_artifact.id]
        outputs = outputs_of(store, execution.id)
        assert set(outputs) == {"examples", "task_vocabulary", "rejects"}
        name = outputs["examples"].custom_properties["task_name"].string_value
        results[name] = outputs
        for artifact in outputs.values():
            assert artifact.custom_properties["task_name"].string_value == name
        assert outputs["examples"].custom_properties["vocabulary_fingerprint"].string_value == items.fingerprint
        assert outputs["examples"].custom_properties["file_format"].string_value == "tfrecords_gzip"
    assert set(results) == {"gender", "cold_target"}

    # Classification: a label per user from the gender table; the unknown user is rejected.
    outputs = results["gender"]
    assert outputs["examples"].custom_properties["task_kind"].string_value == "classification"
    labels = Vocabulary.load(outputs["task_vocabulary"].uri)
    assert labels.kind == "label" and sorted(labels.tokens) == ["F", "M"]
    assert labels.fingerprint == outputs["task_vocabulary"].custom_properties["fingerprint"].string_value
    seen = {}
    for split in ("train", "eval", "test"):
        for example in example_format.read_examples(outputs["examples"].uri, split):
            record = example_format.example_to_dict(example)
            assert all(items.token(i).startswith("s") for i in record[example_format.ITEM_IDS])
            seen[record[example_format.USER_ID]] = labels.token(record[example_format.LABEL])
    assert seen == {f"u{u}": ("F" if u % 3 == 0 else "M") for u in range(NUM_USERS)}
    rejects_uri = outputs["rejects"].uri
    with open(os.path.join(rejects_uri, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["rejects_by_reason"].get("unknown_user") == 1
    reject_lines = [json.loads(line)["line"] for name in os.listdir(rejects_uri) if name.endswith(".jsonl")
                    for line in open(os.path.join(rejects_uri, name), encoding="utf-8") if line.strip()]
    assert reject_lines == [UNKNOWN_USER_LINE]

    # Cold start: target-domain items through the target vocabulary, at most 2 for train users.
    outputs = results["cold_target"]
    assert outputs["task_vocabulary"].custom_properties["task_kind"].string_value == "cold_start"
    targets = Vocabulary.load(outputs["task_vocabulary"].uri)
    assert targets.kind == "target" and all(token.startswith("t") for token in targets.tokens)
    users = 0
    for split in ("train", "eval", "test"):
        for example in example_format.read_examples(outputs["examples"].uri, split):
            record = example_format.example_to_dict(example)
            target_ids = record[example_format.TARGET_ITEM_IDS]
            assert target_ids and all(targets.token(i).startswith("t") for i in target_ids)
            assert all(items.token(i).startswith("s") for i in record[example_format.ITEM_IDS])
            if split == "train":
                assert len(target_ids) <= 2
            users += 1
    assert users == NUM_USERS


def test_task_config_errors_are_clear():
    from tfx.types import Channel

    from peterrec.components.artifact_types import Vocabulary
    from peterrec.components.component import TaskExampleGen
    from peterrec.components.executor import ComponentConfigError

    vocabulary = Channel(type=Vocabulary)
    fields = dict(source_format="csv", source_path="/data/x.csv")
    with pytest.raises(ComponentConfigError, match="task kind"):
        TaskExampleGen(task_name="g", kind="regression", vocabulary=vocabulary, **fields)
    with pytest.raises(ComponentConfigError, match="signature name"):
        TaskExampleGen(task_name="my task", kind="classification", vocabulary=vocabulary, **fields)
    with pytest.raises(ComponentConfigError, match="unknown field"):
        TaskExampleGen(task_name="g", kind="classification", vocabulary=vocabulary, max_target_items=3, **fields)
    with pytest.raises(ComponentConfigError, match="label_path"):
        TaskExampleGen(task_name="g", kind="classification", vocabulary=vocabulary, label_format="csv", **fields)
    with pytest.raises(ComponentConfigError, match="max_target_items"):
        TaskExampleGen(task_name="c", kind="cold_start", vocabulary=vocabulary, max_target_items=0, **fields)
    task = TaskExampleGen(task_name="c", kind="cold-start", vocabulary=vocabulary, max_target_items=3, **fields)
    assert task.exec_properties["kind"] == "cold_start"
    assert json.loads(task.exec_properties["task_config"])["max_target_items"] == 3
