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

How it is checked: each section is a dataclass, and what a section hands to the trainer or
the components is checked against those classes' own annotations (``PretrainConfig`` with
its ``BackboneConfig``, ``TaskConfig`` with its ``AdapterConfig``, ``FinetuneConfig``,
``IngestConfig``, ``SyntheticConfig``, the task example configs) by one generic validator,
``peterrec.typed_config``: unknown keys and wrong types fail first, naming the field
(``pretrain.backbone.embedding_dim: expected an integer, got '32'``); then each class's own
``validate()`` checks the ranges, and the pipeline checks what only it knows (task names,
metrics per task kind, baselines).
"""

import copy
import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Optional

from peterrec import typed_config as typed
from peterrec.pipeline.config_schema import (  # noqa: F401 (the config's public names live here too)
    BASELINES, CLASSIFICATION, COLD_START, DEFAULT_BASELINE, DEFAULT_METRIC, RESERVED_SIGNATURES,
    SYNTHETIC_ATTRIBUTES, SYNTHETIC_INTERACTIONS, SYNTHETIC_LABEL_COLUMN, SYNTHETIC_SETTINGS, TASK_KINDS,
    DataConfig, PipelineConfig, ServingSpec, TaskSpec, ThresholdConfig)
from peterrec.typed_config import FieldError, join
from peterrec.trainer.evaluation import CLASSIFICATION_METRICS, RANKING_METRIC  # noqa: F401

DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default_config.json")

_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# Free text a config (or a task entry) may carry; not checked, not kept.
_IGNORED_KEYS = ("description",)
# IngestConfig fields the ``ingest`` section may not set: the data section owns the source.
_SOURCE_FIELDS = ("source_format", "source_path")
# FinetuneConfig fields the pipeline sets itself (from the task entry and the artifacts).
_PIPELINE_OWNED_RUN_FIELDS = ("task", "task_vocabulary", "item_vocabulary")
# Cold-start label source keys: ColdStartTaskConfig fields.
_COLD_START_LABEL_KEYS = ("source_domain", "target_domain", "max_target_items", "domain_rule")


class ConfigError(ValueError):
    """The pipeline config is invalid; the message names the file, the field and the fix."""


# ------------------------------------------------------------------------------ the parser
def _fail(field: str, message: str) -> None:
    raise FieldError(field, message)


def _validated(build, field: str):
    """Builds a config dataclass and runs its ``validate``; its errors become FieldErrors of ``field``."""
    try:
        config = build()
        validate = getattr(config, "validate", None)
        if validate is not None:
            validate()
        return config
    except FieldError:
        raise
    except (TypeError, ValueError, KeyError) as error:
        raise FieldError(field, str(error)) from error


def _resolve_path(path: Optional[str], base_dir: str, field: str) -> Optional[str]:
    if path is None:
        return None
    if not path:
        _fail(field, "must be a non-empty path string")
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.abspath(os.path.join(base_dir, os.path.expanduser(path)))


def _parse_data(data: Any, base_dir: str) -> DataConfig:
    from peterrec.components import readers
    from peterrec.components.synthetic import SyntheticConfig

    data = typed.check_object(data, typed.fields_of(DataConfig), "data")
    has_synthetic = data.get("synthetic") is not None
    has_files = data.get("source_path") is not None or data.get("source_format") is not None
    if has_synthetic == has_files:
        _fail("data", "give either 'synthetic' (generated data) or 'source_format' and 'source_path' "
                      "(your files), not both and not neither")
    result = DataConfig(data_dir=_resolve_path(data.get("data_dir"), base_dir, "data.data_dir"),
                        schema_path=_resolve_path(data.get("schema_path"), base_dir, "data.schema_path"))
    if has_synthetic:
        synthetic = typed.check_object(data["synthetic"], typed.fields_of(SyntheticConfig), "data.synthetic")
        _validated(lambda: SyntheticConfig(**synthetic), "data.synthetic")
        result.synthetic = synthetic
    else:
        fmt = data.get("source_format")
        if fmt not in readers.INTERACTION_FORMATS:
            _fail("data.source_format", f"{fmt!r} is not one of {sorted(readers.INTERACTION_FORMATS)}")
        if data.get("source_path") is None:
            _fail("data.source_path", "is required with data.source_format")
        result.source_format = fmt
        result.source_path = _resolve_path(data["source_path"], base_dir, "data.source_path")
    return result


def _parse_ingest(ingest: Any, data: DataConfig) -> Dict[str, Any]:
    from peterrec.components.ingest import IngestConfig

    ingest = typed.check_object({} if ingest is None else ingest,
                                typed.fields_of(IngestConfig, exclude=_SOURCE_FIELDS), "ingest")
    source_format, source_path = data.source("/pipeline-root")
    _validated(lambda: IngestConfig(source_format=source_format, source_path=source_path, **ingest), "ingest")
    return ingest


def _parse_pretrain(pretrain: Any) -> Dict[str, Any]:
    from peterrec.trainer.config import BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig

    pretrain = typed.check_object({} if pretrain is None else pretrain, typed.fields_of(PretrainConfig), "pretrain")
    if "backbone" in pretrain:
        # vocab_size 0 means "the vocabulary's size", known only at run time: check the rest now.
        probe = {**pretrain["backbone"], "vocab_size": pretrain["backbone"].get("vocab_size") or 1000}
        _validated(lambda: BackboneConfig.from_dict(probe), "pretrain.backbone")
    _validated(lambda: PretrainConfig.from_dict(copy.deepcopy(pretrain)), "pretrain")
    return pretrain


def _threshold(threshold: Any, kind: str, field: str) -> ThresholdConfig:
    threshold = typed.check_object({} if threshold is None else threshold, typed.fields_of(ThresholdConfig), field)
    metric = threshold.get("metric", DEFAULT_METRIC[kind])
    if kind == CLASSIFICATION and metric not in CLASSIFICATION_METRICS:
        _fail(join(field, "metric"),
              f"{metric!r} is not a classification metric; use one of {list(CLASSIFICATION_METRICS)}")
    if kind == COLD_START and not RANKING_METRIC.match(metric):
        _fail(join(field, "metric"), f"{metric!r} is not a cold-start metric; use hr@K, ndcg@K or mrr@K (e.g. hr@10)")
    baseline = threshold.get("baseline", DEFAULT_BASELINE[kind])
    if baseline not in BASELINES[kind]:
        _fail(join(field, "baseline"), f"{baseline!r} is not a {kind} baseline; use one of {list(BASELINES[kind])}")
    min_value = threshold.get("min_value")
    if baseline == "none" and min_value is None:
        _fail(field, "with baseline 'none' give min_value, or nothing would ever be rejected")
    split = threshold.get("split", "test")
    if not split:
        _fail(join(field, "split"), f"must be a split name, got {split!r}")
    return ThresholdConfig(metric=metric, baseline=baseline, min_lift=float(threshold.get("min_lift", 0.0)),
                           min_value=None if min_value is None else float(min_value), split=split)


def parse_threshold(threshold: Any, kind: str, where: str = "", field: str = "threshold") -> ThresholdConfig:
    """A task's threshold (a dict of ``ThresholdConfig`` fields) validated for its kind.

    Missing fields take the kind's defaults (``DEFAULT_METRIC``, ``DEFAULT_BASELINE``). A bad
    value raises ConfigError naming ``where`` (e.g. the component) and the field.
    """
    try:
        return _threshold(threshold, kind, field)
    except FieldError as error:
        raise ConfigError(f"{where}: {error}" if where else str(error)) from error


def _label_source_fields(kind: str) -> Dict[str, Any]:
    """``{key: annotation}`` of a task's ``label_source``, from the TaskExampleGen configs."""
    from peterrec.components.task_examples import AttributeTaskConfig, ColdStartTaskConfig

    if kind == CLASSIFICATION:
        hints = typed.fields_of(AttributeTaskConfig)
        return {"attribute": hints["attribute"], "format": hints["label_format"], "path": hints["label_path"]}
    hints = typed.fields_of(ColdStartTaskConfig)
    return {key: hints[key] for key in _COLD_START_LABEL_KEYS}


def _parse_label_source(source: Any, kind: str, data: DataConfig, base_dir: str, field: str) -> Dict[str, Any]:
    source = typed.check_object({} if source is None else source, _label_source_fields(kind), field)
    if kind == CLASSIFICATION and data.is_synthetic:
        extra = sorted(set(source) - {"attribute"})
        if extra:
            _fail(field, f"synthetic data has its own label tables: give only 'attribute' "
                         f"(one of {list(SYNTHETIC_ATTRIBUTES)}), not {extra}")
        if source.get("attribute") not in SYNTHETIC_ATTRIBUTES:
            _fail(join(field, "attribute"), f"{source.get('attribute')!r} is not a synthetic label table; use one of "
                                            f"{list(SYNTHETIC_ATTRIBUTES)}")
    elif kind == CLASSIFICATION and "path" in source:
        source["path"] = _resolve_path(source["path"], base_dir, join(field, "path"))
    return source


def _finetune_fields() -> Dict[str, Any]:
    """``{key: annotation}`` of a task's ``finetune``: TaskConfig's model fields and FinetuneConfig's run fields."""
    from peterrec.trainer.config import TaskConfig
    from peterrec.trainer.finetune import FinetuneConfig

    fields = typed.fields_of(FinetuneConfig, exclude=_PIPELINE_OWNED_RUN_FIELDS)
    fields.update(typed.fields_of(TaskConfig, exclude=("name", "kind", "num_outputs")))
    return fields


def _parse_finetune(finetune: Any, task: TaskSpec, field: str) -> Dict[str, Any]:
    from peterrec.trainer.config import TaskConfig
    from peterrec.trainer.finetune import FinetuneConfig

    task.finetune = typed.check_object({} if finetune is None else finetune, _finetune_fields(), field)
    task_data = {**task.task_config(), "num_outputs": 2}
    _validated(lambda: TaskConfig.from_dict(task_data), field)
    if task.run_fields():
        _validated(lambda: FinetuneConfig.from_dict({**copy.deepcopy(task.run_fields()), "task": task_data}), field)
    return task.finetune


def _parse_task(entry: Any, index: int, data: DataConfig, base_dir: str) -> TaskSpec:
    from peterrec.trainer.config import STRATEGIES

    field = f"tasks[{index}]"
    # The sections are checked by their own parsers below (a null section takes the defaults).
    fields = {**typed.fields_of(TaskSpec), "label_source": Any, "threshold": Any, "finetune": Any}
    entry = typed.check_object(entry, fields, field, required=("name", "kind"), ignored=_IGNORED_KEYS)
    name = entry["name"]
    if not _IDENTIFIER.match(name):
        _fail(join(field, "name"), f"{name!r} must start with a letter and use only letters, digits and "
                                   "'_' (it becomes a serving signature name)")
    if name in RESERVED_SIGNATURES:
        _fail(join(field, "name"), f"{name!r} is a signature of every served model; choose another name")
    kind = entry["kind"]
    if kind not in TASK_KINDS:
        _fail(join(field, "kind"), f"{kind!r} is not one of {list(TASK_KINDS)}")
    strategy = entry.get("strategy", "peterrec-serial")
    if strategy not in STRATEGIES:
        _fail(join(field, "strategy"), f"{strategy!r} is not one of {list(STRATEGIES)}")
    task = TaskSpec(name=name, kind=kind, strategy=strategy,
                    label_source=_parse_label_source(entry.get("label_source"), kind, data, base_dir,
                                                     join(field, "label_source")),
                    threshold=_threshold(entry.get("threshold"), kind, join(field, "threshold")))
    _parse_finetune(entry.get("finetune"), task, join(field, "finetune"))
    return task


def _check_task_examples(task: TaskSpec, index: int, config: PipelineConfig) -> None:
    """Validates the task's TaskExampleGen config (label source against the ingestion settings)."""
    from peterrec.components import task_examples

    config_class = (task_examples.AttributeTaskConfig if task.kind == CLASSIFICATION
                    else task_examples.ColdStartTaskConfig)
    fields = config.task_example_fields(task, "/pipeline-root")
    _validated(lambda: config_class(**fields), f"tasks[{index}].label_source")


def _parse_serving(serving: Any, base_dir: str) -> ServingSpec:
    spec = ServingSpec(**typed.check_object({} if serving is None else serving, typed.fields_of(ServingSpec),
                                            "serving"))
    if not _IDENTIFIER.match(spec.model_name):
        _fail("serving.model_name", f"{spec.model_name!r} must be an identifier (letters, digits, '_')")
    if spec.top_k < 1:
        _fail("serving.top_k", f"must be a positive integer, got {spec.top_k!r}")
    if spec.max_len is not None and spec.max_len < 1:
        _fail("serving.max_len", f"must be a positive integer or null, got {spec.max_len!r}")
    spec.model_base = _resolve_path(spec.model_base, base_dir, "serving.model_base")
    return spec


def _top_level_fields() -> Dict[str, Any]:
    """``{key: annotation}`` of the top level; each section is checked by its own parser."""
    fields = typed.fields_of(PipelineConfig, exclude=("source",))
    fields.update({section: Any for section in ("data", "ingest", "pretrain", "tasks", "serving")})
    return fields


def _parse(data: Any, base_dir: str, source: str) -> PipelineConfig:
    data = typed.check_object(data, _top_level_fields(), "", required=("data", "tasks"), ignored=_IGNORED_KEYS)
    name = data.get("pipeline_name", "peterrec")
    if not _PIPELINE_NAME.match(name):
        _fail("pipeline_name", f"{name!r} must use letters, digits, '_' and '-'")
    data_config = _parse_data(data["data"], base_dir)
    ingest = _parse_ingest(data.get("ingest"), data_config)
    pretrain = _parse_pretrain(data.get("pretrain"))
    tasks_data = data["tasks"]
    if not isinstance(tasks_data, list) or not tasks_data:
        _fail("tasks", "must be a non-empty list of tasks")
    tasks = [_parse_task(entry, index, data_config, base_dir) for index, entry in enumerate(tasks_data)]
    seen: Dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.name in seen:
            _fail(f"tasks[{index}].name", f"{task.name!r} is already the name of tasks[{seen[task.name]}]")
        seen[task.name] = index
    beam_args = data.get("beam_pipeline_args", [])
    if not all(arg.startswith("--") for arg in beam_args):
        _fail("beam_pipeline_args", f"must be a list of '--flag=value' strings, got {beam_args!r}")
    config = PipelineConfig(pipeline_name=name, data=data_config, ingest=ingest, pretrain=pretrain, tasks=tasks,
                            serving=_parse_serving(data.get("serving"), base_dir), beam_pipeline_args=list(beam_args),
                            enable_cache=data.get("enable_cache", True), source=source)
    for index, task in enumerate(tasks):
        _check_task_examples(task, index, config)
    return config


def parse_config(data: Any, base_dir: Optional[str] = None, source: str = "<config>") -> PipelineConfig:
    """Validates a config object (the parsed JSON/YAML) and returns the ``PipelineConfig``.

    ``base_dir`` anchors relative paths (default: the current folder); ``source`` names the
    config in error messages.
    """
    try:
        return _parse(data, os.path.abspath(base_dir or os.getcwd()), source)
    except FieldError as error:
        raise ConfigError(f"{source}: {error}") from error


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
def _same_settings(settings_path: str, wanted: Dict[str, Any]) -> bool:
    """Whether the settings file records ``wanted`` (an unreadable file counts as different)."""
    with open(settings_path, encoding="utf-8") as handle:
        try:
            return json.load(handle) == wanted
        except json.JSONDecodeError:
            return False


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
    expected: List[str] = [os.path.join(data_dir, name) for name in
                           (SYNTHETIC_INTERACTIONS, *(f"{a}.csv" for a in SYNTHETIC_ATTRIBUTES))]
    if os.path.exists(settings_path) and all(os.path.exists(p) for p in expected) and \
            _same_settings(settings_path, wanted):
        log(f"synthetic data: reusing {data_dir} (same settings)")
        return data_dir
    log(f"synthetic data: generating {settings.users} users, {settings.source_items} source and "
        f"{settings.target_items} target items into {data_dir}")
    synthetic.generate(data_dir, settings)
    return data_dir
