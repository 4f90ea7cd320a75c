"""Fine-tuning examples for PeterRec tasks, built with Beam like the ingestion.

Two kinds of task (docs/method.md section 1):

- ``run_attribute_task`` (``attribute_task``): user profile prediction. Each example is a
  user's source sequence plus a class ``label`` from an attribute table;
- ``run_cold_start_task`` (``cold_start_task``): cold-start recommendation in a target
  domain. Each example is a user's source-domain sequence plus ``target_item_ids``.

Both write ``Split-<name>/`` GZIP TFRecords to ``examples_dir``, rejects and
``summary.json`` to ``rejects_dir``, and return a ``TaskSummary``. This module gathers the
task pipelines' public names, which callers (CLI, TFX executor, pipeline config,
benchmarks) import from here.
"""

from peterrec.components.attribute_task import run_attribute_task
from peterrec.components.cold_start_task import run_cold_start_task
from peterrec.components.task_config import AttributeTaskConfig, ColdStartTaskConfig
from peterrec.components.task_summary import ATTRIBUTE, COLD_START, TaskSummary

__all__ = ["AttributeTaskConfig", "ColdStartTaskConfig", "TaskSummary", "run_attribute_task",
           "run_cold_start_task", "ATTRIBUTE", "COLD_START"]
