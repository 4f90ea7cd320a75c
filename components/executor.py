"""Executors of peterrec's TFX components: they run the Beam ingestion inside TFX.

``InteractionExampleGenExecutor`` runs ``peterrec.components.ingest.run_ingestion`` with
the ``ingest_config`` execution parameter (a JSON object of ``IngestConfig`` fields)
and writes the sequence examples into the Examples artifact's uri (``Split-<name>/``
GZIP TFRecords, as ExampleGen writes them), the item vocabulary into the Vocabulary
artifact's uri and the rejects plus ``summary.json`` into the IngestRejects
artifact's uri; the summary counts become custom properties.

``TaskExampleGenExecutor`` builds one fine-tuning task's examples (an attribute task
or a cold-start task) over the item vocabulary of a InteractionExampleGen run.

Both are Beam executors: the pipeline's ``beam_pipeline_args`` reach the ingestion
unchanged, so the same component runs on the DirectRunner, Flink, Spark or Dataflow
(on the local DirectRunner they skip TFX's ephemeral TFX sdist, see
``LocalAwareBeamExecutor``).

``SourceFingerprintDriver`` runs before the cache check (local and Beam orchestrators):
it adds a fingerprint of the source files (names, sizes, modification times) to the
execution properties, so a changed file under an unchanged path is not served from
the cache.
"""

import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import base_driver
from tfx.dsl.components.base import base_executor
from tfx.orchestration import data_types_utils
from tfx.orchestration.portable import base_driver as ir_base_driver
from tfx.orchestration.portable import data_types as portable_data_types
from tfx.proto import example_gen_pb2
from tfx.proto.orchestration import driver_output_pb2
from tfx.types import artifact_utils

from peterrec.components import artifact_types
from peterrec.components import beam_options
from peterrec.components import example_format

# Keys of the component specs (shared with component.py).
INGEST_CONFIG_KEY = "ingest_config"
TASK_CONFIG_KEY = "task_config"
EXAMPLES_KEY = "examples"
VOCABULARY_KEY = "vocabulary"
BASE_VOCABULARY_KEY = "base_vocabulary"
REJECTS_KEY = "rejects"
TASK_VOCABULARY_KEY = "task_vocabulary"
SOURCE_FINGERPRINT_KEY = "source_fingerprint"

# The Examples custom properties ExampleGen sets (tfx.components.example_gen.utils names;
# written here directly so that importing this module does not import every TFX component).
FILE_FORMAT_PROPERTY = "file_format"
PAYLOAD_FORMAT_PROPERTY = "payload_format"
TFRECORDS_GZIP = "tfrecords_gzip"


class ComponentConfigError(ValueError):
    """A component's configuration is invalid; the message names the field and the fix."""


# --------------------------------------------------------------------------- configs


def _config_from_mapping(config_class, data: Mapping[str, Any], what: str):
    """Builds a dataclass config from a mapping, naming unknown and missing fields."""
    if not isinstance(data, Mapping):
        raise ComponentConfigError(f"{what} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ComponentConfigError(
            f"{what}: unknown field(s) {unknown}; the fields of {config_class.__name__} are {sorted(fields)}")
    required = [name for name, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ComponentConfigError(f"{what}: missing required field(s) {missing}")
    try:
        config = config_class(**data)
    except (TypeError, ValueError) as error:
        raise ComponentConfigError(f"{what}: {error}") from error
    try:
        config.validate()
    except ValueError as error:
        raise ComponentConfigError(f"{what}: {error}") from error
    return config


def config_to_json(config: Any) -> str:
    """Serialises a dataclass config (IngestConfig, a task config) as sorted JSON."""
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def parse_json_object(text: Any, what: str) -> Mapping[str, Any]:
    """Returns a mapping given as such or as a JSON object string; clear errors otherwise."""
    if isinstance(text, Mapping):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ComponentConfigError(f"{what} must be a JSON string of an object, got {text!r}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ComponentConfigError(f"{what} is not valid JSON: {error}") from error


def ingest_config_from_json(text: Any):
    """Parses and validates the ``ingest_config`` parameter (JSON of IngestConfig fields)."""
    from peterrec.components.ingest import IngestConfig

    return _config_from_mapping(IngestConfig, parse_json_object(text, INGEST_CONFIG_KEY), INGEST_CONFIG_KEY)


def ingest_config_to_json(config: Any) -> str:
    """Serialises an IngestConfig (or a mapping of its fields) for the component parameter."""
    if isinstance(config, Mapping):
        config = ingest_config_from_json(dict(config))
    elif isinstance(config, str):
        config = ingest_config_from_json(config)
    return config_to_json(config)


def split_names_of(config: Any) -> List[str]:
    """The split names an ingestion (or task) config writes, in config order."""
    return list(config.split_names)


# ---------------------------------------------------------------------- fingerprints


def fingerprint_paths(paths: Sequence[Optional[str]]) -> str:
    """Returns a hash of the files under some paths: relative names, sizes and mtimes.

    A path may be a file, a folder (walked) or a glob. Missing paths hash as missing,
    so the executor, not the driver, reports them with a clear message.
    """
    import tensorflow as tf

    digest = hashlib.sha256()
    for path in paths:
        if not path:
            continue
        digest.update(f"path:{path}\n".encode("utf-8"))
        if tf.io.gfile.isdir(path):
            files = [os.path.join(root, name) for root, _, names in tf.io.gfile.walk(path) for name in names]
        else:
            files = tf.io.gfile.glob(path)
        if not files:
            digest.update(b"missing\n")
        for name in sorted(files):
            stat = tf.io.gfile.stat(name)
            digest.update(f"{os.path.relpath(name, path) if name != path else ''}:"
                          f"{stat.length}:{stat.mtime_nsec}\n".encode("utf-8"))
    return digest.hexdigest()


def _source_paths(exec_properties: Mapping[str, Any]) -> List[str]:
    """The source files a component reads, found in its JSON config parameter."""
    paths: List[str] = []
    for key in (INGEST_CONFIG_KEY, TASK_CONFIG_KEY):
        raw = exec_properties.get(key)
        if not isinstance(raw, str):
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            continue  # the executor reports the bad JSON
        if isinstance(data, Mapping):
            paths.extend(str(v) for k, v in sorted(data.items())
                         if isinstance(v, str) and v and (k.endswith("_path") or k == "source_path"))
    return paths


class SourceFingerprintDriver(base_driver.BaseDriver, ir_base_driver.BaseDriver):
    """Adds a fingerprint of the source files to the execution properties before caching.

    The orchestrator's cache key covers the execution properties, and the config names
    the source only by path; with the fingerprint, new data under the same path runs
    the component again. (Kubeflow V2 runs no custom drivers: there the cache key is
    the configuration alone.)
    """

    def __init__(self, metadata_handle):
        base_driver.BaseDriver.__init__(self, metadata_handle)
        ir_base_driver.BaseDriver.__init__(self, metadata_handle)

    def run(self, execution_info: portable_data_types.ExecutionInfo) -> driver_output_pb2.DriverOutput:
        """Returns the execution properties plus ``source_fingerprint``."""
        result = driver_output_pb2.DriverOutput()
        fingerprint = fingerprint_paths(_source_paths(execution_info.exec_properties))
        data_types_utils.set_metadata_value(result.exec_properties[SOURCE_FINGERPRINT_KEY], fingerprint)
        return result


# ------------------------------------------------------------------------- executors


def _single(output_dict: Mapping[str, List[types.Artifact]], key: str) -> types.Artifact:
    return artifact_utils.get_single_instance(list(output_dict[key]))


def _optional_single(input_dict: Mapping[str, List[types.Artifact]], key: str) -> Optional[types.Artifact]:
    artifacts = list(input_dict.get(key) or [])
    if not artifacts:
        return None
    if len(artifacts) > 1:
        raise ComponentConfigError(f"input {key!r} must hold one artifact, got {len(artifacts)}")
    return artifacts[0]


def mark_examples(examples: types.Artifact, split_names: Sequence[str]) -> None:
    """Sets split_names, file_format and payload_format as ExampleGen does."""
    examples.split_names = artifact_utils.encode_split_names(list(split_names))
    examples.set_string_custom_property(FILE_FORMAT_PROPERTY, TFRECORDS_GZIP)
    examples.set_string_custom_property(
        PAYLOAD_FORMAT_PROPERTY, example_gen_pb2.PayloadFormat.Name(example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE))


def _check_split_files(examples_uri: str, split_names: Sequence[str]) -> None:
    """Fails clearly if a split folder holds no TFRecord file (downstream would fail obscurely)."""
    import tensorflow as tf

    for split in split_names:
        if not tf.io.gfile.glob(example_format.split_file_pattern(examples_uri, split)):
            raise RuntimeError(f"the ingestion wrote no files for split {split!r} under {examples_uri}")


def _summary_dict(summary: Any) -> Dict[str, Any]:
    """The summary as a plain dictionary (IngestSummary.to_json or a dataclass)."""
    to_json = getattr(summary, "to_json", None)
    if to_json is not None:
        text = to_json()
        return json.loads(text) if isinstance(text, str) else dict(text)
    if dataclasses.is_dataclass(summary):
        return dataclasses.asdict(summary)
    return dict(summary)


def _write_summary(rejects_uri: str, summary: Dict[str, Any]) -> None:
    """Writes summary.json into the rejects folder unless the ingestion already did."""
    import tensorflow as tf

    path = os.path.join(rejects_uri, artifact_types.SUMMARY_FILENAME)
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(rejects_uri)
        with tf.io.gfile.GFile(path, "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)


class LocalAwareBeamExecutor(base_beam_executor.BaseBeamExecutor):
    """A Beam executor that skips TFX's dependency packaging on the local DirectRunner.

    With non-empty ``beam_pipeline_args`` TFX's ``BaseBeamExecutor`` copies its whole
    installation and builds a ``tfx_ephemeral`` sdist for remote workers (about 8 s and
    40 MB left in /tmp per execution). Direct runner workers share this Python
    environment, so for them the arguments pass through as given; remote runners
    (Flink, Spark, Dataflow) get TFX's usual behaviour.
    """

    def __init__(self, context: Optional[base_beam_executor.BaseBeamExecutor.Context] = None):
        if (isinstance(context, base_beam_executor.BaseBeamExecutor.Context)
                and beam_options.is_local_direct(context.beam_pipeline_args)):
            base_executor.BaseExecutor.__init__(self, context)  # pylint: disable=non-parent-init-called
            self._beam_pipeline_args = list(context.beam_pipeline_args or [])
            self._make_beam_pipeline_fn = context.make_beam_pipeline_fn
        else:
            super().__init__(context)


class InteractionExampleGenExecutor(LocalAwareBeamExecutor):
    """Runs the Beam ingestion into the Examples, Vocabulary and IngestRejects artifacts."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """Ingests the configured source; see the module docstring."""
        from peterrec.components import ingest

        self._log_startup(input_dict, output_dict, exec_properties)
        config = ingest_config_from_json(exec_properties.get(INGEST_CONFIG_KEY))
        examples = _single(output_dict, EXAMPLES_KEY)
        vocabulary_artifact = _single(output_dict, VOCABULARY_KEY)
        rejects = _single(output_dict, REJECTS_KEY)

        base = _optional_single(input_dict, BASE_VOCABULARY_KEY)
        base_vocabulary = artifact_types.load_vocabulary(base, expected_kind="item") if base else None
        if base_vocabulary is not None:
            logging.info("Reusing the item vocabulary of %s (%s)", base.uri, base_vocabulary)

        summary = ingest.run_ingestion(
            config, examples_dir=examples.uri, vocabulary_dir=vocabulary_artifact.uri,
            rejects_dir=rejects.uri, beam_pipeline_args=list(self._beam_pipeline_args or []),
            vocabulary=base_vocabulary)

        split_names = split_names_of(config)
        _check_split_files(examples.uri, split_names)
        mark_examples(examples, split_names)

        vocabulary = artifact_types.load_vocabulary(vocabulary_artifact)
        artifact_types.describe_vocabulary(vocabulary_artifact, vocabulary)

        counts = _summary_dict(summary)
        _write_summary(rejects.uri, counts)
        for target in (examples, rejects):
            artifact_types.record_counts(target, counts)
        logging.info("InteractionExampleGen: %s", _format_summary(summary))


def _format_summary(summary: Any) -> str:
    format_table = getattr(summary, "format_table", None)
    return format_table() if format_table is not None else str(summary)


# ------------------------------------------------------------------------ task examples

# Task kinds as the Patch artifact names them (docs/architecture.md contract 4), with the
# names task_examples uses accepted as aliases.
CLASSIFICATION = "classification"
COLD_START = "cold_start"
_KIND_ALIASES = {CLASSIFICATION: CLASSIFICATION, "attribute": CLASSIFICATION,
                 COLD_START: COLD_START, "cold-start": COLD_START}
TASK_NAME_KEY = "task_name"
TASK_KIND_KEY = "kind"
_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def normalise_kind(kind: Any) -> str:
    """Returns ``classification`` or ``cold_start`` (``attribute`` is an alias of the first)."""
    found = _KIND_ALIASES.get(str(kind).strip().lower()) if isinstance(kind, str) else None
    if found is None:
        raise ComponentConfigError(f"task kind {kind!r} is not one of {sorted(set(_KIND_ALIASES.values()))}")
    return found


def check_task_name(name: Any) -> str:
    """Task names become signature names of the serving model: an identifier."""
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ComponentConfigError(
            f"task_name {name!r} must start with a letter and use only letters, digits and '_' "
            "(it becomes a serving signature name)")
    return name


def task_config_class(kind: str):
    """The task_examples config dataclass of a task kind."""
    from peterrec.components import task_examples

    return {CLASSIFICATION: task_examples.AttributeTaskConfig,
            COLD_START: task_examples.ColdStartTaskConfig}[normalise_kind(kind)]


def task_config_from_json(kind: str, text: Any):
    """Parses and validates the ``task_config`` parameter for a task kind."""
    config_class = task_config_class(kind)
    return _config_from_mapping(config_class, parse_json_object(text, TASK_CONFIG_KEY),
                                f"{TASK_CONFIG_KEY} ({normalise_kind(kind)})")



# The earlier name: Kubeflow specs compiled before the rename name this class path.
SequenceExampleGenExecutor = InteractionExampleGenExecutor


class TaskExampleGenExecutor(LocalAwareBeamExecutor):
    """Builds a task's examples over an InteractionExampleGen item vocabulary (see component.py)."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        """Runs ``run_attribute_task`` or ``run_cold_start_task`` into the output artifacts."""
        from peterrec.components import task_examples

        self._log_startup(input_dict, output_dict, exec_properties)
        task_name = check_task_name(exec_properties.get(TASK_NAME_KEY))
        kind = normalise_kind(exec_properties.get(TASK_KIND_KEY))
        config = task_config_from_json(kind, exec_properties.get(TASK_CONFIG_KEY))

        item_artifact = _optional_single(input_dict, VOCABULARY_KEY)
        if item_artifact is None:
            raise ComponentConfigError(f"TaskExampleGen {task_name!r} needs the item vocabulary input")
        item_vocabulary = artifact_types.load_vocabulary(item_artifact, expected_kind="item")
        base = _optional_single(input_dict, BASE_VOCABULARY_KEY)
        task_kind = "label" if kind == CLASSIFICATION else "target"
        base_task_vocabulary = artifact_types.load_vocabulary(base, expected_kind=task_kind) if base else None

        examples = _single(output_dict, EXAMPLES_KEY)
        task_vocabulary_artifact = _single(output_dict, TASK_VOCABULARY_KEY)
        rejects = _single(output_dict, REJECTS_KEY)
        common = dict(examples_dir=examples.uri, rejects_dir=rejects.uri, vocabulary=item_vocabulary,
                      beam_pipeline_args=list(self._beam_pipeline_args or []),
                      expected_vocabulary_fingerprint=item_vocabulary.fingerprint)
        if kind == CLASSIFICATION:
            summary = task_examples.run_attribute_task(
                config, label_vocabulary_dir=task_vocabulary_artifact.uri,
                label_vocabulary=base_task_vocabulary, **common)
        else:
            summary = task_examples.run_cold_start_task(
                config, target_vocabulary_dir=task_vocabulary_artifact.uri,
                target_vocabulary=base_task_vocabulary, **common)

        split_names = split_names_of(config)
        _check_split_files(examples.uri, split_names)
        mark_examples(examples, split_names)
        task_vocabulary = artifact_types.load_vocabulary(task_vocabulary_artifact, expected_kind=task_kind)
        artifact_types.describe_vocabulary(task_vocabulary_artifact, task_vocabulary)

        counts = _summary_dict(summary)
        _write_summary(rejects.uri, counts)
        for target in (examples, task_vocabulary_artifact, rejects):
            target.set_string_custom_property(artifact_types.TASK_NAME_PROPERTY, task_name)
            target.set_string_custom_property(artifact_types.TASK_KIND_PROPERTY, kind)
        for target in (examples, rejects):
            artifact_types.record_counts(target, counts)
        logging.info("TaskExampleGen %s: %s", task_name, _format_summary(summary))
