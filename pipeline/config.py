"""The pipeline's one config file: data source, ingestion, pretraining, tasks, serving.

A JSON or YAML file (``.yaml``/``.yml`` read as YAML, anything else as JSON)::

    {
      "pipeline_name": "peterrec-demo",
      "data": {"synthetic": {"users": 1200, "seed": 0}},        # or {"source_format": "csv",
                                                                 #     "source_path": "logs.csv"}
      "ingest": {"max_len": 30, "domain": "source"},            # IngestConfig fields
      "pretrain": {"backbone": {"embedding_dim": 32}, "epochs": 3},   # PretrainConfig fields
      "tasks": [
        {"name": "gender", "kind": "classification", "strategy": "peterrec-serial",
         "label_source": {"attribute": "gender"},
         "threshold": {"metric": "accuracy", "baseline": "majority"},
         "finetune": {"epochs": 3, "readout": "mean"}},
        {"name": "cold_start", "kind": "cold_start", "strategy": "peterrec-parallel",
         "label_source": {"source_domain": "source", "target_domain": "target", "max_target_items": 5},
         "threshold": {"metric": "hr@10", "baseline": "popularity"}}
      ],
      "serving": {"model_name": "peterrec", "top_k": 10},
      "beam_pipeline_args": []
    }

Sections:

- ``data``: either ``synthetic`` (``peterrec.components.synthetic.SyntheticConfig`` fields;
  the data set is generated under ``data_dir``, default ``PIPELINE_ROOT/data``) or
  ``source_format`` + ``source_path`` (any ingestion format). ``schema_path`` (optional): a
  curated TFDV schema (``schema.pbtxt``) that the examples must satisfy (ImportSchemaGen
  instead of SchemaGen).
- ``ingest``: ``peterrec.components.ingest.IngestConfig`` fields besides the source.
- ``pretrain``: ``peterrec.trainer.pretrain.PretrainConfig`` fields (``backbone`` nested).
- ``tasks``: one entry per fine-tuned task: ``name`` (an identifier: it becomes the serving
  signature), ``kind`` (``classification`` or ``cold_start``), ``strategy`` (a paper name,
  ``peterrec.trainer.config.STRATEGIES``), ``label_source`` (classification: ``attribute``
  and, for files, ``format``/``path``; synthetic data: ``attribute`` names one of its label
  tables; cold start: ``source_domain``, ``target_domain``, ``max_target_items``,
  ``domain_rule``), ``threshold`` (what the evaluator must see to bless the task: ``metric``,
  ``baseline`` ``majority``/``popularity``/``none``, ``min_lift``, ``min_value``, ``split``)
  and ``finetune`` (``peterrec.trainer.config.TaskConfig`` model fields such as ``readout``
  or ``adapter``, plus the fine-tuning run's settings such as ``epochs``).
- ``serving``: ``model_name``, ``top_k``, ``max_len`` (default: ``context_length``: the ingestion's
  cap when it has one, else the fine-tuning default context),
  ``require_all_tasks`` (push only when every task is blessed; otherwise the blessed ones are
  served and the rest reported), ``model_base`` (default ``PIPELINE_ROOT/serving/MODEL_NAME``).
- ``beam_pipeline_args``: passed to every Beam component (DirectRunner by default; Flink,
  Spark and Dataflow flags pass through, see ``peterrec.pipeline.kubeflow_runner``).

Every error is a ``ConfigError`` that names the file and the field (``tasks[1].threshold.metric``)
and says what would be valid. Relative paths are relative to the config file's folder.
"""

import copy
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.json")

CLASSIFICATION = "classification"
COLD_START = "cold_start"
TASK_KINDS = (CLASSIFICATION, COLD_START)
BASELINES = {CLASSIFICATION: ("majority", "none"), COLD_START: ("popularity", "none")}
DEFAULT_BASELINE = {CLASSIFICATION: "majority", COLD_START: "popularity"}
DEFAULT_METRIC = {CLASSIFICATION: "accuracy", COLD_START: "hr@10"}
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
RANKING_METRIC = re.compile(r"^(hr|ndcg|mrr)@([1-9][0-9]*)$")
RESERVED_SIGNATURES = ("embed", "next_items")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")

# Synthetic data: the file names ``peterrec.components.synthetic.generate`` writes.
SYNTHETIC_INTERACTIONS = "interactions.csv"
SYNTHETIC_SETTINGS = "synthetic.json"
SYNTHETIC_LABEL_COLUMN = "label"
SYNTHETIC_ATTRIBUTES = ("gender", "age")


class ConfigError(ValueError):
    """The pipeline config is invalid; the message names the file, the field and the fix."""


def _fail(where: str, field: str, message: str) -> None:
    prefix = f"{where}: " if where else ""
    raise ConfigError(f"{prefix}{field}: {message}" if field else f"{prefix}{message}")


def _check_keys(data: Any, allowed: Sequence[str], where: str, field: str,
                required: Sequence[str] = ()) -> Dict[str, Any]:
    """``data`` as a dict; unknown or missing keys fail naming ``field``."""
    if not isinstance(data, Mapping):
        _fail(where, field, f"must be an object (a mapping), got {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        _fail(where, field, f"unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
    missing = [key for key in required if key not in data]
    if missing:
        _fail(where, field, f"missing required key(s) {missing}")
    return dict(data)


def _absolute(path: str) -> str:
    """An absolute local path; remote URIs (``gs://...``) are left as they are."""
    return path if "://" in path else os.path.abspath(path)


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key


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
        names = _task_config_fields()
        return {k: v for k, v in self.finetune.items() if k in names}

    def run_fields(self) -> Dict[str, Any]:
        """The ``finetune`` keys that configure the fine-tuning run (epochs, batch size, ...)."""
        names = _task_config_fields()
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
    """The whole validated config; build it with ``load_config`` or ``parse_config``."""

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
        """The ``IngestConfig`` of SequenceExampleGen (the source resolved)."""
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

    def with_overrides(self, **changes: Any) -> "PipelineConfig":
        """A copy with top-level fields replaced (validated again)."""
        data = self.to_dict()
        data.update(changes)
        return parse_config(data, source=self.source)


# ------------------------------------------------------------------------------ the parser
_TOP_KEYS = ("pipeline_name", "data", "ingest", "pretrain", "tasks", "serving", "beam_pipeline_args",
             "enable_cache", "description")
_DATA_KEYS = ("synthetic", "source_format", "source_path", "data_dir", "schema_path")
_TASK_KEYS = ("name", "kind", "strategy", "label_source", "threshold", "finetune", "description")
_THRESHOLD_KEYS = ("metric", "baseline", "min_lift", "min_value", "split")
_CLASSIFICATION_LABEL_KEYS = ("attribute", "format", "path")
_COLD_START_LABEL_KEYS = ("source_domain", "target_domain", "max_target_items", "domain_rule")
_SERVING_KEYS = tuple(f.name for f in dataclasses.fields(ServingSpec))
# IngestConfig fields the ``ingest`` section may not set: the data section owns the source.
_SOURCE_FIELDS = ("source_format", "source_path")


def _task_config_fields() -> Tuple[str, ...]:
    from peterrec.trainer.config import TaskConfig

    return tuple(f.name for f in dataclasses.fields(TaskConfig) if f.name not in ("name", "kind", "num_outputs"))


def _resolve_path(path: Any, base_dir: str, where: str, field: str) -> Optional[str]:
    if path is None:
        return None
    if not isinstance(path, str) or not path:
        _fail(where, field, f"must be a non-empty path string, got {path!r}")
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))


def _parse_data(data: Any, base_dir: str, where: str) -> DataConfig:
    from peterrec.components import readers
    from peterrec.components.synthetic import SyntheticConfig

    data = _check_keys(data, _DATA_KEYS, where, "data")
    has_synthetic = data.get("synthetic") is not None
    has_files = data.get("source_path") is not None or data.get("source_format") is not None
    if has_synthetic == has_files:
        _fail(where, "data", "give either 'synthetic' (generated data) or 'source_format' and 'source_path' "
                             "(your files), not both and not neither")
    result = DataConfig(data_dir=_resolve_path(data.get("data_dir"), base_dir, where, "data.data_dir"),
                        schema_path=_resolve_path(data.get("schema_path"), base_dir, where, "data.schema_path"))
    if has_synthetic:
        synthetic = _check_keys(data["synthetic"], [f.name for f in dataclasses.fields(SyntheticConfig)],
                                where, "data.synthetic")
        try:
            SyntheticConfig(**synthetic).validate()
        except (TypeError, ValueError) as error:
            _fail(where, "data.synthetic", str(error))
        result.synthetic = synthetic
    else:
        fmt = data.get("source_format")
        if fmt not in readers.INTERACTION_FORMATS:
            _fail(where, "data.source_format", f"{fmt!r} is not one of {sorted(readers.INTERACTION_FORMATS)}")
        if data.get("source_path") is None:
            _fail(where, "data.source_path", "is required with data.source_format")
        result.source_format = fmt
        result.source_path = _resolve_path(data["source_path"], base_dir, where, "data.source_path")
    return result


def _parse_ingest(ingest: Any, data: DataConfig, where: str) -> Dict[str, Any]:
    from peterrec.components.ingest import IngestConfig

    names = [f.name for f in dataclasses.fields(IngestConfig) if f.name not in _SOURCE_FIELDS]
    ingest = _check_keys(ingest if ingest is not None else {}, names, where, "ingest")
    source_format, source_path = data.source("/pipeline-root")
    _validated(lambda: IngestConfig(source_format=source_format, source_path=source_path, **ingest),
               where, "ingest")
    return ingest


def _validated(build, where: str, field: str):
    """Builds a config dataclass and runs its ``validate``; errors become ConfigErrors for ``field``."""
    try:
        config = build()
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
        return config
    except (TypeError, ValueError, KeyError) as error:
        message = str(error)
        match = re.search(r"got an unexpected keyword argument '(\w+)'", message)
        if match:
            message = f"unknown key {match.group(1)!r}"
        _fail(where, field, message)


def _parse_pretrain(pretrain: Any, where: str) -> Dict[str, Any]:
    from peterrec.trainer.pretrain import PretrainConfig

    pretrain = dict(_check_keys(pretrain if pretrain is not None else {},
                                [f.name for f in dataclasses.fields(PretrainConfig)], where, "pretrain"))
    if "backbone" in pretrain:
        from peterrec.trainer.config import BackboneConfig

        backbone = _check_keys(pretrain["backbone"], [f.name for f in dataclasses.fields(BackboneConfig)], where,
                               "pretrain.backbone")
        # vocab_size 0 means "the vocabulary's size", known only at run time: check the rest now.
        probe = {**backbone, "vocab_size": backbone.get("vocab_size") or 1000}
        _validated(lambda: BackboneConfig.from_dict(probe), where, "pretrain.backbone")
    _validated(lambda: PretrainConfig.from_dict(copy.deepcopy(pretrain)), where, "pretrain")
    return pretrain


def _parse_threshold(threshold: Any, kind: str, where: str, field: str) -> ThresholdConfig:
    threshold = _check_keys(threshold if threshold is not None else {}, _THRESHOLD_KEYS, where, field)
    metric = threshold.get("metric", DEFAULT_METRIC[kind])
    if kind == CLASSIFICATION and metric not in CLASSIFICATION_METRICS:
        _fail(where, _join(field, "metric"),
              f"{metric!r} is not a classification metric; use one of {list(CLASSIFICATION_METRICS)}")
    if kind == COLD_START and not (isinstance(metric, str) and RANKING_METRIC.match(metric)):
        _fail(where, _join(field, "metric"),
              f"{metric!r} is not a cold-start metric; use hr@K, ndcg@K or mrr@K (e.g. hr@10)")
    baseline = threshold.get("baseline", DEFAULT_BASELINE[kind])
    if baseline not in BASELINES[kind]:
        _fail(where, _join(field, "baseline"), f"{baseline!r} is not a {kind} baseline; use one of {list(BASELINES[kind])}")
    min_lift = threshold.get("min_lift", 0.0)
    if isinstance(min_lift, bool) or not isinstance(min_lift, (int, float)):
        _fail(where, _join(field, "min_lift"), f"must be a number, got {min_lift!r}")
    min_value = threshold.get("min_value")
    if min_value is not None and (isinstance(min_value, bool) or not isinstance(min_value, (int, float))):
        _fail(where, _join(field, "min_value"), f"must be a number or null, got {min_value!r}")
    if baseline == "none" and min_value is None:
        _fail(where, field, "with baseline 'none' give min_value, or nothing would ever be rejected")
    split = threshold.get("split", "test")
    if not isinstance(split, str) or not split:
        _fail(where, _join(field, "split"), f"must be a split name, got {split!r}")
    return ThresholdConfig(metric=metric, baseline=baseline, min_lift=float(min_lift),
                           min_value=None if min_value is None else float(min_value), split=split)


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


def _parse_label_source(source: Any, kind: str, data: DataConfig, base_dir: str, where: str, field: str):
    if kind == CLASSIFICATION:
        source = _check_keys(source if source is not None else {}, _CLASSIFICATION_LABEL_KEYS, where, field)
        if data.is_synthetic:
            extra = sorted(set(source) - {"attribute"})
            if extra:
                _fail(where, field, f"synthetic data has its own label tables: give only 'attribute' "
                                    f"(one of {list(SYNTHETIC_ATTRIBUTES)}), not {extra}")
            if source.get("attribute") not in SYNTHETIC_ATTRIBUTES:
                _fail(where, _join(field, "attribute"),
                      f"{source.get('attribute')!r} is not a synthetic label table; use one of "
                      f"{list(SYNTHETIC_ATTRIBUTES)}")
        elif "path" in source:
            source["path"] = _resolve_path(source["path"], base_dir, where, _join(field, "path"))
        return source
    source = _check_keys(source if source is not None else {}, _COLD_START_LABEL_KEYS, where, field)
    return source


def _parse_finetune(finetune: Any, task: TaskSpec, where: str, field: str) -> Dict[str, Any]:
    from peterrec.trainer.config import TaskConfig

    finetune = dict(_check_keys(finetune if finetune is not None else {}, list(_finetune_keys()), where, field))
    task.finetune = finetune
    _validated(lambda: TaskConfig.from_dict({**task.task_config(), "num_outputs": 2}), where, field)
    run_class = _finetune_run_class()
    if run_class is not None and task.run_fields():
        task_data = {**task.task_config(), "num_outputs": 2}
        _validated(lambda: run_class.from_dict({**copy.deepcopy(task.run_fields()), "task": task_data}),
                   where, field)
    return finetune


def _finetune_run_class():
    """The fine-tuning run's config class (``peterrec.trainer.finetune.FinetuneConfig``), if present."""
    try:
        from peterrec.trainer import finetune
    except ImportError:
        return None
    return getattr(finetune, "FinetuneConfig", None)


# FinetuneConfig fields the pipeline sets itself (from the task entry and the artifacts).
_PIPELINE_OWNED_RUN_FIELDS = {"task", "task_vocabulary", "item_vocabulary"}


def _finetune_keys() -> Tuple[str, ...]:
    """Every key a task's ``finetune`` section may hold."""
    keys = set(_task_config_fields())
    run_class = _finetune_run_class()
    if run_class is not None and dataclasses.is_dataclass(run_class):
        keys |= {f.name for f in dataclasses.fields(run_class)} - _PIPELINE_OWNED_RUN_FIELDS
    else:  # the fine-tuning run's settings as the trainer documents them
        keys |= {"epochs", "batch_size", "learning_rate", "max_len", "seed", "early_stopping_patience",
                 "monitor", "restore_best", "steps_per_epoch", "shuffle_buffer", "verbose"}
    return tuple(sorted(keys))


def _parse_task(entry: Any, index: int, data: DataConfig, base_dir: str, where: str) -> TaskSpec:
    from peterrec.trainer.config import STRATEGIES

    field = f"tasks[{index}]"
    entry = _check_keys(entry, _TASK_KEYS, where, field, required=("name", "kind"))
    name = entry["name"]
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        _fail(where, _join(field, "name"), f"{name!r} must start with a letter and use only letters, digits and "
                                           "'_' (it becomes a serving signature name)")
    if name in RESERVED_SIGNATURES:
        _fail(where, _join(field, "name"), f"{name!r} is a signature of every served model; choose another name")
    kind = entry["kind"]
    if kind not in TASK_KINDS:
        _fail(where, _join(field, "kind"), f"{kind!r} is not one of {list(TASK_KINDS)}")
    strategy = entry.get("strategy", "peterrec-serial")
    if strategy not in STRATEGIES:
        _fail(where, _join(field, "strategy"), f"{strategy!r} is not one of {list(STRATEGIES)}")
    task = TaskSpec(name=name, kind=kind, strategy=strategy,
                    label_source=_parse_label_source(entry.get("label_source"), kind, data, base_dir, where,
                                                     _join(field, "label_source")),
                    threshold=_parse_threshold(entry.get("threshold"), kind, where, _join(field, "threshold")))
    _parse_finetune(entry.get("finetune"), task, where, _join(field, "finetune"))
    return task


def _check_task_examples(task: TaskSpec, index: int, config: PipelineConfig, where: str) -> None:
    """Validates the task's TaskExampleGen config (label source against the ingestion settings)."""
    from peterrec.components import task_examples

    config_class = (task_examples.AttributeTaskConfig if task.kind == CLASSIFICATION
                    else task_examples.ColdStartTaskConfig)
    fields = config.task_example_fields(task, "/pipeline-root")
    _validated(lambda: config_class(**fields), where, f"tasks[{index}].label_source")


def _parse_serving(serving: Any, where: str) -> ServingSpec:
    serving = _check_keys(serving if serving is not None else {}, _SERVING_KEYS, where, "serving")
    spec = ServingSpec(**serving)
    if not isinstance(spec.model_name, str) or not _IDENTIFIER.match(spec.model_name):
        _fail(where, "serving.model_name", f"{spec.model_name!r} must be an identifier (letters, digits, '_')")
    if isinstance(spec.top_k, bool) or not isinstance(spec.top_k, int) or spec.top_k < 1:
        _fail(where, "serving.top_k", f"must be a positive integer, got {spec.top_k!r}")
    if spec.max_len is not None and (isinstance(spec.max_len, bool) or not isinstance(spec.max_len, int)
                                     or spec.max_len < 1):
        _fail(where, "serving.max_len", f"must be a positive integer or null, got {spec.max_len!r}")
    if not isinstance(spec.require_all_tasks, bool):
        _fail(where, "serving.require_all_tasks", f"must be true or false, got {spec.require_all_tasks!r}")
    return spec


def parse_config(data: Any, base_dir: Optional[str] = None, source: str = "<config>") -> PipelineConfig:
    """Validates a config object (the parsed JSON/YAML) and returns the ``PipelineConfig``.

    ``base_dir`` anchors relative paths (default: the current folder); ``source`` names the
    config in error messages.
    """
    where = source
    base_dir = os.path.abspath(base_dir or os.getcwd())
    data = _check_keys(data, _TOP_KEYS, where, "", required=("data", "tasks"))
    name = data.get("pipeline_name", "peterrec")
    if not isinstance(name, str) or not _PIPELINE_NAME.match(name):
        _fail(where, "pipeline_name", f"{name!r} must use letters, digits, '_' and '-'")
    data_config = _parse_data(data["data"], base_dir, where)
    ingest = _parse_ingest(data.get("ingest"), data_config, where)
    pretrain = _parse_pretrain(data.get("pretrain"), where)
    tasks_data = data["tasks"]
    if not isinstance(tasks_data, list) or not tasks_data:
        _fail(where, "tasks", "must be a non-empty list of tasks")
    tasks = [_parse_task(entry, index, data_config, base_dir, where) for index, entry in enumerate(tasks_data)]
    seen: Dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.name in seen:
            _fail(where, f"tasks[{index}].name", f"{task.name!r} is already the name of tasks[{seen[task.name]}]")
        seen[task.name] = index
    beam_args = data.get("beam_pipeline_args", [])
    if not isinstance(beam_args, list) or not all(isinstance(a, str) and a.startswith("--") for a in beam_args):
        _fail(where, "beam_pipeline_args", f"must be a list of '--flag=value' strings, got {beam_args!r}")
    enable_cache = data.get("enable_cache", True)
    if not isinstance(enable_cache, bool):
        _fail(where, "enable_cache", f"must be true or false, got {enable_cache!r}")
    config = PipelineConfig(pipeline_name=name, data=data_config, ingest=ingest, pretrain=pretrain, tasks=tasks,
                            serving=_parse_serving(data.get("serving"), where), beam_pipeline_args=list(beam_args),
                            enable_cache=enable_cache, source=source)
    for index, task in enumerate(tasks):
        _check_task_examples(task, index, config, where)
    if config.serving.model_base is not None:
        config.serving.model_base = _resolve_path(config.serving.model_base, base_dir, where, "serving.model_base")
    return config


def read_config_file(path: str) -> Any:
    """Reads a JSON or YAML file into Python objects (ConfigError naming the line on a syntax error)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such config file")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}") \
            from error


def load_config(path: Optional[str] = None) -> PipelineConfig:
    """Loads and validates a config file (default: the embedded ``default_config.json``)."""
    path = os.path.abspath(path or DEFAULT_CONFIG_FILE)
    return parse_config(read_config_file(path), base_dir=os.path.dirname(path), source=path)


def load_default_config() -> PipelineConfig:
    """The embedded default: synthetic data, a small backbone, a gender, an age and a cold-start task."""
    return load_config(DEFAULT_CONFIG_FILE)


# --------------------------------------------------------------------------- data preparation
def prepare_data(config: PipelineConfig, pipeline_root: str, log=print) -> Optional[str]:
    """Generates the synthetic data set if the config asks for one; returns its folder.

    The files are written only when they are missing or were generated with other settings,
    so an unchanged config keeps the files (and their modification times) and the ingestion
    components stay cached on a rerun. Returns None for file sources.
    """
    if not config.data.is_synthetic:
        return None
    from peterrec.components import synthetic

    settings = synthetic.SyntheticConfig(**config.data.synthetic)
    data_dir = config.data.resolved_data_dir(pipeline_root)
    wanted = dataclasses.asdict(settings)
    settings_path = os.path.join(data_dir, SYNTHETIC_SETTINGS)
    expected = [os.path.join(data_dir, name) for name in
                (SYNTHETIC_INTERACTIONS, *(f"{a}.csv" for a in SYNTHETIC_ATTRIBUTES))]
    if os.path.exists(settings_path) and all(os.path.exists(p) for p in expected):
        with open(settings_path, encoding="utf-8") as handle:
            try:
                if json.load(handle) == wanted:
                    log(f"synthetic data: reusing {data_dir} (same settings)")
                    return data_dir
            except json.JSONDecodeError:
                pass
    log(f"synthetic data: generating {settings.users} users, {settings.source_items} source and "
        f"{settings.target_items} target items into {data_dir}")
    synthetic.generate(data_dir, settings)
    return data_dir
