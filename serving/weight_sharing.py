"""How many tasks share one SavedModel cheaply: each task's own weights, found, swapped and packed.

The served model stores the shared backbone's variables once; what each task adds is kept
small in two ways:

- variables: a task's own variables (patches, LN2 copies, [TCL], head, the item table of
  peterrec+items) are packed into ONE flat variable per dtype (``PackedWeights``), so a task adds
  its patch's bytes and one or two checkpoint entries instead of ~10 variables per block;
- graphs: ``WeightSlots`` records where a task model keeps its own variables, in a structural
  order. Tasks with the same ``key`` (same config apart from the name, same weight shapes) share
  ONE traced forward function: a template task's Keras layers are traced with their weights
  swapped for tensor inputs (``swapped_in``), and each task feeds its own unpacked weights.

Strategies that own backbone weights (fine-all, fine-last, peter-zero) keep their own copy among
their own variables: they are served, but cost what a separate model costs.
"""

import contextlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from peterrec.serving.served_tasks import ServedTask


class Untracked:
    """A plain attribute holder that tf.Module does not track."""

    def __init__(self, **values):
        self.__dict__.update(values)


class WeightSlots:
    """Where a task model keeps the variables of its own (not the shared backbone's).

    ``slots`` lists (module index, attribute, variable index) in a deterministic structural order
    (``[model] + model.submodules``, attributes sorted), ``variables`` the distinct variables.
    Two tasks with the same ``key`` have the same structure: one traced forward serves both, fed
    with each task's own variable values.
    """

    def __init__(self, task: ServedTask, shared_ids):
        self.task_name = task.name
        model = task.model
        own = list(model.task_variables())
        if all(id(v) not in shared_ids for v in model.backbone.weights):
            # fine-all / fine-last run on their own copy, peter-zero on its own untrained backbone
            own += list(model.backbone.weights)
        # the pretraining output layer of a task's own backbone copy is never used by the task
        scorer = {id(v) for v in model.backbone.output_layer.weights}
        own_ids = {id(v) for v in own if id(v) not in scorer}
        self.modules = [model] + list(model.submodules)
        self.slots: List[Tuple[int, str, int]] = []
        self.variables: List[tf.Variable] = []
        position: Dict[int, int] = {}
        for index, module in enumerate(self.modules):
            for attribute, value in sorted(vars(module).items()):
                if isinstance(value, tf.Variable) and id(value) in own_ids:
                    if id(value) not in position:
                        position[id(value)] = len(self.variables)
                        self.variables.append(value)
                    self.slots.append((index, attribute, position[id(value)]))
        config = model.config.to_dict()
        config.pop("name")
        self.key = (repr(sorted(config.items())), type(model.head).__name__, task.num_reserved,
                    tuple((i, type(self.modules[i]).__name__, a, p) for i, a, p in self.slots),
                    tuple((tuple(v.shape.as_list()), v.dtype.name) for v in self.variables))

    @contextlib.contextmanager
    def swapped_in(self, values):
        """While tracing, the slots hold ``values`` (tensors) instead of the variables.

        ``object.__setattr__`` bypasses Keras' attribute tracking, so nothing else changes; a
        layer that read a weight some other way would capture the variable itself, which
        ``serving_module.ServingModule`` detects after tracing.
        """
        try:
            for index, attribute, position in self.slots:
                object.__setattr__(self.modules[index], attribute, values[position])
            yield
        finally:
            for index, attribute, position in self.slots:
                object.__setattr__(self.modules[index], attribute, self.variables[position])


class PackedWeights:
    """One task's own variables packed into one flat variable per dtype (what the SavedModel stores).

    A SavedModel's save/restore functions and its loading grow with the number of variables; a
    patch has ~10 per block. Packed, a task adds one or two variables, and ``unpack`` gives back
    the tensors in the task's slot order for the shared forward.
    """

    def __init__(self, name: str, variables: Sequence[tf.Variable]):
        self.shapes = [v.shape.as_list() for v in variables]
        self.dtypes = [v.dtype for v in variables]
        self.order = sorted({d.name for d in self.dtypes})
        self.variables = []
        for dtype_name in self.order:
            members = [v for v in variables if v.dtype.name == dtype_name]
            flat = np.concatenate([v.numpy().reshape(-1) for v in members]) if members else []
            self.variables.append(tf.Variable(flat, dtype=dtype_name, trainable=False,
                                              name=f"{name}_weights_{dtype_name}"))

    def specs(self) -> List[tf.TensorSpec]:
        """The TensorSpecs of the packed variables (one flat vector per dtype)."""
        return [tf.TensorSpec(v.shape, v.dtype) for v in self.variables]

    def unpack(self, packed: Sequence[tf.Tensor]) -> List[tf.Tensor]:
        """The weights as tensors in slot order, from the packed vectors (of this or an equal layout)."""
        values: List[Optional[tf.Tensor]] = [None] * len(self.shapes)
        for dtype_name, flat in zip(self.order, packed):
            members = [i for i, d in enumerate(self.dtypes) if d.name == dtype_name]
            pieces = tf.split(flat, [int(np.prod(self.shapes[i])) for i in members])
            for i, piece in zip(members, pieces):
                values[i] = tf.reshape(piece, self.shapes[i])
        return values
