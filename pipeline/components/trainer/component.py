"""``PeterRecTrainer``: TFX's Trainer component that also takes Vocabulary artifacts."""

from typing import Any, Optional

from tfx import types
from tfx.components.trainer import component as trainer_component
from tfx.dsl.components.base import base_component, executor_spec
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from peterrec.components.artifact_types import Vocabulary
from peterrec.pipeline.components.common import ITEM_VOCABULARY_KEY, TASK_VOCABULARY_KEY
from peterrec.pipeline.components.trainer.executor import PeterRecTrainerExecutor


class PeterRecTrainerSpec(standard_component_specs.TrainerSpec):
    """TFX's TrainerSpec plus the item vocabulary and the task's label/target vocabulary."""

    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        ITEM_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
        TASK_VOCABULARY_KEY: ChannelParameter(type=Vocabulary, optional=True),
    }


class PeterRecTrainer(trainer_component.Trainer):
    """TFX's Trainer (GenericExecutor, a ``run_fn``) that also takes Vocabulary artifacts.

    Args:
      examples: the Examples to train on (``fn_args.train_files`` / ``eval_files``).
      run_fn: dotted path of the run function, e.g.
        ``peterrec.trainer.run_fn.pretrain_run_fn``.
      item_vocabulary / task_vocabulary: optional Vocabulary channels; their uris reach the
        run_fn as ``fn_args.custom_config["item_vocabulary"]`` / ``["task_vocabulary"]``.
      base_model: optional Model channel (``fn_args.base_model``: the pretrained backbone).
      train_args, eval_args: TFX ``TrainArgs`` / ``EvalArgs`` (default: splits train / eval).
      custom_config: a JSON-friendly dict (or a RuntimeParameter of its JSON) for the run_fn.
    """

    SPEC_CLASS = PeterRecTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(PeterRecTrainerExecutor)

    def __init__(self, examples: types.BaseChannel, run_fn: str,  # pylint: disable=super-init-not-called
                 item_vocabulary: Optional[types.BaseChannel] = None,
                 task_vocabulary: Optional[types.BaseChannel] = None,
                 base_model: Optional[types.BaseChannel] = None,
                 train_args: Optional[trainer_pb2.TrainArgs] = None,
                 eval_args: Optional[trainer_pb2.EvalArgs] = None,
                 custom_config: Any = None):
        spec = PeterRecTrainerSpec(
            examples=examples, base_model=base_model, item_vocabulary=item_vocabulary,
            task_vocabulary=task_vocabulary,
            train_args=train_args or trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=eval_args or trainer_pb2.EvalArgs(splits=["eval"]),
            run_fn=run_fn,
            custom_config=(custom_config if isinstance(custom_config, data_types.RuntimeParameter)
                           else json_utils.dumps(custom_config)),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        # TFX's Trainer.__init__ builds its own spec; ours adds the vocabulary inputs.
        base_component.BaseComponent.__init__(self, spec=spec)
