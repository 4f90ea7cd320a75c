"""The pipeline config's types: its sections as dataclasses, and the constants they use.

``peterrec.pipeline.config`` documents the file format and builds these from a file
(``load_config``); everything here is also importable from there.
"""

import copy
import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

CLASSIFICATION = "classification"
COLD_START = "cold_start"
TASK_KINDS = (CLASSIFICATION, COLD_START)
BASELINES = {CLASSIFICATION: ("majority", "none"), COLD_START: ("popularity", "none")}
DEFAULT_BASELINE = {CLASSIFICATION: "majority", COLD_START: "popularity"}
DEFAULT_METRIC = {CLASSIFICATION: "accuracy", COLD_START: "hr@10"}
RESERVED_SIGNATURES = ("embed", "next_items")

# Synthetic data: the file names ``peterrec.components.synthetic.generate`` writes.
SYNTHETIC_INTERACTIONS = "interactions.csv"
SYNTHETIC_SETTINGS = "synthetic.json"
SYNTHETIC_LABEL_COLUMN = "label"
SYNTHETIC_ATTRIBUTES = ("gender", "age")


def _model_field_names() -> Tuple[str, ...]:
    """The ``TaskConfig`` fields a task's ``finetune`` section may set (the model's settings)."""
    from peterrec.trainer.config import TaskConfig

    return tuple(f.name for f in dataclasses.fields(TaskConfig) if f.name not in ("name", "kind", "num_outputs"))


def _absolute(path: str) -> str:
    """An absolute local path; remote URIs (``gs://...``) are left as they are."""
    return path if "://" in path else os.path.abspath(path)


# --------------------------------------------------------------------------------- sections
@dataclasses.dataclass
class DataConfig:
    """Where the interactions come from: a synthetic data set or files in a known format."""

    synthetic: Optional[Dict[str, Any]] = None
    source_format: Optional[str] = None
    source_path: Optional[str] = None
    data_dir: Optional[str] = None
    schema_path: Optional[str] = None

    @property
    def is_synthetic(self) -> bool:
        """True when the pipeline generates its own data set."""
        return self.synthetic is not None

    def resolved_data_dir(self, pipeline_root: str) -> str:
        """The folder of the synthetic data set (``data_dir`` or ``PIPELINE_ROOT/data``)."""
        return _absolute(self.data_dir or os.path.join(pipeline_root, "data"))

    def source(self, pipeline_root: str) -> Tuple[str, str]:
        """``(source_format, source_path)`` of the interactions."""
        if self.is_synthetic:
            return "csv", os.path.join(self.resolved_data_dir(pipeline_root), SYNTHETIC_INTERACTIONS)
        return str(self.source_format), str(self.source_path)


@dataclasses.dataclass
class ThresholdConfig:
    """When the evaluator blesses a task: ``metric`` > baseline + ``min_lift`` and >= ``min_value``.

    ``metric``: ``accuracy`` or ``macro_f1`` (classification), ``hr@K``, ``ndcg@K`` or
    ``mrr@K`` (cold start, full ranking over the target items). ``baseline``: ``majority``
    (the most frequent training label, classification), ``popularity`` (target items ranked
    by training frequency, cold start) or ``none``. ``split``: the examples split evaluated.
    """

    metric: str
    baseline: str
    min_lift: float = 0.0
    min_value: Optional[float] = None
    split: str = "test"

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TaskSpec:
    """One fine-tuned task of the pipeline (see the module docstring)."""

    name: str
    kind: str
    strategy: str
    label_source: Dict[str, Any]
    threshold: ThresholdConfig
    finetune: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def model_fields(self) -> Dict[str, Any]:
        """The ``finetune`` keys that are ``TaskConfig`` fields (readout, adapter, ...)."""
        names = _model_field_names()
        return {k: v for k, v in self.finetune.items() if k in names}

    def run_fields(self) -> Dict[str, Any]:
        """The ``finetune`` keys that configure the fine-tuning run (epochs, batch size, ...)."""
        names = _model_field_names()
        return {k: v for k, v in self.finetune.items() if k not in names}

    def task_config(self) -> Dict[str, Any]:
        """The ``TaskConfig`` dict of the task; ``num_outputs`` is set from the task vocabulary."""
        data = {"name": self.name, "kind": self.kind, "strategy": self.strategy}
        data.update(self.model_fields())
        return data

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict."""
        data = dataclasses.asdict(self)
        data["threshold"] = self.threshold.to_dict()
        return data


@dataclasses.dataclass
class ServingSpec:
    """The served model: its name, top-K, input length and push policy."""

    model_name: str = "peterrec"
    top_k: int = 10
    max_len: Optional[int] = None
    require_all_tasks: bool = True
    model_base: Optional[str] = None

    def resolved_model_base(self, pipeline_root: str) -> str:
        """``model_base`` or ``PIPELINE_ROOT/serving/MODEL_NAME`` (TF Serving's base path)."""
        return _absolute(self.model_base or os.path.join(pipeline_root, "serving", self.model_name))


@dataclasses.dataclass
class PipelineConfig:
    """The whole validated config; build it with ``load_config`` or ``parse_config``.

    ``ingest``, ``pretrain`` and each task's ``finetune`` stay the dicts the file gave
    (checked against ``IngestConfig``, ``PretrainConfig`` and ``TaskConfig``/``FinetuneConfig``):
    the pipeline fills what they leave out (``max_len``, the vocabularies) at build time.
    """

    pipeline_name: str
    data: DataConfig
    ingest: Dict[str, Any]
    pretrain: Dict[str, Any]
    tasks: List[TaskSpec]
    serving: ServingSpec = dataclasses.field(default_factory=ServingSpec)
    beam_pipeline_args: List[str] = dataclasses.field(default_factory=list)
    enable_cache: bool = True
    source: str = "<config>"

    # ---- resolved settings of the components --------------------------------------------
    def ingest_config(self, pipeline_root: str):
        """The ``IngestConfig`` of InteractionExampleGen (the source resolved)."""
        from peterrec.components.ingest import IngestConfig

        source_format, source_path = self.data.source(pipeline_root)
        return IngestConfig(source_format=source_format, source_path=source_path, **copy.deepcopy(self.ingest))

    def task_example_fields(self, task: TaskSpec, pipeline_root: str) -> Dict[str, Any]:
        """The ``task_config`` fields of the task's TaskExampleGen (ingestion + label source)."""
        fields = dataclasses.asdict(self.ingest_config(pipeline_root))
        fields.update(_label_fields(task, self.data, pipeline_root))
        return fields

    def pretrain_config(self):
        """The ``PretrainConfig`` of the pretraining Trainer."""
        from peterrec.trainer.pretrain import PretrainConfig

        return PretrainConfig.from_dict(copy.deepcopy(self.pretrain))

    @property
    def context_length(self) -> int:
        """The context the models read: the ingestion's cap when one is set, else the
        fine-tuning default (``FinetuneConfig.max_len``, 200); runs may override it."""
        if self.ingest.get("max_len"):
            return int(self.ingest["max_len"])
        from peterrec.trainer.finetune import FinetuneConfig

        return int(FinetuneConfig.max_len)

    @property
    def serving_max_len(self) -> int:
        """Items kept per request by the served model (``serving.max_len`` or ``context_length``)."""
        if self.serving.max_len:
            return int(self.serving.max_len)
        return self.context_length

    def task(self, name: str) -> TaskSpec:
        """The task called ``name`` (KeyError naming the known tasks otherwise)."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r}; the config has {[t.name for t in self.tasks]}")

    def to_dict(self) -> Dict[str, Any]:
        """The config as the JSON object it was read from (paths made absolute)."""
        return {
            "pipeline_name": self.pipeline_name,
            "data": {k: v for k, v in dataclasses.asdict(self.data).items() if v is not None},
            "ingest": copy.deepcopy(self.ingest),
            "pretrain": copy.deepcopy(self.pretrain),
            "tasks": [task.to_dict() for task in self.tasks],
            "serving": dataclasses.asdict(self.serving),
            "beam_pipeline_args": list(self.beam_pipeline_args),
            "enable_cache": self.enable_cache,
        }


def _label_fields(task: TaskSpec, data: DataConfig, pipeline_root: str) -> Dict[str, Any]:
    """The AttributeTaskConfig / ColdStartTaskConfig fields of a task's label source."""
    source = dict(task.label_source)
    if task.kind == COLD_START:
        return source
    if data.is_synthetic:
        attribute = source.get("attribute", "gender")
        return {"label_format": "csv", "attribute": SYNTHETIC_LABEL_COLUMN,
                "label_path": os.path.join(data.resolved_data_dir(pipeline_root), f"{attribute}.csv")}
    fields = {"attribute": source.get("attribute", "label")}
    if source.get("format") is not None:
        fields["label_format"] = source["format"]
    if source.get("path") is not None:
        fields["label_path"] = source["path"]
    return fields
