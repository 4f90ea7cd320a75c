"""The transfer table: pretrain once, fine-tune every strategy on every task, with decidable verdicts.

    python benchmarks/transfer_table.py --format movielens-1m --source ../shared/data/ml-1m
        [--folds 5] [--seeds 1] [--quick] [--work /tmp/peterrec-transfer] [--out FILE.md]
        [--labels gender=PATH.csv ...] [--strategies ...] [--tasks ...] [--context 200]
        [--epochs N] [--patience N] [--learning-rate LR] [--pretrain-epochs N]
        [--prepare-only | --table-only]

``--movielens PATH`` is an alias of ``--format movielens-1m --source PATH``. Any reader format
works (``components/readers.py``): MovieLens-1M/100K bring their attribute tables (gender, age,
occupation) and an item table whose genres split items into two domains; a generic ``csv``
needs ``--labels NAME=PATH`` (``user,label`` files) for its attribute tasks and has a cold-start
task only when it has a ``domain`` column; ``peterrec-csv`` only when its lines carry target
items. A task the data cannot define is skipped, and the log and the table say why.

Everything is written to the work dir (default ``/tmp/peterrec-transfer``, which must lie
outside the repository) and the table to ``--out`` (default ``<work>/transfer_table.md``): a
default run never touches ``benchmarks/results/``; publishing takes an explicit ``--out
benchmarks/results/...``.

Evaluation (what makes every verdict decidable):

- Attribute tasks: k-fold cross-validation over users (``--folds``, default 5). The task
  examples are built once with k hash splits ``fold0..fold{k-1}`` (``splits.assign_split``: a
  user's fold depends only on their id); run f tests on fold f, stops early and picks C on fold
  f+1 mod k, and trains on the other k-2 folds, so every user is tested exactly once. With
  ``--seeds S`` every fold runs S seeds. Cells show the mean over folds (x seeds) ± its standard
  error.
- Baselines on the same folds (benchmarks/baselines.py): the majority class; logistic regression
  on a bag of ALL a user's items and on a bag of the last L items (L = ``--context``, what the
  models read), C chosen on each fold's eval users, never on its test users; and a linear probe
  of the frozen backbone (logistic regression on its mean hidden state over the last L items,
  standardised, C chosen the same way).
- Cold start (one hash split 80/10/10; its train users keep their earliest
  ``--max-target-items`` target items, which only a named train split can mark): k x S seeds,
  mean ± standard error over seeds; popularity and item kNN on full histories (and on the last
  L items) on the same split.
- Done-when verdicts compare fold (or seed) means; the ± after a difference is the standard
  error of the paired per-fold differences, and a verdict nearer its threshold than that is
  marked "inside one s.e.".

The backbone is pretrained without labels on the interactions of all users (as in the paper);
the "source" backbone of the cold-start task never sees target-domain items.

Steps (each reused when its output exists, so the script resumes where it stopped; several
processes on one work dir share the runs through claims, see benchmarks/run_claims.py):
1. ingestion (all items; source-domain items) and task examples; 2. pretraining per setup;
3. baselines and linear probes per fold; 4. every (task, strategy, fold, seed) fine-tuning run,
appended to ``<work>/results.jsonl``; 5. the table. Runs are keyed by a tag, a hash of every
setting that changes results, so runs with other settings never mix in one table.
"""

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import baselines as baselines_lib  # noqa: E402  (benchmarks/ is not a package)
from run_claims import RunClaims  # noqa: E402

from peterrec.components import readers  # noqa: E402  (no TensorFlow import)
from peterrec.trainer import config as trainer_config  # noqa: E402  (no TensorFlow import)

# Every strategy the trainer knows, in its order: a new one joins the table by itself.
STRATEGIES = tuple(trainer_config.STRATEGIES)
PETERREC = ("peterrec-serial", "peterrec-parallel")
PARAMETER_EFFICIENT = ("peterrec-serial", "peterrec-parallel", "peterrec+items", "iak")
PARAMETER_LIMIT_PERCENT = 15.0
MOVIELENS_ATTRIBUTES = ("gender", "age", "occupation")
COLD_START = "cold_start"
DEFAULT_WORK = "/tmp/peterrec-transfer"
# The strategies the Done-when criteria compare run first, so a partial run fills whole comparisons.
RUN_PRIORITY = ("peterrec-serial", "fine-all", "fine-cls", "peter-zero", "peterrec-parallel", "peterrec+items",
                "iak", "fine-last")
START = time.time()


def progress(message: str) -> None:
    """Timestamped progress line."""
    elapsed = time.time() - START
    print(f"[{datetime.datetime.now():%H:%M:%S} +{elapsed / 60:5.1f} min] {message}", flush=True)


def _default(cls, name: str):
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


# ----------------------------------------------------------------------------- what the data defines


def fold_names(folds: int) -> List[str]:
    """The split names of k folds."""
    return [f"fold{i}" for i in range(folds)]


def fold_fractions(folds: int) -> Tuple[Tuple[str, float], ...]:
    """``split_fractions`` of k equal hash folds (for the ingestion's user-level split)."""
    if folds < 3:
        raise ValueError(f"--folds must be >= 3 (a test, an eval and at least one train fold), got {folds}")
    return tuple((name, 1.0 / folds) for name in fold_names(folds))


def fold_roles(folds: int, fold: int) -> Dict[str, List[str]]:
    """Run ``fold``'s splits: test = fold f, eval = fold f+1 mod k, train = the other folds."""
    names = fold_names(folds)
    test, evaluation = names[fold % folds], names[(fold + 1) % folds]
    return {"train": [n for n in names if n not in (test, evaluation)], "eval": [evaluation], "test": [test]}


def attribute_sources(source_format: str, labels: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """{task: label source} of the attribute tasks the data defines: a MovieLens users table's
    attributes, plus every ``--labels NAME=PATH`` (a ``user,label`` CSV)."""
    tasks: Dict[str, Dict[str, Any]] = {}
    attributes = getattr(readers.LABEL_FORMATS.get(source_format), "attributes", None) or {}
    if source_format.startswith("movielens"):
        for name in MOVIELENS_ATTRIBUTES:
            if not attributes or name in attributes:
                tasks[name] = {"label_format": source_format, "label_path": None, "attribute": name}
    for name, path in labels.items():
        tasks[name] = {"label_format": "csv", "label_path": path, "attribute": "label"}
    return tasks


def cold_start_source(source_format: str, source_path: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """(ingestion options of the cold-start task, or None when the data cannot define one; why).

    Two domains need item metadata: an item table with a domain rule (``readers.ITEM_FORMATS``,
    ``readers.DOMAIN_RULES``), a ``domain`` column in a generic CSV, or a PeterRec CSV whose lines
    carry target items (the empty field ``,,``).
    """
    if source_format in readers.ITEM_FORMATS:
        if not readers.DOMAIN_RULES:
            return None, f"format {source_format!r} has an item table but no domain rule is defined"
        rule = "movielens-genre" if "movielens-genre" in readers.DOMAIN_RULES else sorted(readers.DOMAIN_RULES)[0]
        return {"domain_rule": rule}, f"the {source_format} item table, domain rule {rule!r}"
    if source_format == "csv":
        try:
            files = readers.interaction_format("csv").files(source_path)
        except Exception as error:  # noqa: BLE001 - reported; the ingestion says more
            return None, f"cannot read the CSV header ({error})"
        if files and all(f.positions and f.positions[-1] is not None for f in files):
            return {"domain_rule": None}, "the CSV's domain column"
        return None, ("no item metadata: the CSV has no domain column (and the csv format has no item table "
                      "or domain rule), so there is no target domain")
    if source_format == "peterrec-csv":
        try:
            files = readers.interaction_format("peterrec-csv").files(source_path)
            head = readers.read_first_line(files[0].path, files[0].compressed).decode("utf-8", errors="replace")
        except Exception as error:  # noqa: BLE001
            return None, f"cannot read the PeterRec CSV ({error})"
        if ",," in head:
            return {"domain_rule": None}, "the PeterRec CSV's target field"
        return None, "no item metadata: the PeterRec CSV's lines carry no target items (no ',,' field)"
    return None, (f"no item metadata: format {source_format!r} has no item table (readers.ITEM_FORMATS) "
                  "or domain column")


def available_tasks(source_format: str, source_path: str, labels: Dict[str, str]):
    """(attribute sources, cold-start options or None, notes on skipped tasks)."""
    attributes = attribute_sources(source_format, labels)
    cold, why = cold_start_source(source_format, source_path)
    notes = []
    if cold is None:
        notes.append(f"cold-start task skipped: {why}")
    if not attributes:
        notes.append(f"no attribute task: format {source_format!r} has no attribute table; give --labels NAME=PATH")
    return attributes, cold, why, notes


def inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (both made absolute, symlinks resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


# ----------------------------------------------------------------------------- settings


def settings_from_args(args) -> Dict[str, Any]:
    """Every setting that changes a result, as one JSON-friendly dict (hashed into the tag)."""
    from peterrec.trainer.finetune import FinetuneConfig
    from peterrec.trainer.pretrain import PretrainConfig

    quick = args.quick
    pretrain = {
        "backbone": {"embedding_dim": args.embedding_dim, "dilations": list(args.dilations),
                     "causal": not args.non_causal},
        "objective": "cloze" if args.non_causal else "next_item",
        "epochs": args.pretrain_epochs or (2 if quick else _default(PretrainConfig, "epochs")),
        "max_len": args.pretrain_context,
    }
    if quick:
        pretrain["early_stopping_patience"] = 0
    finetune = {
        "readout": args.readout, "readout_norm": not args.no_readout_norm, "bottleneck": args.bottleneck,
        "batch_size": _default(FinetuneConfig, "batch_size"),
        "epochs": args.epochs or (2 if quick else _default(FinetuneConfig, "epochs")),
        "learning_rate": args.learning_rate, "fine_all_learning_rate": args.fine_all_learning_rate,
        "lr_schedule": args.lr_schedule,
        "early_stopping_patience": args.patience if args.patience is not None else (
            0 if quick else _default(FinetuneConfig, "early_stopping_patience")),
        "monitor": args.monitor, "max_len": args.context,
        "cold_start_embedding_dim": args.cold_start_embedding_dim,
    }
    return {"format": args.format, "ingest_max_len": args.ingest_max_len,
            "max_target_items": args.max_target_items, "folds": args.folds, "pretrain": pretrain,
            "finetune": finetune}


def tag_of(value: Any) -> str:
    """Short stable hash of a JSON-friendly value."""
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def data_tag(settings: Dict[str, Any], source: str) -> str:
    """Tag of the ingested data (format, source, cap, folds, target cap)."""
    return tag_of({"format": settings["format"], "source": os.path.abspath(source),
                   "ingest_max_len": settings["ingest_max_len"], "folds": settings["folds"],
                   "max_target_items": settings["max_target_items"]})


# ----------------------------------------------------------------------------- step 1: data


def _done(path: str) -> bool:
    return os.path.exists(os.path.join(path, "DONE.json"))


def _mark_done(path: str, info: Dict[str, Any]) -> None:
    with open(os.path.join(path, "DONE.json"), "w") as handle:
        json.dump(info, handle, indent=2, sort_keys=True, default=str)


def _cap(settings: Dict[str, Any]) -> Dict[str, Any]:
    """``max_len`` for the ingestion only when a cap is set (else its default: whole histories)."""
    return {} if settings["ingest_max_len"] is None else {"max_len": settings["ingest_max_len"]}


def ingest_all(source: str, work: str, settings: Dict[str, Any], tasks: List[str],
               attributes: Dict[str, Dict[str, Any]], cold: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, str]]:
    """Runs (or reuses) the ingestions; returns {name: {"examples", "vocabulary", "task_vocabulary"?, ...}}."""
    from peterrec.components.ingest import IngestConfig, run_ingestion
    from peterrec.components.task_examples import AttributeTaskConfig, ColdStartTaskConfig, run_attribute_task, \
        run_cold_start_task

    fmt = settings["format"]
    data_root = os.path.join(work, "data", data_tag(settings, source))
    out: Dict[str, Dict[str, str]] = {}

    def folders(name):
        base = os.path.join(data_root, name)
        os.makedirs(base, exist_ok=True)
        return base, os.path.join(base, "examples"), os.path.join(base, "vocabulary"), os.path.join(base, "rejects")

    setups = []
    if any(t != COLD_START for t in tasks):
        setups.append(("all", {}))
    if COLD_START in tasks:
        setups.append(("source", {"domain": "source", "domain_rule": cold["domain_rule"]}))
    for setup, options in setups:
        base, examples, vocabulary, rejects = folders(f"pretrain-{setup}")
        if not _done(base):
            progress(f"ingesting {fmt} for pretraining setup {setup!r}")
            config = IngestConfig(source_format=fmt, source_path=source, **_cap(settings), **options)
            summary = run_ingestion(config, examples, vocabulary, rejects)
            print(summary.format_table(), flush=True)
            _mark_done(base, {"summary": json.loads(summary.to_json())})
        out[setup] = {"examples": examples, "vocabulary": vocabulary}

    for task in tasks:
        setup = "source" if task == COLD_START else "all"
        base, examples, vocabulary, rejects = folders(f"task-{task}")
        if not _done(base):
            progress(f"building task examples for {task!r}")
            if task == COLD_START:
                config = ColdStartTaskConfig(source_format=fmt, source_path=source, **_cap(settings),
                                             domain_rule=cold["domain_rule"],
                                             max_target_items=settings["max_target_items"])
                summary = run_cold_start_task(config, examples, vocabulary, rejects, out[setup]["vocabulary"])
            else:
                config = AttributeTaskConfig(source_format=fmt, source_path=source, **_cap(settings),
                                             split_fractions=fold_fractions(settings["folds"]), **attributes[task])
                summary = run_attribute_task(config, examples, vocabulary, rejects, out[setup]["vocabulary"])
            print(summary.format_table(), flush=True)
            _mark_done(base, {"summary": json.loads(summary.to_json())})
        out[task] = {"examples": examples, "task_vocabulary": vocabulary, "vocabulary": out[setup]["vocabulary"],
                     "setup": setup}
    return out


def split_files_of(examples_dir: str, names: Sequence[str]) -> List[str]:
    """The TFRecord files of the named splits (a split without users has no files)."""
    from peterrec.trainer import data

    files: List[str] = []
    for name in names:
        try:
            files.extend(data.split_files(examples_dir, name))
        except data.DataError:
            pass
    return files


def run_files(examples_dir: str, folds: int, fold: Optional[int]) -> Dict[str, List[str]]:
    """train / eval / test files of one run: the fold roles, or the fixed split (fold None)."""
    roles = fold_roles(folds, fold) if fold is not None else {"train": ["train"], "eval": ["eval"], "test": ["test"]}
    return {role: split_files_of(examples_dir, names) for role, names in roles.items()}


# ----------------------------------------------------------------------------- step 2: pretraining


def evaluate_backbone(export_dir: str, examples_dir: str, max_len: int, split: str = "test") -> Dict[str, float]:
    """Next-item HR@10 / NDCG@10 of the last item of each user of ``split`` (full ranking)."""
    import tf_keras as keras

    from peterrec.trainer import artifacts, data
    from peterrec.trainer.objectives import PretrainingModel, make_objective

    backbone, _, vocabulary = artifacts.load_backbone(export_dir, trainable=False)
    model = PretrainingModel(backbone, make_objective(backbone, softmax="full"), name="evaluation")
    model.compile(optimizer=keras.optimizers.Adam())
    dataset = data.dataset_from_files(data.split_files(examples_dir, split), 256, max_len,
                                      vocab_size=len(vocabulary))
    return {k: float(v) for k, v in model.evaluate(dataset, return_dict=True, verbose=0).items()}


def pretrain_tag(settings: Dict[str, Any], source: str) -> str:
    return tag_of({"pretrain": settings["pretrain"], "data": data_tag(settings, source)})


def pretrain_setup(setup: str, paths: Dict[str, str], work: str, settings: Dict[str, Any],
                   source: str) -> Dict[str, Any]:
    """Pretrains (or reuses) the backbone of one setup; returns its info incl. export dir and metrics."""
    from peterrec.trainer.config import BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    tag = pretrain_tag(settings, source)
    base = os.path.join(work, "pretrain", f"{setup}-{tag}")
    info_path = os.path.join(base, "benchmark_info.json")
    if os.path.exists(info_path):
        with open(info_path) as handle:
            info = json.load(handle)
        progress(f"pretraining {setup!r} reused from {base}")
        return info
    options = dict(settings["pretrain"])
    backbone = BackboneConfig(vocab_size=0, **options.pop("backbone"))
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    dropped = sorted(k for k in options if k not in known)
    if dropped:
        progress(f"note: PretrainConfig has no {dropped}: left to its defaults")
    config = PretrainConfig(backbone=backbone, verbose=2, **{k: v for k, v in options.items() if k in known})
    progress(f"pretraining setup {setup!r}: {json.dumps(settings['pretrain'])} -> {base}")
    started = time.time()
    metrics = pretrain(paths["examples"], paths["vocabulary"], os.path.join(base, "run"), config)
    elapsed = time.time() - started
    export_dir = metrics["export_dir"]
    try:
        test = evaluate_backbone(export_dir, paths["examples"], settings["pretrain"]["max_len"])
    except Exception as error:  # noqa: BLE001 - a report line, not a result of the table
        progress(f"note: next-item evaluation of the {setup!r} backbone on the test users failed: {error}")
        test = {}
    info = {"setup": setup, "tag": tag, "export_dir": export_dir, "elapsed_seconds": elapsed, "test": test,
            "eval": {k: v for k, v in metrics.items() if isinstance(v, (int, float))
                     and (k.startswith("val_") or k in ("hr@10", "ndcg@10"))},
            "positions_per_second": metrics.get("positions_per_second"), "step_seconds": metrics.get("step_seconds"),
            "epochs_completed": metrics.get("epochs_completed"), "parameters": metrics.get("parameters")}
    with open(info_path, "w") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)
    progress(f"pretrained {setup!r} in {elapsed / 60:.1f} min: test {json.dumps(test)}")
    return info


# ----------------------------------------------------------------------------- step 3: baselines, probe


def _fold_data(examples: str, folds: int, kind: str) -> Dict[str, Dict[str, list]]:
    """{fold name: whole-history examples} of an attribute task's folds."""
    return {name: baselines_lib.load_files(split_files_of(examples, [name]), kind) if split_files_of(
        examples, [name]) else {"item_ids": [], "labels": [], "user_ids": []} for name in fold_names(folds)}


def _role_pairs(by_fold: Dict[str, Any], folds: int, fold: int, join) -> Dict[str, Any]:
    return {role: join([by_fold[n] for n in names]) for role, names in fold_roles(folds, fold).items()}


def _join_examples(parts):
    return ([s for p in parts for s in p["item_ids"]], [y for p in parts for y in p["labels"]])


def attribute_baselines(examples: str, vocab_size: int, folds: int, context: int) -> Dict[str, Any]:
    """Per fold: majority, logistic regression on all items and on the last ``context`` items."""
    by_fold = _fold_data(examples, folds, "classification")
    results = {}
    for fold in range(folds):
        pair = _role_pairs(by_fold, folds, fold, _join_examples)
        results[str(fold)] = baselines_lib.classification_baselines(pair["train"], pair["test"], vocab_size,
                                                                    eval_split=pair["eval"], context=context)
        results[str(fold)]["test_users"] = len(pair["test"][1])
    return results


def backbone_features(backbone_dir: str, files: List[str], max_len: int):
    """(mean hidden state over the real positions of the last ``max_len`` items [N, d], labels [N])."""
    import numpy as np
    import tensorflow as tf

    from peterrec.components import ids
    from peterrec.trainer import artifacts, data

    backbone, _, _ = artifacts.load_backbone(backbone_dir, trainable=False)
    parts, labels = [], []
    for batch in data.dataset_from_files(files, 256, max_len, kind="classification"):
        item_ids = batch["item_ids"]
        mask = tf.cast(tf.not_equal(item_ids, ids.PAD_ID), tf.float32)[..., tf.newaxis]
        hidden = backbone(item_ids)
        parts.append((tf.reduce_sum(hidden * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)).numpy())
        labels.append(batch["label"].numpy())
    if not parts:
        return np.zeros((0, 1)), np.zeros((0,), np.int64)
    return np.concatenate(parts), np.concatenate(labels)


def linear_probes(examples: str, backbone_dir: str, folds: int, context: int) -> Dict[str, Any]:
    """Per fold: the linear probe of the frozen backbone (mean hidden state), C chosen on eval."""
    import numpy as np

    features = {name: backbone_features(backbone_dir, split_files_of(examples, [name]), context)
                for name in fold_names(folds) if split_files_of(examples, [name])}
    results = {}
    for fold in range(folds):
        roles = fold_roles(folds, fold)
        pair = {role: (np.concatenate([features[n][0] for n in names if n in features]),
                       np.concatenate([features[n][1] for n in names if n in features])) for role, names in
                roles.items()}
        results[str(fold)] = baselines_lib.linear_probe(pair["train"], pair["test"], eval_split=pair["eval"])
    return results


def cold_start_reference(paths: Dict[str, str], context: int) -> Dict[str, Any]:
    """Popularity and item kNN on full histories and on the last ``context`` items (fixed split)."""
    from peterrec.components.ingest import load_vocabulary

    splits = {s: baselines_lib.load_split(paths["examples"], s, COLD_START) for s in ("train", "eval", "test")}
    item_vocab = len(load_vocabulary(paths["vocabulary"]))
    target_vocab = len(load_vocabulary(paths["task_vocabulary"]))
    result = {}
    for name, length in (("full", None), ("last", context)):
        pair = {s: (baselines_lib.last_items(v["item_ids"], length), v["targets"]) for s, v in splits.items()}
        found = baselines_lib.cold_start_baselines(pair["train"], pair["test"], item_vocab, target_vocab, 1,
                                                   eval_split=pair["eval"])
        if name == "full":
            result["popularity"] = found["popularity"]
            result["item_knn"] = found["item_knn"]
        else:
            result["item_knn_last"] = dict(found["item_knn"], context=context)
    result["test_users"] = len(splits["test"]["item_ids"])
    return result


def compute_baselines(data_paths: Dict[str, Dict[str, str]], tasks: List[str], work: str, settings: Dict[str, Any],
                      pretraining: Dict[str, Any], source: str, probe: bool = True) -> Dict[str, Any]:
    """Reference baselines and linear probes per task (cached in the work dir).

    {task: {"folds": {fold: {name: metrics}}}} for attribute tasks; {"cold_start": {name: metrics}}.
    """
    from peterrec.components.ingest import load_vocabulary

    context, folds = settings["finetune"]["max_len"], settings["folds"]
    path = os.path.join(work, f"baselines-{tag_of([data_tag(settings, source), context])}.json")
    cached: Dict[str, Any] = {}
    if os.path.exists(path):
        with open(path) as handle:
            cached = json.load(handle)
    probe_key = f"probe-{pretrain_tag(settings, source)}"
    for task in tasks:
        paths = data_paths[task]
        started = time.time()
        changed = False
        if task == COLD_START:
            if task not in cached:
                progress(f"baselines for {task!r}: popularity, item kNN (full histories; last {context} items)")
                cached[task] = cold_start_reference(paths, context)
                changed = True
        else:
            entry = cached.setdefault(task, {})
            if "folds" not in entry:
                progress(f"baselines for {task!r} on {folds} folds: majority, logistic regression (all items; "
                         f"last {context})")
                entry["folds"] = attribute_baselines(paths["examples"], len(load_vocabulary(paths["vocabulary"])),
                                                     folds, context)
                changed = True
            if probe and probe_key not in entry and "all" in pretraining:
                progress(f"linear probe of the frozen backbone for {task!r} on {folds} folds")
                entry[probe_key] = linear_probes(paths["examples"], pretraining["all"]["export_dir"], folds, context)
                changed = True
        if changed:
            progress(f"baselines for {task!r} in {time.time() - started:.0f} s")
            with open(path, "w") as handle:
                json.dump(cached, handle, indent=2, sort_keys=True)
    # The probe of this backbone under one name, whatever others the cache holds.
    for task in tasks:
        if task != COLD_START and probe_key in cached.get(task, {}):
            for fold, result in cached[task][probe_key].items():
                cached[task]["folds"][fold]["probe"] = result
    return cached


# ----------------------------------------------------------------------------- step 4: fine-tuning


def task_config(task: str, strategy: str, settings: Dict[str, Any]):
    """The TaskConfig of one (task, strategy) under the settings."""
    from peterrec.trainer.config import AdapterConfig, TaskConfig

    options = settings["finetune"]
    kind = "cold_start" if task == COLD_START else "classification"
    return TaskConfig(name=task, kind=kind, num_outputs=2, strategy=strategy, readout=options["readout"],
                      readout_norm=options["readout_norm"],
                      head_embedding_dim=options["cold_start_embedding_dim"] if kind == "cold_start" else 0,
                      adapter=AdapterConfig(bottleneck=options["bottleneck"]))


def finetune_config(task: str, strategy: str, seed: int, paths: Dict[str, str], settings: Dict[str, Any]):
    """The FinetuneConfig of one run."""
    from peterrec.trainer.finetune import FinetuneConfig

    options = settings["finetune"]
    lr = options["fine_all_learning_rate"] if strategy in ("fine-all", "fine-last") else options["learning_rate"]
    return FinetuneConfig(task=task_config(task, strategy, settings), batch_size=options["batch_size"],
                          epochs=options["epochs"], learning_rate=lr, lr_schedule=options["lr_schedule"],
                          early_stopping_patience=options["early_stopping_patience"], seed=seed,
                          max_len=options["max_len"], task_vocabulary=paths["task_vocabulary"],
                          monitor=options["monitor"] if task != COLD_START else None,
                          item_vocabulary=paths["vocabulary"], verbose=2)


def read_results(path: str) -> List[Dict[str, Any]]:
    """The finished runs in the results file (lines that do not parse are skipped with a note)."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path) as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                print(f"note: {path}:{number} is not JSON (an interrupted write?), ignored", flush=True)
    return rows


def run_finetune(task: str, strategy: str, fold: Optional[int], seed: int, paths: Dict[str, str], backbone_dir: str,
                 work: str, settings: Dict[str, Any], tag: str) -> Dict[str, Any]:
    """One fine-tuning run (fold None: the fixed split); returns its result row."""
    import tf_keras as keras

    from peterrec.trainer.finetune import finetune

    keras.backend.clear_session()
    where = f"fold{fold}" if fold is not None else "split"
    output_dir = os.path.join(work, "finetune", tag, task, strategy, f"{where}-seed{seed}")
    config = finetune_config(task, strategy, seed, paths, settings)
    files = run_files(paths["examples"], settings["folds"], fold)
    started = time.time()
    metrics = finetune(backbone_dir, None, output_dir, config, train_files=files["train"],
                       eval_files=files["eval"] or None, test_files=files["test"] or None)
    keep = ("accuracy", "macro_f1", "hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10",
            "sampled_mrr@5", "loss")
    return {"tag": tag, "task": task, "strategy": strategy, "fold": fold, "seed": seed, "split": metrics.get("split"),
            "metrics": {k: metrics[k] for k in keep if k in metrics},
            "eval_metrics": {k: v for k, v in metrics.get("splits", {}).get("eval", {}).items() if k in keep},
            "trainable_params": metrics.get("trainable_params"), "fine_all_params": metrics.get("fine_all_params"),
            "trainable_percent": metrics.get("trainable_percent"), "epochs_completed": metrics.get("epochs_completed"),
            "best_epoch": metrics.get("best_epoch"), "step_seconds": metrics.get("step_seconds"),
            "train_examples": metrics.get("train_examples"),
            "elapsed_seconds": time.time() - started, "finished": datetime.datetime.now().isoformat(timespec="seconds")}


def run_plan(folds: int, seeds: int, strategies: List[str], tasks: List[str]) -> List[tuple]:
    """Every (task, strategy, fold, seed) to run: attribute tasks on every fold x seed, cold start
    (fold None) on folds x seeds seeds of its fixed split; repetition-major, then the strategies
    the criteria compare first, so a partial run still fills whole comparisons."""
    order = sorted(strategies, key=lambda s: (RUN_PRIORITY.index(s) if s in RUN_PRIORITY else len(RUN_PRIORITY), s))
    plan = []
    for seed in range(seeds):
        for fold in range(folds):
            for strategy in order:
                for task in tasks:
                    if task == COLD_START:
                        plan.append((task, strategy, None, seed * folds + fold))
                    else:
                        plan.append((task, strategy, fold, seed))
    return plan


def finished_runs(rows: List[Dict[str, Any]], tag: str) -> set:
    """The (task, strategy, fold, seed) of every finished run with this settings tag."""
    return {(r["task"], r["strategy"], r.get("fold"), r["seed"]) for r in rows if r.get("tag") == tag}


def measure_step_times(backbone_dir: str, paths: Dict[str, str], task_name: str, settings: Dict[str, Any],
                       strategies: List[str], steps: int = 10, rounds: int = 3) -> Dict[str, float]:
    """Median seconds per training step of each strategy on one fixed batch, in alternating rounds
    (so every strategy sees the same machine load), in this process."""
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.components.ingest import load_vocabulary
    from peterrec.trainer import artifacts, data
    from peterrec.trainer.strategies import fresh_backbone_like
    from peterrec.trainer.task_model import build_task_model

    keras.backend.clear_session()
    options = settings["finetune"]
    num_classes = len(load_vocabulary(paths["task_vocabulary"]))
    files = run_files(paths["examples"], settings["folds"], 0)["train"]
    dataset = data.dataset_from_files(files, options["batch_size"], options["max_len"], kind="classification",
                                      drop_remainder=True)
    batch = next(iter(dataset))
    models = {}
    for strategy in strategies:
        backbone, _, _ = artifacts.load_backbone(backbone_dir, trainable=False)
        task = dataclasses.replace(task_config(task_name, strategy, settings), num_outputs=num_classes)
        base = fresh_backbone_like(backbone) if strategy == "peter-zero" else backbone
        model = build_task_model(base, task)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4))
        step = tf.function(model.train_step)
        for _ in range(2):
            step(batch)
        models[strategy] = step
    durations: Dict[str, List[float]] = {s: [] for s in strategies}
    for _ in range(rounds):
        for strategy, step in models.items():
            for _ in range(steps):
                started = time.perf_counter()
                float(step(batch)["loss"])
                durations[strategy].append(time.perf_counter() - started)
    return {s: statistics.median(v) for s, v in durations.items()}


# ----------------------------------------------------------------------------- step 5: the table


def metric_of(task: str) -> str:
    return "mrr@5" if task == COLD_START else "accuracy"


def mean_se(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and standard error of the mean (None when fewer than 2 values)."""
    values = list(values)
    if not values:
        return None, None
    if len(values) < 2:
        return statistics.mean(values), None
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def paired_difference(a: Dict[Any, float], b: Dict[Any, float], scale: float = 1.0,
                      offset: float = 0.0) -> Tuple[Optional[float], Optional[float], int]:
    """Mean and standard error of ``a - scale * b + offset`` over the repetitions both have.

    ``b`` with the single key None is a constant (one reference value for every repetition).
    Returns (mean, s.e. or None, number of pairs).
    """
    if set(b) == {None}:
        diffs = [a[k] - scale * b[None] + offset for k in a]
    else:
        diffs = [a[k] - scale * b[k] + offset for k in a if k in b]
    mean, error = mean_se(diffs)
    return mean, error, len(diffs)


def criteria_lines(values_of, percent_of, tasks: List[str], strategies: Sequence[str]) -> List[str]:
    """The issue's Done-when criteria, each decided on fold (seed) means: PASS / FAIL with the numbers.

    values_of(task, name, metric) -> {repetition: value} of a strategy or a reference ("majority",
    "logreg_all", "logreg_last", "probe", "item_knn": the latter a constant {None: value});
    percent_of(task, strategy) -> trainable % of fine-all or None. Each comparison shows the mean
    paired difference ± its standard error over the repetitions; a verdict whose margin to its
    threshold is smaller than that error is marked "inside one s.e.".
    """
    lines = ["## Done-when criteria (fold means; cold start: seed means)", "",
             "| criterion | task | numbers | verdict |", "|---|---|---|---|"]

    def row(criterion, task, numbers, ok, margin=None, error=None):
        verdict = "—" if ok is None else ("PASS" if ok else "FAIL")
        if ok is not None and margin is not None and error is not None and abs(margin) < error:
            verdict += " (inside one s.e.)"
        lines.append(f"| {criterion} | {task} | {numbers} | {verdict} |")

    def best_of(task, names, metric):
        found = [(statistics.mean(v.values()), s) for s in names if s in strategies
                 for v in [values_of(task, s, metric)] if v]
        return max(found) if found else (None, None)

    def compare(criterion, task, name, other, other_label, metric, scale=1.0, offset=0.0, unit=1.0,
                suffix=" points", ok_strict=False):
        a, b = values_of(task, name, metric), values_of(task, other, metric)
        if not a or not b:
            row(criterion, task, f"{other_label}: not measured", None)
            return
        diff, error, n = paired_difference(a, b, scale, offset)
        mean_a, mean_b = statistics.mean(a.values()), statistics.mean(b.values())
        digits = 2 if unit == 100.0 else 4  # points, or raw MRR@5
        noise = "" if error is None else f" ± {unit * error:.{digits}f}"
        numbers = (f"{name} {mean_a:.4f} vs {other_label} {mean_b:.4f}: margin {unit * diff:+.{digits}f}{noise}"
                   f"{suffix} (n={n})")
        row(criterion, task, numbers, diff > 0 if ok_strict else diff >= 0, diff, error)

    for task in tasks:
        metric = metric_of(task)
        best, name = best_of(task, PETERREC, metric)
        if name is None:
            row("PeterRec measured", task, "no finished run", None)
            continue
        if task != COLD_START:
            efficient = [s for s in PARAMETER_EFFICIENT if s in strategies and (percent_of(task, s) or 100.0)
                         <= PARAMETER_LIMIT_PERCENT]
            pe_best, pe_name = best_of(task, efficient, metric)
            if pe_name is None:
                row("best parameter-efficient strategy >= LR on a bag of ALL items", task,
                    f"no strategy of {list(PARAMETER_EFFICIENT)} within {PARAMETER_LIMIT_PERCENT:.0f} % of "
                    "fine-all's parameters", None)
            else:
                compare(f"best parameter-efficient strategy (<= {PARAMETER_LIMIT_PERCENT:.0f} % of fine-all's "
                        "parameters) >= LR on a bag of ALL items", task, pe_name, "logreg_all", "LR all items",
                        metric, unit=100.0)
            compare("best PeterRec >= linear probe of its frozen backbone + 1 point", task, name, "probe",
                    "probe", metric, offset=-0.01, unit=100.0, suffix=" points over +1")
            compare("best PeterRec within 1 point of fine-all", task, name, "fine-all", "fine-all", metric,
                    offset=0.01, unit=100.0, suffix=" points (difference + 1)")
        else:
            compare("best PeterRec within 2 % relative of fine-all (MRR@5)", task, name, "fine-all", "fine-all",
                    metric, scale=0.98, unit=1.0, suffix=" (PeterRec - 0.98 x fine-all)")
        for other in ("fine-cls", "peter-zero"):
            compare(f"best PeterRec above {other}", task, name, other, other, metric,
                    unit=100.0 if task != COLD_START else 1.0, suffix=" points" if task != COLD_START else "",
                    ok_strict=True)
        if task == COLD_START:
            compare("best PeterRec MRR@5 >= 1.1 x item kNN on full histories", task, name, "item_knn",
                    "item kNN", metric, scale=1.1, suffix=" (PeterRec - 1.1 x kNN)")
        percent = percent_of(task, name)
        if percent is not None:
            row(f"best PeterRec within {PARAMETER_LIMIT_PERCENT:.0f} % of fine-all's trainable parameters", task,
                f"{name} {percent:.2f} %", percent <= PARAMETER_LIMIT_PERCENT)
    return lines + [""]


REFERENCES = (("majority", "majority class"), ("logreg_all", "logistic regression, bag of ALL items"),
              ("logreg_last", "logistic regression, bag of the last L items"),
              ("probe", "linear probe, frozen backbone (mean hidden state)"),
              ("popularity", "popularity"), ("item_knn", "item kNN, full histories"),
              ("item_knn_last", "item kNN, last L items"))


def reference_values(baselines: Dict[str, Any], task: str, name: str, metric: str) -> Dict[Any, float]:
    """{fold: value} of a per-fold reference, or {None: value} of a cold-start (fixed split) one."""
    entry = baselines.get(task, {})
    if task == COLD_START:
        return {None: entry[name][metric]} if name in entry and metric in entry[name] else {}
    return {int(fold): result[name][metric] for fold, result in entry.get("folds", {}).items()
            if name in result and metric in result[name]}


def _cell(values: Sequence[float], one_split: bool = False) -> str:
    mean, error = mean_se(values)
    if one_split and mean is not None:
        return f"{mean:.4f} (one split)"
    if mean is None:
        return "—"
    if error is None:
        return f"{mean:.4f} (n={len(values)})"
    return f"{mean:.4f} ± {error:.4f} (n={len(values)})"


def format_table(rows: List[Dict[str, Any]], baselines: Dict[str, Any], pretraining: Dict[str, Any],
                 timing: Optional[Dict[str, float]], settings: Dict[str, Any], tag: str, tasks: List[str],
                 strategies: List[str], folds: int, seeds: int, command: str, notes: Sequence[str] = ()) -> str:
    """The markdown report: main table, criteria, parameters, cold-start details, pretraining, timing."""
    plan = set(run_plan(folds, seeds, strategies, tasks))
    rows = [r for r in rows if r.get("tag") == tag and (r["task"], r["strategy"], r.get("fold"), r["seed"]) in plan]
    by_cell: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault((row["task"], row["strategy"]), []).append(row)

    def values_of(task, name, metric):
        if name in STRATEGIES:
            found: Dict[Any, List[float]] = {}
            for r in by_cell.get((task, name), []):
                if metric in r["metrics"]:
                    key = r["seed"] if task == COLD_START else r["fold"]
                    found.setdefault(key, []).append(r["metrics"][metric])
            return {k: statistics.mean(v) for k, v in found.items()}  # seeds of one fold averaged
        return reference_values(baselines, task, name, metric)

    def percent_of(task, strategy):
        cell = by_cell.get((task, strategy))
        return cell[0]["trainable_percent"] if cell else None

    context = settings.get("finetune", {}).get("max_len")
    title_format = settings.get("format", "?")
    lines = [f"# PeterRec transfer table on {title_format} (settings tag `{tag}`)", "",
             f"Produced by `{command}` on {datetime.date.today().isoformat()}. Every number comes from that "
             "script's runs (results file in its work dir).", "",
             f"Attribute tasks: {folds}-fold cross-validation over users (folds by hash of the user id; run f "
             f"tests on fold f, picks its best epoch and every baseline's C on fold f+1, trains on the rest), "
             f"{seeds} seed(s) per fold; a cell is the mean over folds ± its standard error (n = folds). "
             "Accuracy with a full softmax over all classes. "
             f"Cold start: one 80/10/10 hash split, {folds * seeds} seeds, mean ± standard error over seeds; "
             "MRR@5 with FULL ranking over all target-domain items, one query per (test user, target item). "
             f"L = {context} items is the context the models read.", ""]
    for note in notes:
        lines += [f"Note: {note}.", ""]
    titles = {t: (f"{t} MRR@5" if t == COLD_START else f"{t} (acc)") for t in tasks}
    lines += ["## Main table", "", "| model | " + " | ".join(titles[t] for t in tasks) + " |",
              "|" + "---|" * (len(tasks) + 1)]
    for strategy in strategies:
        lines.append(f"| {strategy} | " + " | ".join(
            _cell(list(values_of(t, strategy, metric_of(t)).values())) for t in tasks) + " |")
    for name, label in REFERENCES:
        cells = [_cell(list(reference_values(baselines, t, name, metric_of(t)).values()), t == COLD_START)
                 for t in tasks]
        if any(c != "—" for c in cells):
            lines.append(f"| *{label}* | " + " | ".join(
                c if c != "—" or (t == COLD_START) == (name in ("popularity", "item_knn", "item_knn_last"))
                else "n/a" for c, t in zip(cells, tasks)) + " |")
    lines.append("")

    lines += criteria_lines(values_of, percent_of, tasks, strategies)
    lines += ["Margins are mean paired differences over the folds (cold start: over seeds against the one "
              "reference value) ± their standard error. A verdict marked \"inside one s.e.\" is nearer its "
              "threshold than that error: the folds cannot tell it from the opposite verdict.", ""]

    lines += ["## Trainable parameters, % of fine-all (same task)", "",
              "| model | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for strategy in strategies:
        cells = []
        for t in tasks:
            cell = by_cell.get((t, strategy))
            cells.append("—" if not cell else f"{cell[0]['trainable_percent']:.2f}% ({cell[0]['trainable_params']:,})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines.append("")

    if COLD_START in tasks:
        metrics = ("hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10", "sampled_mrr@5")
        lines += ["## Cold start, full ranking and sampled 100 candidates", "",
                  "| model | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
        for strategy in strategies:
            lines.append(f"| {strategy} | " + " | ".join(
                _cell(list(values_of(COLD_START, strategy, m).values())) for m in metrics) + " |")
        for name in ("popularity", "item_knn", "item_knn_last"):
            result = baselines.get(COLD_START, {}).get(name)
            if result:
                lines.append(f"| *{name}* | " + " | ".join(f"{result[m]:.4f}" for m in metrics) + " |")
        lines.append("")

    attribute = [t for t in tasks if t != COLD_START]
    if attribute:
        lines += ["## Attribute tasks, macro-F1", "", "| model | " + " | ".join(attribute) + " |",
                  "|" + "---|" * (len(attribute) + 1)]
        for strategy in strategies:
            lines.append(f"| {strategy} | " + " | ".join(
                _cell(list(values_of(t, strategy, "macro_f1").values())) for t in attribute) + " |")
        for name, label in REFERENCES[:4]:
            cells = [_cell(list(reference_values(baselines, t, name, "macro_f1").values())) for t in attribute]
            if any(c != "—" for c in cells):
                lines.append(f"| *{label}* | " + " | ".join(cells) + " |")
        lines.append("")
        chosen = []
        for t in attribute:
            for name in ("logreg_all", "logreg_last", "probe"):
                cs = [result[name]["C"] for _, result in sorted(baselines.get(t, {}).get("folds", {}).items())
                      if name in result]
                if cs:
                    chosen.append(f"{t}/{name}: {', '.join(f'{c:g}' for c in cs)}")
        if chosen:
            lines += ["C chosen on each fold's eval users (fold 0, 1, ...): " + "; ".join(chosen) + ".", ""]

    if pretraining:
        lines += ["## Pretraining", "", "| setup | used by | epochs | params | positions/s | test next-item metrics |",
                  "|---|---|---|---|---|---|"]
        for setup, info in pretraining.items():
            used = "cold start" if setup == "source" else "attribute tasks"
            pps = info.get("positions_per_second")
            params = info.get("parameters")
            test = ", ".join(f"{k} {v:.4f}" for k, v in sorted(info.get("test", {}).items()) if k != "loss") or "—"
            lines.append(f"| {setup} | {used} | {info.get('epochs_completed')} | "
                         f"{f'{params:,}' if params else '—'} | {f'{pps:,.0f}' if pps else '—'} | {test} |")
        lines.append("")
    if timing:
        base = timing.get("fine-all")
        lines += ["## Step time, side by side (same batch, alternating rounds)", "",
                  "| strategy | s/step | ratio to fine-all |", "|---|---|---|"]
        for strategy, seconds in timing.items():
            lines.append(f"| {strategy} | {seconds:.4f} | {f'{seconds / base:.2f}' if base else '—'} |")
        lines.append("")
    lines += ["## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def _label_pair(text: str) -> Tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--labels takes NAME=PATH, got {text!r}")
    name, path = text.split("=", 1)
    return name.strip(), path.strip()


def parse_args(argv=None):
    from peterrec.trainer.finetune import FinetuneConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", default="movielens-1m", choices=sorted(readers.INTERACTION_FORMATS),
                        help="reader format of --source (components/readers.py)")
    parser.add_argument("--source", default=None, help="the data: a MovieLens folder, or CSV file(s)")
    parser.add_argument("--movielens", default=None,
                        help="alias of --format movielens-1m --source PATH (the ml-1m folder)")
    parser.add_argument("--labels", type=_label_pair, nargs="+", default=[], metavar="NAME=PATH",
                        help="an attribute task from a user,label CSV (e.g. gender=data/gender.csv)")
    parser.add_argument("--work", default=DEFAULT_WORK, help="work dir (must be outside the repository)")
    parser.add_argument("--out", default=None, help="markdown file for the table (default: <work>/transfer_table.md; "
                                                    "publish with --out benchmarks/results/...)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 folds, 2 pretraining and 2 fine-tuning epochs, no early stopping")
    parser.add_argument("--folds", type=int, default=None, help="user folds of the attribute tasks (default 5; 3 "
                                                                "with --quick)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per fold")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--tasks", nargs="+", default=None,
                        help="tasks to run (default: every task the data defines)")
    parser.add_argument("--readout", default=_default(trainer_config.TaskConfig, "readout"),
                        choices=trainer_config.READOUTS)
    parser.add_argument("--no-readout-norm", action="store_true", help="no LayerNorm on the read-out parts")
    parser.add_argument("--cold-start-embedding-dim", type=int, default=8,
                        help="cold start: width of the target-item table (0 = the user-vector width)")
    parser.add_argument("--patience", type=int, default=None, help="fine-tuning early-stopping patience "
                        f"(default {_default(FinetuneConfig, 'early_stopping_patience')}; 0 with --quick)")
    parser.add_argument("--lr-schedule", default=_default(FinetuneConfig, "lr_schedule"),
                        choices=("constant", "cosine"))
    parser.add_argument("--monitor", default="val_loss", help="eval metric that picks the best epoch and stops "
                                                              "early on the attribute tasks")
    parser.add_argument("--context", type=int, default=_default(FinetuneConfig, "max_len"),
                        help="L: most recent items a fine-tuned model (and the last-L baselines) read")
    parser.add_argument("--pretrain-context", type=int, default=None,
                        help="max_len of pretraining (default: --context)")
    parser.add_argument("--ingest-max-len", type=int, default=None,
                        help="cap on the items kept per user at ingestion (default: none, whole histories)")
    parser.add_argument("--max-target-items", type=int, default=5, help="cold start: target items per train user")
    parser.add_argument("--non-causal", action="store_true", help="GRec encoder with cloze pretraining")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--dilations", type=int, nargs="+", default=None,
                        help=f"backbone dilations (default {list(trainer_config.DEFAULT_DILATIONS)}; "
                             "1 2 4 8 with --quick)")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=_default(FinetuneConfig, "learning_rate"),
                        help="fine-tuning lr (frozen strategies)")
    parser.add_argument("--fine-all-learning-rate", type=float, default=1e-3, help="lr of fine-all and fine-last")
    parser.add_argument("--bottleneck", type=int, default=16)
    parser.add_argument("--prepare-only", action="store_true",
                        help="ingest, pretrain and compute the baselines, then stop")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-probe", action="store_true", help="no linear probe of the frozen backbone")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="print the table from finished runs, run nothing")
    args = parser.parse_args(argv)
    if args.movielens:
        if args.source and args.source != args.movielens:
            parser.error("--movielens PATH is --format movielens-1m --source PATH: give one of them")
        args.format, args.source = "movielens-1m", args.movielens
    if not args.source:
        parser.error("give --source PATH (or --movielens PATH)")
    if args.folds is None:
        args.folds = 3 if args.quick else 5
    if args.folds < 3:
        parser.error(f"--folds must be >= 3 (a test, an eval and a train fold), got {args.folds}")
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.dilations is None:
        args.dilations = [1, 2, 4, 8] if args.quick else list(trainer_config.DEFAULT_DILATIONS)
    if args.pretrain_context is None:
        args.pretrain_context = args.context
    args.labels = dict(args.labels)
    if args.out is None:
        args.out = os.path.join(args.work, "transfer_table.md")
    return args


def run_command(argv: List[str], source: str) -> str:
    """The command line that produces the runs (without --table-only / --out, which change no result)."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--out":
            skip = True
            continue
        if arg == "--table-only" or arg.startswith("--out="):
            continue
        shown.append("DATA" if arg == source else arg)
    return "python benchmarks/transfer_table.py " + " ".join(shown)


def main(argv=None) -> int:
    args = parse_args(argv)
    import peterrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

    work = os.path.abspath(args.work)
    if inside(work, REPO):
        print(f"error: --work {work} is inside the repository; use a folder outside it (e.g. /tmp/...)",
              file=sys.stderr)
        return 2
    attributes, cold, cold_why, notes = available_tasks(args.format, args.source, args.labels)
    defined = list(attributes) + ([COLD_START] if cold else [])
    tasks = args.tasks or defined
    unknown = [t for t in tasks if t not in defined]
    if COLD_START in unknown:
        notes.append("cold start was asked for but is skipped: " + cold_why)
    unknown = [t for t in unknown if t != COLD_START]
    if unknown:
        print(f"error: the data defines no task {unknown}; it defines {defined}", file=sys.stderr)
        return 2
    tasks = [t for t in tasks if t in defined]
    for note in notes:
        progress(note)
    if not tasks:
        print("error: no task to run", file=sys.stderr)
        return 2
    os.makedirs(work, exist_ok=True)
    settings = settings_from_args(args)
    tag = ("quick-" if args.quick else "") + tag_of({"settings": settings, "data": data_tag(settings, args.source)})
    command = run_command(argv if argv is not None else sys.argv[1:], args.source)
    results_path = os.path.join(work, "results.jsonl")
    with open(os.path.join(work, f"settings-{tag}.json"), "w") as handle:
        json.dump(settings, handle, indent=2, sort_keys=True)
    progress(f"settings tag {tag}; work dir {work}; {args.folds} folds x {args.seeds} seed(s); tasks {tasks}; "
             f"strategies {args.strategies}")

    pretraining: Dict[str, Any] = {}
    timing = None
    baselines: Dict[str, Any] = {}
    timing_path = os.path.join(work, f"timing-{tag}.json")
    if not args.table_only:
        data_paths = ingest_all(args.source, work, settings, tasks, attributes, cold)
        for setup in sorted({data_paths[t]["setup"] for t in tasks}):
            pretraining[setup] = pretrain_setup(setup, data_paths[setup], work, settings, args.source)
        if not args.no_baselines:
            baselines = compute_baselines(data_paths, tasks, work, settings, pretraining, args.source,
                                          probe=not args.no_probe)
        if args.prepare_only:
            progress("data, pretraining and baselines are ready (--prepare-only): no fine-tuning run")
            return 0
        attribute = [t for t in tasks if t != COLD_START]
        if os.path.exists(timing_path):
            with open(timing_path) as handle:
                timing = json.load(handle)
        elif not args.no_timing and attribute and "all" in pretraining:
            progress(f"measuring step times side by side ({attribute[0]} task)")
            measured = [s for s in PARAMETER_EFFICIENT + ("fine-cls", "fine-all") if s in args.strategies]
            timing = measure_step_times(pretraining["all"]["export_dir"], data_paths[attribute[0]], attribute[0],
                                        settings, measured)
            with open(timing_path, "w") as handle:
                json.dump(timing, handle, indent=2)

        plan = run_plan(args.folds, args.seeds, args.strategies, tasks)
        finished = finished_runs(read_results(results_path), tag)
        pending = [p for p in plan if p not in finished]
        progress(f"{len(plan) - len(pending)} of {len(plan)} fine-tuning runs already finished; {len(pending)} to go "
                 "(shared with any other process on this work dir)")
        claims = RunClaims(os.path.join(work, "claims", tag))
        for index, (task, strategy, fold, seed) in enumerate(pending, 1):
            name = f"{task}/{strategy}/" + (f"fold {fold}/seed {seed}" if fold is not None else f"seed {seed}")
            key = f"{task}-{strategy}-f{fold}-s{seed}"
            if not claims.claim(key):
                progress(f"run {index}/{len(pending)}: {name} is running in another process, skipped")
                continue
            try:
                if (task, strategy, fold, seed) in finished_runs(read_results(results_path), tag):
                    progress(f"run {index}/{len(pending)}: {name} finished elsewhere, skipped")
                    continue
                progress(f"run {index}/{len(pending)}: {name}")
                setup = data_paths[task]["setup"]
                row = run_finetune(task, strategy, fold, seed, data_paths[task], pretraining[setup]["export_dir"],
                                   work, settings, tag)
                with open(results_path, "a") as handle:
                    handle.write(json.dumps(row, sort_keys=True) + "\n")
            finally:
                claims.release(key)
            shown = {k: round(v, 4) for k, v in row["metrics"].items() if k in ("accuracy", "mrr@5", "hr@10")}
            progress(f"finished {name} in {row['elapsed_seconds'] / 60:.1f} min: {shown}, "
                     f"{row['trainable_percent']:.2f}% of fine-all's parameters")
    else:
        expected = pretrain_tag(settings, args.source)
        root = os.path.join(work, "pretrain")
        for setup_dir in sorted(os.listdir(root)) if os.path.isdir(root) else []:
            info_path = os.path.join(root, setup_dir, "benchmark_info.json")
            if os.path.exists(info_path) and setup_dir.endswith(expected):
                with open(info_path) as handle:
                    info = json.load(handle)
                pretraining[info["setup"]] = info
        path = os.path.join(work, f"baselines-{tag_of([data_tag(settings, args.source), args.context])}.json")
        if os.path.exists(path):
            with open(path) as handle:
                baselines = json.load(handle)
            probe_key = f"probe-{expected}"
            for task in tasks:
                for fold, result in baselines.get(task, {}).get(probe_key, {}).items():
                    baselines[task]["folds"][fold]["probe"] = result
        if os.path.exists(timing_path):
            with open(timing_path) as handle:
                timing = json.load(handle)

    table = format_table(read_results(results_path), baselines, pretraining, timing, settings, tag, tasks,
                         args.strategies, args.folds, args.seeds, command, notes)
    print("\n" + table, flush=True)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as handle:
        handle.write(table + "\n")
    progress(f"table written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
