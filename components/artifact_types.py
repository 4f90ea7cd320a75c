"""TFX artifact types of peterrec's components: the vocabulary and the ingestion rejects.

Imported only by TFX code (the components, the pipeline, TFX trainers): the vocabulary
itself (``peterrec.components.vocabulary``) stays free of TFX.

- ``Vocabulary`` (type ``peterrec.Vocabulary``): its uri is a folder holding
  ``vocabulary.json`` (docs/architecture.md contract 2); custom properties ``kind``,
  ``size`` and ``fingerprint`` repeat what the file says, so a consumer can check
  it has the vocabulary it expects without reading the file.
- ``IngestRejects`` (type ``peterrec.IngestRejects``): its uri is the rejects folder
  the ingestion writes (the offending lines with their reasons) plus ``summary.json``,
  the run's counts; the counts are also custom properties.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional

from tfx.types import artifact

from peterrec.components import vocabulary as vocabulary_lib

VOCABULARY_TYPE_NAME = "peterrec.Vocabulary"
INGEST_REJECTS_TYPE_NAME = "peterrec.IngestRejects"

# Custom properties of a Vocabulary artifact.
KIND_PROPERTY = "kind"
SIZE_PROPERTY = "size"
FINGERPRINT_PROPERTY = "fingerprint"
# Custom properties of TaskExampleGen outputs: the task they belong to.
TASK_NAME_PROPERTY = "task_name"
TASK_KIND_PROPERTY = "task_kind"

# The summary file in an IngestRejects (or task rejects) artifact.
SUMMARY_FILENAME = "summary.json"


class Vocabulary(artifact.Artifact):
    """A persisted ``peterrec.components.vocabulary.Vocabulary``: uri/vocabulary.json.

    Custom properties: ``kind`` (item, target or label), ``size`` (ids, reserved
    included) and ``fingerprint`` (the vocabulary's SHA-256 fingerprint).
    """

    TYPE_NAME = VOCABULARY_TYPE_NAME


class IngestRejects(artifact.Artifact):
    """The lines an ingestion rejected (with reasons) and its ``summary.json`` counts."""

    TYPE_NAME = INGEST_REJECTS_TYPE_NAME


def vocabulary_path(vocabulary_artifact: artifact.Artifact) -> str:
    """Returns the path of the ``vocabulary.json`` file of a Vocabulary artifact."""
    return os.path.join(vocabulary_artifact.uri, vocabulary_lib.FILENAME)


def describe_vocabulary(vocabulary_artifact: artifact.Artifact,
                        vocabulary: vocabulary_lib.Vocabulary) -> None:
    """Records a vocabulary's kind, size and fingerprint as the artifact's custom properties."""
    vocabulary_artifact.set_string_custom_property(KIND_PROPERTY, vocabulary.kind)
    vocabulary_artifact.set_int_custom_property(SIZE_PROPERTY, len(vocabulary))
    vocabulary_artifact.set_string_custom_property(FINGERPRINT_PROPERTY, vocabulary.fingerprint)


def load_vocabulary(vocabulary_artifact: artifact.Artifact,
                    expected_kind: Optional[str] = None) -> vocabulary_lib.Vocabulary:
    """Loads the vocabulary of an artifact and checks it against the artifact's fingerprint.

    Raises ``VocabularyError`` if the file is missing or of another kind than
    ``expected_kind``, and ``VocabularyMismatchError`` if its fingerprint differs from
    the one recorded in the artifact (the file was replaced after it was published).
    """
    expected = None
    if vocabulary_artifact.has_custom_property(FINGERPRINT_PROPERTY):
        expected = vocabulary_artifact.get_string_custom_property(FINGERPRINT_PROPERTY)
    loaded = vocabulary_lib.Vocabulary.load(vocabulary_artifact.uri)
    if expected:
        loaded.check(expected, what=f"Vocabulary artifact {vocabulary_artifact.uri}")
    if expected_kind is not None and loaded.kind != expected_kind:
        raise vocabulary_lib.VocabularyError(
            f"Vocabulary artifact {vocabulary_artifact.uri} holds a {loaded.kind} vocabulary; "
            f"a {expected_kind} vocabulary is needed here")
    return loaded


def record_counts(target: artifact.Artifact, counts: Mapping[str, Any], prefix: str = "") -> None:
    """Records counts as custom properties: ints as ints, mappings as JSON strings.

    ``{"read": 10, "rejects_by_reason": {"bad_timestamp": 1}}`` becomes the int
    property ``read`` and the string property ``rejects_by_reason`` (JSON), so MLMD
    queries and the TFX UI show them.
    """
    for key, value in counts.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            target.set_int_custom_property(name, int(value))
        elif isinstance(value, int):
            target.set_int_custom_property(name, value)
        elif isinstance(value, float):
            target.set_float_custom_property(name, value)
        elif isinstance(value, str):
            target.set_string_custom_property(name, value)
        elif value is not None:
            target.set_string_custom_property(name, json.dumps(value, sort_keys=True))


def read_summary(rejects_artifact: artifact.Artifact) -> Dict[str, Any]:
    """Returns the ``summary.json`` of a rejects artifact as a dictionary."""
    import tensorflow as tf

    path = os.path.join(rejects_artifact.uri, SUMMARY_FILENAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {SUMMARY_FILENAME} in rejects artifact {rejects_artifact.uri}")
    with tf.io.gfile.GFile(path, "r") as handle:
        return json.load(handle)
