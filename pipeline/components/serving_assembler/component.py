"""``ServingModelAssembler``: the component, and its spec with one patch and blessing input per task."""

import json
from typing import Mapping, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from peterrec.pipeline.components.common import (
    BACKBONE_KEY, BLESSING_KEY, BLESSING_PREFIX, MAX_LEN_KEY, MODEL_KEY, MODEL_NAME_KEY, PATCH_PREFIX,
    REQUIRE_ALL_KEY, TASK_NAMES_KEY, TOP_K_KEY)
from peterrec.pipeline.components.serving_assembler.executor import ServingModelAssemblerExecutor


class ServingModelAssemblerSpec(types.ComponentSpec):
    """The assembler's parameters and outputs; each pipeline's subclass adds one
    ``patch_<task>`` (Model) and one ``blessing_<task>`` (ModelBlessing) input per task."""

    PARAMETERS = {
        TASK_NAMES_KEY: ExecutionParameter(type=str),
        MODEL_NAME_KEY: ExecutionParameter(type=str),
        TOP_K_KEY: ExecutionParameter(type=int),
        MAX_LEN_KEY: ExecutionParameter(type=int),
        REQUIRE_ALL_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {BACKBONE_KEY: ChannelParameter(type=standard_artifacts.Model)}
    OUTPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


def assembler_spec_class(task_names: Sequence[str]):
    """The ComponentSpec of an assembler over these tasks (one patch and one blessing input each)."""
    inputs = dict(ServingModelAssemblerSpec.INPUTS)
    for name in task_names:
        inputs[PATCH_PREFIX + name] = ChannelParameter(type=standard_artifacts.Model)
        inputs[BLESSING_PREFIX + name] = ChannelParameter(type=standard_artifacts.ModelBlessing)
    return type("ServingModelAssemblerSpec", (ServingModelAssemblerSpec,), {
        "__module__": __name__, "__doc__": ServingModelAssemblerSpec.__doc__, "INPUTS": inputs})


class ServingModelAssembler(base_component.BaseComponent):
    """The multi-signature serving model of every blessed task on the shared backbone.

    Args:
      backbone: the pretraining Trainer's Model channel.
      patches: ``{task name: fine-tuning Trainer Model channel}``.
      blessings: ``{task name: TaskEvaluator blessing channel}`` (same keys).
      model_name: the served model's name (the model base folder's name).
      top_k, max_len: passed to ``peterrec.serving.assembly.export_serving_model``.
      require_all_tasks: bless (and so push) only when every task is blessed; otherwise the
        blessed tasks are assembled and the others reported.

    Outputs: ``model`` (Model: ``Format-Serving/`` holds the SavedModel with a signature per
    task plus ``embed`` and ``next_items``; ``assembly.json`` says what went in) and
    ``blessing`` (ModelBlessing for the Pusher).

    The inputs depend on the task names, so each instance belongs to a subclass (same name)
    whose SPEC_CLASS has a ``patch_<task>`` and a ``blessing_<task>`` input per task.
    """

    SPEC_CLASS = ServingModelAssemblerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ServingModelAssemblerExecutor)

    def __new__(cls, backbone=None, patches=None, *args, **kwargs):  # pylint: disable=unused-argument
        names = tuple(patches or ())
        if not names:
            raise ValueError("ServingModelAssembler needs at least one task in patches")
        subclass = type(cls.__name__, (cls,), {
            "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
            "SPEC_CLASS": assembler_spec_class(names)})
        return super().__new__(subclass)

    def __init__(self, backbone: types.BaseChannel, patches: Mapping[str, types.BaseChannel],
                 blessings: Mapping[str, types.BaseChannel], model_name: str, top_k: int, max_len: int,
                 require_all_tasks: bool = True):
        names = list(patches)
        if sorted(names) != sorted(blessings):
            raise ValueError(f"patches {sorted(names)} and blessings {sorted(blessings)} must name the same tasks")
        channels = {BACKBONE_KEY: backbone}
        channels.update({PATCH_PREFIX + name: patches[name] for name in names})
        channels.update({BLESSING_PREFIX + name: blessings[name] for name in names})
        spec = self.SPEC_CLASS(task_names=json.dumps(names), model_name=model_name, top_k=int(top_k),
                               max_len=int(max_len), require_all_tasks=int(bool(require_all_tasks)),
                               model=types.Channel(type=standard_artifacts.Model),
                               blessing=types.Channel(type=standard_artifacts.ModelBlessing), **channels)
        super().__init__(spec=spec)
