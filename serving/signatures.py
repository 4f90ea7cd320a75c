"""The signature contract of a served peterrec model (docs/architecture.md contract 5).

One SavedModel version lives at ``MODEL_BASE/NAME/<version>/`` (``saved_model.pb``,
``variables/``, ``assets/``, ``assets.extra/``) and serves every task of one shared
backbone, a signature per task plus two backbone signatures:

========================  ==========================================================
signature                 outputs (``B`` = rows in the request)
========================  ==========================================================
``<task>`` classification ``probabilities`` float32 [B, C], ``label`` string [B],
                          ``label_id`` int64 [B], ``classes`` string [B, C]
``<task>`` cold-start     ``items`` string [B, K], ``scores`` float32 [B, K]
``embed``                 ``embedding`` float32 [B, d]
``next_items``            ``items`` string [B, K], ``scores`` float32 [B, K]
========================  ==========================================================

Every signature takes one input, ``items``: tf.string [B, None], item ids as strings,
oldest first, right-padded with ``""`` (``PAD_ITEM``). The model maps unknown ids to
UNK itself, and its outputs must not depend on how much padding a row carries: the
server pads the rows of concurrent requests to the longest one when it batches them.
``K`` is fixed at export (``DEFAULT_TOP_K``); clients slice the first ``k`` and drop
``""`` items (a model may pad when it has fewer than ``K`` candidates). Scores are
sorted in descending order.

Each classification task also gets a TF Serving classify signature, ``<task>_classify``
(``classify_signature_name``; ``CLASSIFY_METHOD_NAME``), for the Classify API: input
``inputs``, serialized ``tf.Example`` strings [B], each with a bytes feature ``items`` (the
item ids, oldest first); outputs ``classes`` string [B, C] and ``scores`` float32 [B, C]
(the task's probabilities). Task names may not end in ``_classify``.

``assets.extra/peterrec_tasks.json`` (``TASKS_METADATA_FILE``) describes the signatures
for clients and tools::

    {"format_version": 1,
     "tasks": {"genre": {"kind": "classification", "labels": ["comedy", ...]},
               "shop": {"kind": "cold_start", "top_k": 100},
               "embed": {"kind": "embed", "dim": 64},
               "next_items": {"kind": "next_items", "top_k": 100}},
     ...any extra top-level keys (backbone fingerprint, ...)}

This module imports no TensorFlow: dtypes are named as strings ("string", "float32",
"int64") and shapes are tuples with ``None`` for unknown sizes.
"""

import json
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

FORMAT_VERSION = 1
# The model name clients use when they are not told one (``peterrec export --model-base DIR/NAME``).
DEFAULT_MODEL_NAME = "peterrec"

# The only input of every signature.
INPUT_ITEMS = "items"
PAD_ITEM = ""

# Kinds of signature.
KIND_CLASSIFICATION = "classification"
KIND_COLD_START = "cold_start"
KIND_EMBED = "embed"
KIND_NEXT_ITEMS = "next_items"
TASK_KINDS = (KIND_CLASSIFICATION, KIND_COLD_START)
KINDS = TASK_KINDS + (KIND_EMBED, KIND_NEXT_ITEMS)

# Backbone signatures, present in every served model; task names may not take them.
EMBED_SIGNATURE = "embed"
NEXT_ITEMS_SIGNATURE = "next_items"
BACKBONE_SIGNATURES = {EMBED_SIGNATURE: KIND_EMBED, NEXT_ITEMS_SIGNATURE: KIND_NEXT_ITEMS}

# Output names.
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_LABEL = "label"
OUTPUT_LABEL_ID = "label_id"
OUTPUT_CLASSES = "classes"
OUTPUT_ITEMS = "items"
OUTPUT_SCORES = "scores"
OUTPUT_EMBEDDING = "embedding"

DEFAULT_TOP_K = 100

# TF Serving's Classify API (tf.saved_model.CLASSIFY_* constants).
KIND_CLASSIFY = "classify"
CLASSIFY_SUFFIX = "_classify"
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"
PREDICT_METHOD_NAME = "tensorflow/serving/predict"
CLASSIFY_INPUT_SPECS = {CLASSIFY_INPUTS: ("string", (None,))}
CLASSIFY_OUTPUT_SPECS = {CLASSIFY_OUTPUT_CLASSES: ("string", (None, None)),
                         CLASSIFY_OUTPUT_SCORES: ("float32", (None, None))}

# name -> (dtype name, shape); None = any size. The first dimension is the batch.
INPUTS: Dict[str, Tuple[str, Tuple[Optional[int], ...]]] = {INPUT_ITEMS: ("string", (None, None))}
_TOP_K_OUTPUTS = {
    OUTPUT_ITEMS: ("string", (None, None)),
    OUTPUT_SCORES: ("float32", (None, None)),
}
OUTPUTS: Dict[str, Dict[str, Tuple[str, Tuple[Optional[int], ...]]]] = {
    KIND_CLASSIFICATION: {
        OUTPUT_PROBABILITIES: ("float32", (None, None)),
        OUTPUT_LABEL: ("string", (None,)),
        OUTPUT_LABEL_ID: ("int64", (None,)),
        OUTPUT_CLASSES: ("string", (None, None)),
    },
    KIND_COLD_START: dict(_TOP_K_OUTPUTS),
    KIND_EMBED: {OUTPUT_EMBEDDING: ("float32", (None, None))},
    KIND_NEXT_ITEMS: dict(_TOP_K_OUTPUTS),
}

# Where the SavedModel keeps its extra files (TF Serving reads assets.extra too).
ASSETS_EXTRA_DIR = "assets.extra"
TASKS_METADATA_FILE = "peterrec_tasks.json"
WARMUP_FILE = "tf_serving_warmup_requests"

_TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")

Spec = Tuple[str, Optional[Tuple[Optional[int], ...]]]


def validate_task_name(name: str) -> str:
    """Checks that ``name`` can be a task signature; returns it or raises ValueError."""
    if not isinstance(name, str) or not _TASK_NAME.match(name):
        raise ValueError(
            f"task name {name!r} must start with a letter and hold only letters, digits, "
            "'_' or '-' (at most 64 characters)"
        )
    if name in BACKBONE_SIGNATURES:
        raise ValueError(f"task name {name!r} is reserved for the backbone signature")
    if name.endswith(CLASSIFY_SUFFIX):
        raise ValueError(f"task name {name!r} may not end in {CLASSIFY_SUFFIX!r}: those name classify signatures")
    return name


def classify_signature_name(task: str) -> str:
    """The name of a classification task's classify signature."""
    return task + CLASSIFY_SUFFIX


def is_classify_signature(name: str) -> bool:
    """Whether a signature name is a classify signature's (``<task>_classify``)."""
    return name.endswith(CLASSIFY_SUFFIX) and len(name) > len(CLASSIFY_SUFFIX)


def signature_kind(name: str, output_names: Iterable[str]) -> Optional[str]:
    """The kind of a signature from its name and output names, or None if it fits none."""
    outputs = set(output_names)
    if is_classify_signature(name):
        return KIND_CLASSIFY if outputs == set(CLASSIFY_OUTPUT_SPECS) else None
    if name in BACKBONE_SIGNATURES:
        kind = BACKBONE_SIGNATURES[name]
        return kind if outputs == set(OUTPUTS[kind]) else None
    for kind in TASK_KINDS:
        if outputs == set(OUTPUTS[kind]):
            return kind
    return None


def _shape_fits(shape: Optional[Sequence[Optional[int]]], expected: Sequence[Optional[int]]) -> bool:
    if shape is None:  # unknown rank: cannot be checked, accepted
        return True
    if len(shape) != len(expected):
        return False
    return all(want is None or got is None or got == want for got, want in zip(shape, expected))


def contract_problems(name: str, inputs: Mapping[str, Spec], outputs: Mapping[str, Spec]) -> List[str]:
    """Lists how a signature departs from the contract (empty list: it follows it).

    ``inputs`` and ``outputs`` map tensor names to ``(dtype name, shape)``.
    """
    expected_inputs = CLASSIFY_INPUT_SPECS if is_classify_signature(name) else INPUTS
    problems = []
    if set(inputs) != set(expected_inputs):
        problems.append(f"signature {name!r} takes inputs {sorted(inputs)}, expected {sorted(expected_inputs)}")
    problems += _spec_problems(name, "input", inputs, expected_inputs)
    kind = signature_kind(name, outputs)
    if kind is None:
        if is_classify_signature(name):
            expected = sorted(CLASSIFY_OUTPUT_SPECS)
        elif name in BACKBONE_SIGNATURES:
            expected = sorted(OUTPUTS[BACKBONE_SIGNATURES[name]])
        else:
            expected = " or ".join(str(sorted(OUTPUTS[k])) for k in TASK_KINDS)
        problems.append(f"signature {name!r} has outputs {sorted(outputs)}, expected {expected}")
        return problems
    return problems + _spec_problems(name, "output", outputs,
                                     CLASSIFY_OUTPUT_SPECS if kind == KIND_CLASSIFY else OUTPUTS[kind])


def _spec_problems(name: str, what: str, specs: Mapping[str, Spec], expected: Mapping[str, Spec]) -> List[str]:
    problems = []
    for key, (dtype, shape) in specs.items():
        if key in expected:
            want_dtype, want_shape = expected[key]
            if dtype != want_dtype or not _shape_fits(shape, want_shape):
                problems.append(f"{what} {key!r} of {name!r} is {dtype} {shape}, expected {want_dtype} {want_shape}")
    return problems


def task_entry(kind: str, labels: Optional[Sequence[str]] = None, top_k: Optional[int] = None, **extra) -> dict:
    """One entry of ``peterrec_tasks.json`` (extra keys, e.g. ``strategy``, are kept)."""
    if kind not in KINDS:
        raise ValueError(f"unknown signature kind {kind!r}; expected one of {KINDS}")
    entry = {"kind": kind}
    if kind == KIND_CLASSIFICATION:
        if not labels:
            raise ValueError("a classification task needs its labels")
        entry["labels"] = [str(label) for label in labels]
    if top_k is not None:
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        entry["top_k"] = int(top_k)
    entry.update(extra)
    return entry


def write_tasks_metadata(version_dir: str, tasks: Mapping[str, dict], **extra) -> str:
    """Writes ``assets.extra/peterrec_tasks.json`` into a SavedModel directory; returns its path.

    When the directory holds a ``saved_model.pb``, its ``<task>_classify`` signatures get the
    classify method name too (``peterrec.serving.classify_signatures.mark_classify_methods``):
    exporters call this right after ``tf.saved_model.save``, which writes predict method names.
    """
    for name, entry in tasks.items():
        if name not in BACKBONE_SIGNATURES:
            validate_task_name(name)
        if entry.get("kind") not in KINDS:
            raise ValueError(f"task {name!r} has kind {entry.get('kind')!r}; expected one of {KINDS}")
    directory = os.path.join(version_dir, ASSETS_EXTRA_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, TASKS_METADATA_FILE)
    document = {"format_version": FORMAT_VERSION, **extra, "tasks": {k: dict(v) for k, v in tasks.items()}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=1, sort_keys=True)
    if os.path.exists(os.path.join(version_dir, "saved_model.pb")):
        from peterrec.serving.classify_signatures import mark_classify_methods

        mark_classify_methods(version_dir)
    return path


def read_tasks_metadata(version_dir: str) -> dict:
    """Reads ``assets.extra/peterrec_tasks.json``; an empty document if the model has none."""
    path = os.path.join(version_dir, ASSETS_EXTRA_DIR, TASKS_METADATA_FILE)
    if not os.path.exists(path):
        return {"format_version": FORMAT_VERSION, "tasks": {}}
    with open(path, encoding="utf-8") as handle:
        document = json.load(handle)
    if not isinstance(document, dict) or not isinstance(document.get("tasks"), dict):
        raise ValueError(f"{path} has no 'tasks' object")
    if document.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {document.get('format_version')!r}; this code reads {FORMAT_VERSION}"
        )
    return document


def pad_item_rows(rows: Sequence[Sequence[str]]) -> List[List[str]]:
    """Right-pads item-id rows with ``PAD_ITEM`` to the longest one (the ``items`` layout)."""
    rows = [[str(item) for item in row] for row in rows]
    width = max((len(row) for row in rows), default=0)
    return [row + [PAD_ITEM] * (width - len(row)) for row in rows]
