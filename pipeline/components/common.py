"""What the pipeline's components share: spec keys, file names, artifact lookups, blessing marks.

The keys play the role of TFX's ``standard_component_specs`` constants: a component's spec
and its executor name their parameters, inputs and outputs with them.
"""

import json
import os
from typing import Any, Mapping, Sequence

from tfx import types
from tfx.dsl.io import fileio
from tfx.utils import io_utils

# Keys of the component specs.
EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASE_MODEL_KEY = "base_model"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
BACKBONE_KEY = "backbone"
TASK_NAME_KEY = "task_name"
KIND_KEY = "kind"
THRESHOLD_KEY = "threshold"
MAX_LEN_KEY = "max_len"
BATCH_SIZE_KEY = "batch_size"
TASK_NAMES_KEY = "task_names"
MODEL_NAME_KEY = "model_name"
TOP_K_KEY = "top_k"
REQUIRE_ALL_KEY = "require_all_tasks"
PATCH_PREFIX = "patch_"
BLESSING_PREFIX = "blessing_"

METRICS_FILE = "metrics.json"
ASSEMBLY_FILE = "assembly.json"
BLESSED_FILE = "BLESSED"
NOT_BLESSED_FILE = "NOT_BLESSED"
BLESSED_PROPERTY = "blessed"
VERSION_LABEL_KEY = "version_label"
# Inputs of PeterRecTrainer whose folders reach the run_fn as fn_args.custom_config[key].
ITEM_VOCABULARY_KEY = "item_vocabulary"
TASK_VOCABULARY_KEY = "task_vocabulary"


def single(artifacts: Sequence[types.Artifact], key: str) -> types.Artifact:
    """The one artifact of an input or output list (ValueError naming ``key`` otherwise)."""
    artifacts = list(artifacts or [])
    if len(artifacts) != 1:
        raise ValueError(f"{key}: expected exactly one artifact, got {len(artifacts)}")
    return artifacts[0]


def _find_dir_with(root: str, filename: str, what: str) -> str:
    """The folder under ``root`` (itself or below) that holds ``filename``."""
    if fileio.exists(os.path.join(root, filename)):
        return root
    for folder, _, files in fileio.walk(root):
        if filename in files:
            return folder
    raise FileNotFoundError(f"{what}: no {filename} under {root}")


def backbone_dir_of(model_artifact: types.Artifact) -> str:
    """The backbone export inside a pretraining Trainer's Model artifact."""
    from peterrec.trainer import artifacts

    return _find_dir_with(os.path.join(model_artifact.uri, "Format-Serving"), artifacts.BACKBONE_CONFIG_FILE,
                          "pretrained model")


def patch_dir_of(model_artifact: types.Artifact) -> str:
    """The patch artifact inside a fine-tuning Trainer's Model artifact."""
    from peterrec.trainer import artifacts

    return _find_dir_with(os.path.join(model_artifact.uri, "Format-Serving"), artifacts.PATCH_METADATA_FILE,
                          "fine-tuned model")


def local_copy(path: str, work_dir: str) -> str:
    """``path`` itself when local; otherwise a copy of the folder (``gs://``...) under ``work_dir``.

    The serving assembly and parts of the artifact loaders use local file APIs; artifacts on
    Kubeflow live in object storage, and backbones and patches are small enough to copy.
    """
    if not is_local(path):
        target = os.path.join(work_dir, f"{len(os.listdir(work_dir))}-{os.path.basename(path.rstrip('/'))}")
        io_utils.copy_dir(path, target)
        return target
    return path


def is_local(path: str) -> bool:
    """Whether ``path`` is a local path rather than a URI such as ``gs://bucket/...``."""
    return "://" not in path


def write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` (any filesystem TFX reads), creating its folder."""
    fileio.makedirs(os.path.dirname(path))
    with fileio.open(path, "w") as handle:
        handle.write(text)


def write_blessing(blessing: types.Artifact, blessed: bool, reason: str, extra: Mapping[str, Any] = ()) -> None:
    """Marks a ModelBlessing as TFX's Evaluator does (file + ``blessed`` property), with a reason."""
    fileio.makedirs(blessing.uri)
    write_text(os.path.join(blessing.uri, BLESSED_FILE if blessed else NOT_BLESSED_FILE), reason + "\n")
    blessing.set_int_custom_property(BLESSED_PROPERTY, 1 if blessed else 0)
    blessing.set_string_custom_property("reason", reason)
    for key, value in dict(extra).items():
        if isinstance(value, bool):
            blessing.set_int_custom_property(key, int(value))
        elif isinstance(value, int):
            blessing.set_int_custom_property(key, value)
        elif isinstance(value, float):
            blessing.set_float_custom_property(key, value)
        else:
            blessing.set_string_custom_property(key, value if isinstance(value, str) else json.dumps(value))


def is_blessed(blessing: types.Artifact) -> bool:
    """Whether a ModelBlessing says blessed (its ``blessed`` custom property)."""
    return (blessing.has_custom_property(BLESSED_PROPERTY)
            and blessing.get_int_custom_property(BLESSED_PROPERTY) == 1)
