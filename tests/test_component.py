"""InteractionExampleGen in a local TFX mini-pipeline: -> StatisticsGen -> SchemaGen -> ExampleValidator.

The pipeline runs with the LocalDagRunner and SQLite metadata in a temporary folder on a
tiny CSV written here; every check goes through the metadata store, as the pipeline
(issue 5) will: executions complete, artifacts published with their properties, the
Examples split folders hold TFRecords, the Vocabulary artifact loads and matches its
fingerprint property, and a rerun is served from the cache unless the source changed.
"""

import json
import os
import random

import pytest

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
NUM_USERS = 40
BAD_LINES = ["u7,notanumber_item_ok,abc", "just-one-field"]


def write_interactions(path: str, num_users: int = NUM_USERS, seed: int = 0) -> int:
    """Writes a small user,item,timestamp CSV (plus two bad lines); returns the data lines."""
    rng = random.Random(seed)
    lines = ["user,item,timestamp"]
    for user in range(num_users):
        for step in range(rng.randint(3, 12)):
            lines.append(f"u{user},i{rng.randint(0, 29)},{1000 + 10 * step}")
    lines[5:5] = BAD_LINES
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return len(lines) - 1


def build_pipeline(root: str, source_path: str, with_validation: bool = True):
    """The mini-pipeline: InteractionExampleGen (-> StatisticsGen -> SchemaGen -> ExampleValidator)."""
    # Module imports, not tfx.v1: that one also loads the Kubeflow and Vertex clients (~18 s CPU).
    from tfx.components import ExampleValidator, SchemaGen, StatisticsGen
    from tfx.orchestration import metadata
    from tfx.orchestration import pipeline as tfx_pipeline

    from peterrec.components.component import InteractionExampleGen

    gen = InteractionExampleGen(source_format="csv", source_path=source_path, max_len=8,
                             max_reject_fraction=0.05)
    components = [gen]
    if with_validation:
        statistics = StatisticsGen(examples=gen.outputs["examples"])
        schema = SchemaGen(statistics=statistics.outputs["statistics"])
        validator = ExampleValidator(statistics=statistics.outputs["statistics"],
                                     schema=schema.outputs["schema"])
        components += [statistics, schema, validator]
    return tfx_pipeline.Pipeline(
        pipeline_name="peterrec-component-test",
        pipeline_root=os.path.join(root, "pipeline"),
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite")),
        components=components,
        enable_cache=True,
        beam_pipeline_args=BEAM_ARGS,
    )


def metadata_store(root: str):
    from ml_metadata import metadata_store as mlmd_store
    from tfx.orchestration import metadata

    return mlmd_store.MetadataStore(metadata.sqlite_metadata_connection_config(
        os.path.join(root, "metadata.sqlite")))


def outputs_of(store, execution_id: int):
    """Returns {artifact type name: artifact} of one execution's outputs."""
    from ml_metadata.proto import metadata_store_pb2

    ids = [e.artifact_id for e in store.get_events_by_execution_ids([execution_id])
           if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = store.get_artifacts_by_id(ids)
    types = {t.id: t.name for t in store.get_artifact_types_by_id([a.type_id for a in artifacts])}
    return {types[a.type_id]: a for a in artifacts}


def test_mini_pipeline_runs_all_four_components(tmp_path):
    from ml_metadata.proto import metadata_store_pb2
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.orchestration.local import local_dag_runner
    from tfx.types import artifact_utils

    from peterrec.components import example_format
    from peterrec.components.vocabulary import Vocabulary

    root = str(tmp_path)
    source = os.path.join(root, "interactions.csv")
    data_lines = write_interactions(source)
    local_dag_runner.LocalDagRunner().run(build_pipeline(root, source))

    store = metadata_store(root)
    executions = store.get_executions()
    assert len(executions) == 4
    assert {e.last_known_state for e in executions} == {metadata_store_pb2.Execution.COMPLETE}

    by_type = {t.id: t.name for t in store.get_execution_types()}
    gen_execution = next(e for e in executions if by_type[e.type_id].endswith("InteractionExampleGen"))
    outputs = outputs_of(store, gen_execution.id)
    assert set(outputs) == {"Examples", "peterrec.Vocabulary", "peterrec.IngestRejects"}
    examples, vocab_artifact, rejects = (outputs["Examples"], outputs["peterrec.Vocabulary"],
                                         outputs["peterrec.IngestRejects"])

    # Examples: ExampleGen's properties and layout, one user in one split only.
    assert artifact_utils.decode_split_names(examples.properties["split_names"].string_value) == \
        ["train", "eval", "test"]
    assert examples.custom_properties["file_format"].string_value == "tfrecords_gzip"
    assert examples.custom_properties["payload_format"].string_value == "FORMAT_TF_EXAMPLE"
    users_by_split = {}
    for split in ("train", "eval", "test"):
        files = os.listdir(example_format.split_dir(examples.uri, split))
        assert files and all(f.startswith(example_format.FILE_PREFIX) for f in files)
        users_by_split[split] = {example_format.example_to_dict(ex)[example_format.USER_ID]
                                 for ex in example_format.read_examples(examples.uri, split)}
        assert users_by_split[split], f"no users in split {split}"
    assert sum(len(u) for u in users_by_split.values()) == NUM_USERS
    assert set.union(*users_by_split.values()) == {f"u{i}" for i in range(NUM_USERS)}

    # Summary counts as custom properties, consistent with the rejects artifact's summary.json.
    props = {k: v.int_value for k, v in examples.custom_properties.items() if v.HasField("int_value")}
    assert props["read"] == data_lines
    assert props["rejected"] == len(BAD_LINES)
    assert props["kept"] + props["truncated"] + props["rejected"] == props["read"]
    assert props["users"] == NUM_USERS
    with open(os.path.join(rejects.uri, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["read"] == data_lines and summary["rejected"] == len(BAD_LINES)
    assert rejects.custom_properties["rejected"].int_value == len(BAD_LINES)
    assert json.loads(rejects.custom_properties["rejects_by_reason"].string_value) == summary["rejects_by_reason"]
    reject_lines = [json.loads(line)["line"] for name in os.listdir(rejects.uri) if name.endswith(".jsonl")
                    for line in open(os.path.join(rejects.uri, name), encoding="utf-8") if line.strip()]
    assert sorted(reject_lines) == sorted(BAD_LINES)

    # The vocabulary loads with peterrec's loader and matches the artifact's fingerprint.
    vocabulary = Vocabulary.load(vocab_artifact.uri)
    assert vocabulary.kind == "item"
    assert vocabulary.fingerprint == vocab_artifact.custom_properties["fingerprint"].string_value
    assert vocabulary.fingerprint == examples.custom_properties["vocabulary_fingerprint"].string_value
    assert len(vocabulary) == vocab_artifact.custom_properties["size"].int_value

    # The downstream components consumed it: statistics per split, a schema, anomalies.
    stats_execution = next(e for e in executions if by_type[e.type_id].endswith("StatisticsGen"))
    statistics = outputs_of(store, stats_execution.id)["ExampleStatistics"]
    assert sorted(os.listdir(statistics.uri)) == ["Split-eval", "Split-test", "Split-train"]
    schema_execution = next(e for e in executions if by_type[e.type_id].endswith("SchemaGen"))
    schema_uri = outputs_of(store, schema_execution.id)["Schema"].uri
    with open(os.path.join(schema_uri, "schema.pbtxt"), encoding="utf-8") as handle:
        schema_text = handle.read()
    for feature in (example_format.USER_ID, example_format.ITEM_IDS, example_format.TIMESTAMPS):
        assert f'name: "{feature}"' in schema_text
    validator_execution = next(e for e in executions if by_type[e.type_id].endswith("ExampleValidator"))
    anomalies_artifact = outputs_of(store, validator_execution.id)["ExampleAnomalies"]
    for split in ("train", "eval", "test"):
        path = os.path.join(anomalies_artifact.uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        assert not anomalies.anomaly_info, f"anomalies in {split}: {dict(anomalies.anomaly_info)}"

    # Unchanged inputs: a rerun executes nothing again (issue 5's cache requirement).
    local_dag_runner.LocalDagRunner().run(build_pipeline(root, source))
    rerun = [e for e in store.get_executions() if e.id not in {x.id for x in executions}]
    assert len(rerun) == 4
    assert {e.last_known_state for e in rerun} == {metadata_store_pb2.Execution.CACHED}


def test_source_fingerprint_driver_sees_new_data_under_the_same_path(tmp_path):
    from tfx.dsl.compiler import compiler
    from tfx.orchestration.portable import data_types as portable_data_types
    from tfx.proto.orchestration import executable_spec_pb2, pipeline_pb2

    from peterrec.components.executor import SOURCE_FINGERPRINT_KEY, SourceFingerprintDriver

    root = str(tmp_path)
    source = os.path.join(root, "interactions.csv")
    write_interactions(source, num_users=5)
    pipeline = build_pipeline(root, source, with_validation=False)
    ir = compiler.Compiler().compile(pipeline)
    deployment = pipeline_pb2.IntermediateDeploymentConfig()
    ir.deployment_config.Unpack(deployment)
    driver_spec = executable_spec_pb2.PythonClassExecutableSpec()
    deployment.custom_driver_specs["InteractionExampleGen"].Unpack(driver_spec)
    assert driver_spec.class_path == "peterrec.components.executor.SourceFingerprintDriver"

    exec_properties = {"ingest_config": pipeline.components[0].exec_properties["ingest_config"]}

    def fingerprint():
        output = SourceFingerprintDriver(None).run(portable_data_types.ExecutionInfo(exec_properties=exec_properties))
        return output.exec_properties[SOURCE_FINGERPRINT_KEY].string_value

    first = fingerprint()
    assert first and fingerprint() == first
    write_interactions(source, num_users=6, seed=1)  # same path, new content
    assert fingerprint() != first


def test_bad_config_fails_when_the_component_is_built(tmp_path):
    from peterrec.components.component import InteractionExampleGen
    from peterrec.components.executor import ComponentConfigError

    with pytest.raises(ComponentConfigError, match="unknown field"):
        InteractionExampleGen(source_format="csv", source_path="x.csv", max_length=5)
    with pytest.raises(ComponentConfigError, match="source_format"):
        InteractionExampleGen(source_format="parquet", source_path="x.csv")
    with pytest.raises(ComponentConfigError, match="missing required"):
        InteractionExampleGen(ingest_config={"source_format": "csv"})
    with pytest.raises(ComponentConfigError, match="not valid JSON"):
        InteractionExampleGen(ingest_config="{source_format: csv")


def test_config_round_trips_through_the_json_parameter():
    from peterrec.components.component import InteractionExampleGen
    from peterrec.components.executor import ingest_config_from_json
    from peterrec.components.ingest import IngestConfig

    config = IngestConfig(source_format="csv", source_path="/data/x.csv", max_len=7,
                          split_fractions=(("train", 0.5), ("eval", 0.5)))
    gen = InteractionExampleGen(config, split_salt="s1")
    parameter = gen.exec_properties["ingest_config"]
    assert isinstance(parameter, str)
    parsed = ingest_config_from_json(parameter)
    assert parsed.max_len == 7 and parsed.split_salt == "s1"
    assert parsed.split_fractions == (("train", 0.5), ("eval", 0.5))
    assert set(gen.outputs) == {"examples", "vocabulary", "rejects"}
    assert gen.outputs["vocabulary"].type_name == "peterrec.Vocabulary"


def test_executor_reuses_a_base_vocabulary_and_fails_clearly_on_too_many_rejects(tmp_path):
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from peterrec.components import artifact_types
    from peterrec.components.executor import InteractionExampleGenExecutor, ingest_config_to_json
    from peterrec.components.ingest import IngestError
    from peterrec.components.vocabulary import Vocabulary

    given = Vocabulary.from_counts("item", {f"i{n}": 100 - n for n in range(30)})
    base = artifact_types.Vocabulary()
    base.uri = str(tmp_path / "base_vocabulary")
    os.makedirs(base.uri)
    given.save(base.uri)
    artifact_types.describe_vocabulary(base, given)

    def outputs(name):
        made = {"examples": standard_artifacts.Examples(), "vocabulary": artifact_types.Vocabulary(),
                "rejects": artifact_types.IngestRejects()}
        for key, artifact in made.items():
            artifact.uri = str(tmp_path / name / key)
            os.makedirs(artifact.uri)
        return {key: [artifact] for key, artifact in made.items()}

    source = str(tmp_path / "interactions.csv")
    write_interactions(source, num_users=6)
    executor = InteractionExampleGenExecutor(BaseBeamExecutor.Context(beam_pipeline_args=BEAM_ARGS, tmp_dir=str(tmp_path)))
    config = {"source_format": "csv", "source_path": source, "max_reject_fraction": 0.5}
    out = outputs("reuse")
    executor.Do({"base_vocabulary": [base]}, out, {"ingest_config": ingest_config_to_json(config)})
    written = out["vocabulary"][0]
    assert Vocabulary.load(written.uri) == given
    assert written.get_string_custom_property("fingerprint") == given.fingerprint
    assert out["examples"][0].get_string_custom_property("vocabulary_fingerprint") == given.fingerprint

    with open(source, "a", encoding="utf-8") as handle:
        handle.write("garbage\n" * 200)
    out = outputs("rejected")
    with pytest.raises(IngestError, match="reject"):
        executor.Do({}, out, {"ingest_config": ingest_config_to_json(config)})
    # The rejects were written before the failure, so the reasons can be inspected.
    rejects_uri = out["rejects"][0].uri
    assert any(name.endswith(".jsonl") for name in os.listdir(rejects_uri))


def test_the_earlier_names_still_import():
    from peterrec.components import component, executor

    assert component.SequenceExampleGen is component.InteractionExampleGen
    assert component.SequenceExampleGenSpec is component.InteractionExampleGenSpec
    assert executor.SequenceExampleGenExecutor is executor.InteractionExampleGenExecutor
