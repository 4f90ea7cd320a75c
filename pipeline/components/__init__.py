"""The pipeline's own TFX components, one folder each (``component.py`` + ``executor.py``, as TFX).

- ``task_evaluator``: ``TaskEvaluator`` evaluates one fine-tuned task (its patch artifact on
  the pretrained backbone) on a split of the task's examples, beside a baseline computed from
  the training split (majority class for classification, item popularity for cold start;
  the maths is ``peterrec.trainer.evaluation``). Writes ``metrics.json`` into a
  ``ModelEvaluation`` and blesses the task (``ModelBlessing`` with a ``BLESSED`` or
  ``NOT_BLESSED`` file and the ``blessed`` custom property, as TFX's Evaluator does) only if
  the metric beats the baseline by ``min_lift`` and reaches ``min_value``.
- ``serving_assembler``: ``ServingModelAssembler``, one multi-signature SavedModel
  (``peterrec.serving.assembly``) from the pretrained backbone and the patches of the blessed
  tasks, in its ``model`` output (``Format-Serving/``, the layout TFX's Pusher reads), plus a
  ``blessing``: blessed when every task is blessed (``require_all_tasks``) or at least one is.
- ``serving_pusher``: ``ServingPusher``, TFX's Pusher with a filesystem destination, except
  that the new version is the next integer under the model base (as ``peterrec export``
  numbers them), published by an atomic rename, and ``models.config`` (plus the batching and
  monitoring files) beside the model base is updated for TF Serving and ``peterrec serve``.
- ``example_validator``: ``StrictExampleValidator``, TFX's ExampleValidator that, after
  writing its anomalies, fails the execution with a message naming every anomaly, so bad
  data stops the run before training.
- ``trainer``: ``PeterRecTrainer``, TFX's Trainer that also hands the Vocabulary artifacts to
  the run_fn.
- ``statistics_gen``: ``LocalStatisticsGen``, TFX's StatisticsGen that, on the local
  DirectRunner, skips TFX's packaging of itself for remote Beam workers.
- ``common``: the spec keys, file names, artifact lookups and blessing marks they share.

The public names are re-exported here: ``from peterrec.pipeline.components import X``.
"""

from peterrec.pipeline.components.common import (  # noqa: F401
    ASSEMBLY_FILE, BLESSED_FILE, BLESSED_PROPERTY, METRICS_FILE, NOT_BLESSED_FILE, VERSION_LABEL_KEY,
    backbone_dir_of, is_blessed, local_copy, patch_dir_of, write_blessing)
from peterrec.pipeline.components.example_validator.component import StrictExampleValidator  # noqa: F401
from peterrec.pipeline.components.example_validator.executor import (  # noqa: F401
    DataAnomalyError, StrictExampleValidatorExecutor, describe_anomalies)
from peterrec.pipeline.components.serving_assembler.component import (  # noqa: F401
    ServingModelAssembler, ServingModelAssemblerSpec, assembler_spec_class)
from peterrec.pipeline.components.serving_assembler.executor import ServingModelAssemblerExecutor  # noqa: F401
from peterrec.pipeline.components.serving_pusher.component import ServingPusher  # noqa: F401
from peterrec.pipeline.components.serving_pusher.executor import ServingPusherExecutor  # noqa: F401
from peterrec.pipeline.components.statistics_gen.component import LocalStatisticsGen  # noqa: F401
from peterrec.pipeline.components.statistics_gen.executor import LocalStatisticsGenExecutor  # noqa: F401
from peterrec.pipeline.components.task_evaluator.component import TaskEvaluator, TaskEvaluatorSpec  # noqa: F401
from peterrec.pipeline.components.task_evaluator.executor import (  # noqa: F401
    BlessingError, TaskEvaluatorExecutor, parse_threshold)
from peterrec.pipeline.components.trainer.component import PeterRecTrainer, PeterRecTrainerSpec  # noqa: F401
from peterrec.pipeline.components.trainer.executor import PeterRecTrainerExecutor  # noqa: F401
from peterrec.trainer.evaluation import decide_blessing  # noqa: F401
