"""TFX Trainer entry points (GenericExecutor ``run_fn``s) for pretraining and fine-tuning.

Wire them as ``run_fn="peterrec.trainer.run_fn.pretrain_run_fn"`` / ``"...finetune_run_fn"``.
What each reads from ``fn_args`` (``tfx.components.trainer.fn_args_utils.FnArgs``):

- ``train_files`` / ``eval_files``: the Examples splits (file patterns), as TFX passes them;
- ``custom_config``:
  - pretraining: ``{"pretrain": PretrainConfig dict, "item_vocabulary": folder}``;
  - fine-tuning: ``{"finetune": FinetuneConfig dict (with "task"), "item_vocabulary": folder,
    "task_vocabulary": folder}``; ``"backbone"`` may name the backbone export when there is no
    ``base_model``. (``"vocabulary"`` is accepted for ``"item_vocabulary"``.)
- ``base_model`` (fine-tuning): the pretraining Trainer's Model, i.e. the backbone export;
- ``serving_model_dir``: receives the backbone export (pretraining) or the patch artifact
  (fine-tuning), so the Model artifact is exactly docs/architecture.md contract 3 or 4;
- ``model_run_dir``: checkpoints, TensorBoard logs, metrics.json;
- ``train_steps``: when set (and the config has no ``steps_per_epoch``), the total number of
  training steps, spread evenly over the configured epochs.
"""

import math
import os
from typing import Any, Dict, Mapping, Optional

PRETRAIN_KEY = "pretrain"
FINETUNE_KEY = "finetune"
ITEM_VOCABULARY_KEY = "item_vocabulary"
TASK_VOCABULARY_KEY = "task_vocabulary"
BACKBONE_KEY = "backbone"


class RunFnError(ValueError):
    """The Trainer's fn_args lack something a run needs (a config, a vocabulary, a backbone)."""


def _custom_config(fn_args) -> Dict[str, Any]:
    custom = getattr(fn_args, "custom_config", None) or {}
    if not isinstance(custom, Mapping):
        raise RunFnError(f"custom_config must be a dict, got {type(custom).__name__}")
    return dict(custom)


def _item_vocabulary(custom: Mapping[str, Any]) -> str:
    path = custom.get(ITEM_VOCABULARY_KEY) or custom.get("vocabulary")
    if not path:
        raise RunFnError(f"custom_config needs {ITEM_VOCABULARY_KEY!r}: the folder of the item vocabulary "
                         "(the Vocabulary artifact of InteractionExampleGen)")
    return path


def _run_dirs(fn_args):
    serving = getattr(fn_args, "serving_model_dir", None)
    if not serving:
        raise RunFnError("fn_args.serving_model_dir is not set")
    run_dir = getattr(fn_args, "model_run_dir", None) or getattr(fn_args, "working_dir", None) or \
        os.path.join(os.path.dirname(os.path.normpath(serving)), "model_run")
    return serving, run_dir


def _files(fn_args, name: str, required: bool):
    files = list(getattr(fn_args, name, None) or [])
    if required and not files:
        raise RunFnError(f"fn_args.{name} is empty")
    return files or None


def _steps_per_epoch(fn_args, config_data: Dict[str, Any], default_epochs: int) -> None:
    """Spreads ``fn_args.train_steps`` over the epochs when the config does not fix the steps."""
    train_steps = getattr(fn_args, "train_steps", None)
    if train_steps and not config_data.get("steps_per_epoch"):
        epochs = int(config_data.get("epochs", default_epochs))
        config_data["steps_per_epoch"] = max(1, math.ceil(int(train_steps) / epochs))


def find_backbone_export(path: str) -> str:
    """The folder at or below ``path`` holding a backbone export (TFX may nest the serving dir)."""
    import tensorflow as tf

    from peterrec.trainer.artifacts import BACKBONE_CONFIG_FILE

    if tf.io.gfile.exists(os.path.join(path, BACKBONE_CONFIG_FILE)):
        return path
    for folder, _, files in tf.io.gfile.walk(path):
        if BACKBONE_CONFIG_FILE in files:
            return folder
    raise RunFnError(f"no backbone export ({BACKBONE_CONFIG_FILE}) at or below {path}")


def pretrain_run_fn(fn_args) -> Dict[str, Any]:
    """TFX Trainer entry point: pretrains the backbone and exports it to serving_model_dir."""
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    custom = _custom_config(fn_args)
    config_data = dict(custom.get(PRETRAIN_KEY) or {})
    config_data.setdefault("verbose", 2)  # one line per epoch: progress bars do not suit log files
    _steps_per_epoch(fn_args, config_data, PretrainConfig.epochs)
    config = PretrainConfig.from_dict(config_data)
    serving, run_dir = _run_dirs(fn_args)
    return pretrain(None, _item_vocabulary(custom), run_dir, config,
                    train_files=_files(fn_args, "train_files", True), eval_files=_files(fn_args, "eval_files", False),
                    export_dir=serving)


def finetune_run_fn(fn_args) -> Dict[str, Any]:
    """TFX Trainer entry point: fine-tunes one task on ``base_model`` and writes its patch artifact
    to serving_model_dir."""
    from peterrec.trainer.finetune import FinetuneConfig, finetune

    custom = _custom_config(fn_args)
    config_data = dict(custom.get(FINETUNE_KEY) or {})
    if "task" not in config_data:
        raise RunFnError(f"custom_config[{FINETUNE_KEY!r}] needs a 'task' (a TaskConfig dict)")
    config_data.setdefault("verbose", 2)
    config_data[ITEM_VOCABULARY_KEY] = custom.get(ITEM_VOCABULARY_KEY) or custom.get("vocabulary") or \
        config_data.get(ITEM_VOCABULARY_KEY)
    config_data[TASK_VOCABULARY_KEY] = custom.get(TASK_VOCABULARY_KEY) or config_data.get(TASK_VOCABULARY_KEY)
    _steps_per_epoch(fn_args, config_data, FinetuneConfig.epochs)
    config = FinetuneConfig.from_dict(config_data)
    base_model: Optional[str] = getattr(fn_args, "base_model", None) or custom.get(BACKBONE_KEY)
    if not base_model:
        raise RunFnError("fine-tuning needs the backbone: wire the pretraining Trainer's model as base_model "
                         f"(or give custom_config[{BACKBONE_KEY!r}])")
    serving, run_dir = _run_dirs(fn_args)
    return finetune(find_backbone_export(base_model), None, run_dir, config,
                    train_files=_files(fn_args, "train_files", True), eval_files=_files(fn_args, "eval_files", False),
                    patch_dir=serving)
