"""The ML-1M transfer table: pretrain once, fine-tune every strategy on every task, Table-3 style.

    python benchmarks/transfer_table.py --movielens ../shared/data/ml-1m [--quick] [--seeds 3]
        [--work /tmp/peterrec-transfer] [--strategies peterrec-serial fine-all ...] [--tasks gender ...]
        [--readout tcl+mean] [--readout-norm] [--context 100] [--non-causal] [--pretrain-epochs N]
        [--epochs N] [--patience N] [--learning-rate LR] [--lr-schedule cosine]
        [--classification-monitor val_loss] [--cold-start-embedding-dim D] [--bottleneck B]
        [--prepare-only | --table-only] [--out benchmarks/results/transfer_table.md]

The published table's settings are in the Makefile (``make bench-transfer``: prepares once, then
fine-tunes in JOBS identical processes that share the work dir, then measures the step times
alone and writes the table). Processes on one work dir share the plan: each takes the next
pending run that no other process has claimed (benchmarks/run_claims.py), so any number of
them can be started, stopped and restarted.

Steps (each reused when its output exists, so the script resumes where it stopped):

1. Ingestion with Beam (user-level splits by hash of the user id): all items (for the attribute
   tasks) and source-domain items only (MovieLens genre rule: an item whose first-listed genre
   is Action, Horror, Sci-Fi or Thriller is a target-domain item), plus the task examples:
   gender, age (7 buckets), occupation (21 classes) on the all-items vocabulary, and the
   cold-start genre-domain task (source sequence -> target-domain items; train users keep their
   earliest ``max_target_items`` target items) on the source-only vocabulary.
2. Pretraining once per setup ("all" and "source"), then next-item HR@10 / NDCG@10 of the
   exported backbone on the test users (last item held out, full ranking) and the throughput.
3. Every (task, strategy, seed): ``peterrec.trainer.finetune``; each finished run is appended as
   a JSON line to ``<work>/results.jsonl`` and skipped on a rerun with the same settings.
4. Reference baselines (benchmarks/baselines.py) and the step time of patch fine-tuning against
   fine-all, measured side by side (alternating rounds on the same batch, in this process).
5. The table, printed and written to ``--out``, from whatever has finished (missing cells say so).

Runs are keyed by a tag: a hash of every setting that changes results (pretraining, read-out,
context, epochs, ...), so runs with other settings never mix in one table.
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
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import baselines as baselines_lib  # noqa: E402  (benchmarks/ is not a package)
from run_claims import RunClaims  # noqa: E402

STRATEGIES = ("peterrec-serial", "peterrec-parallel", "iak", "fine-all", "fine-cls", "fine-last", "peter-zero")
ATTRIBUTE_TASKS = ("gender", "age", "occupation")
TASKS = ATTRIBUTE_TASKS + ("cold_start",)
TASK_TITLES = {"gender": "GenEst (acc)", "age": "AgeEst (acc)", "occupation": "OccEst (acc)",
               "cold_start": "ColdRec MRR@5"}
RUN_ORDER = ("peterrec-serial", "fine-all", "fine-cls", "peter-zero", "peterrec-parallel", "fine-last", "iak")
DEFAULT_OUT = os.path.join(HERE, "results", "transfer_table.md")
START = time.time()


def progress(message: str) -> None:
    """Timestamped progress line."""
    elapsed = time.time() - START
    print(f"[{datetime.datetime.now():%H:%M:%S} +{elapsed / 60:5.1f} min] {message}", flush=True)


# ----------------------------------------------------------------------------- settings


def settings_from_args(args) -> Dict[str, Any]:
    """Every setting that changes a result, as one JSON-friendly dict (hashed into the tag)."""
    quick = args.quick
    dilations = [1, 2, 4, 8] * args.blocks_pairs
    pretrain = {
        "backbone": {"embedding_dim": args.embedding_dim, "dilations": dilations, "causal": not args.non_causal},
        "objective": "cloze" if args.non_causal else "next_item",
        "softmax": "full", "batch_size": 64,
        "epochs": args.pretrain_epochs or (3 if quick else 10),
        "learning_rate": 1e-3, "max_len": args.context,
        "early_stopping_patience": 0 if quick else 2,
    }
    finetune = {
        "readout": args.readout, "bottleneck": args.bottleneck, "batch_size": 64,
        "epochs": args.epochs or (4 if quick else 12),
        "learning_rate": args.learning_rate, "fine_all_learning_rate": args.fine_all_learning_rate,
        "early_stopping_patience": 0 if quick else 3, "max_len": args.context,
        "train_layer_norm": True, "fine_last_convs": 2,
    }
    # Added after the first tables: only written when set, so earlier tags (and their runs) stay valid.
    if args.readout_norm:
        finetune["readout_norm"] = True
    if args.cold_start_embedding_dim:
        finetune["cold_start_embedding_dim"] = args.cold_start_embedding_dim
    if args.patience is not None:
        finetune["early_stopping_patience"] = args.patience
    if args.lr_schedule != "constant":
        finetune["lr_schedule"] = args.lr_schedule
    if args.classification_monitor != "val_accuracy":
        finetune["classification_monitor"] = args.classification_monitor
    return {"ingest_max_len": args.ingest_max_len, "max_target_items": args.max_target_items,
            "pretrain": pretrain, "finetune": finetune}


def tag_of(value: Any) -> str:
    """Short stable hash of a JSON-friendly value."""
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- step 1: data


def _done(path: str) -> bool:
    return os.path.exists(os.path.join(path, "DONE.json"))


def _mark_done(path: str, info: Dict[str, Any]) -> None:
    with open(os.path.join(path, "DONE.json"), "w") as handle:
        json.dump(info, handle, indent=2, sort_keys=True, default=str)


def ingest_all(movielens: str, work: str, settings: Dict[str, Any], tasks: List[str]) -> Dict[str, Dict[str, str]]:
    """Runs (or reuses) the ingestions; returns {name: {"examples", "vocabulary", "task_vocabulary"?}}."""
    from peterrec.components.ingest import IngestConfig, run_ingestion
    from peterrec.components.task_examples import AttributeTaskConfig, ColdStartTaskConfig, run_attribute_task, \
        run_cold_start_task

    max_len = settings["ingest_max_len"]
    data_root = os.path.join(work, "data")
    out: Dict[str, Dict[str, str]] = {}

    def folders(name):
        base = os.path.join(data_root, name)
        return base, os.path.join(base, "examples"), os.path.join(base, "vocabulary"), os.path.join(base, "rejects")

    for setup, domain in (("all", None), ("source", "source")):
        base, examples, vocabulary, rejects = folders(f"pretrain-{setup}-L{max_len}")
        if not _done(base):
            progress(f"ingesting ML-1M for pretraining setup {setup!r} (max_len {max_len})")
            config = IngestConfig(source_format="movielens-1m", source_path=movielens, max_len=max_len,
                                  domain=domain, domain_rule="movielens-genre" if domain else None)
            summary = run_ingestion(config, examples, vocabulary, rejects)
            print(summary.format_table(), flush=True)
            _mark_done(base, {"summary": json.loads(summary.to_json())})
        out[setup] = {"examples": examples, "vocabulary": vocabulary}

    for task in tasks:
        suffix = f"-T{settings['max_target_items']}" if task == "cold_start" else ""
        base, examples, vocabulary, rejects = folders(f"task-{task}-L{max_len}{suffix}")
        setup = "source" if task == "cold_start" else "all"
        if not _done(base):
            progress(f"building task examples for {task!r}")
            if task == "cold_start":
                config = ColdStartTaskConfig(source_format="movielens-1m", source_path=movielens, max_len=max_len,
                                             domain_rule="movielens-genre",
                                             max_target_items=settings["max_target_items"])
                summary = run_cold_start_task(config, examples, vocabulary, rejects, out[setup]["vocabulary"])
            else:
                config = AttributeTaskConfig(source_format="movielens-1m", source_path=movielens, max_len=max_len,
                                             attribute=task)
                summary = run_attribute_task(config, examples, vocabulary, rejects, out[setup]["vocabulary"])
            print(summary.format_table(), flush=True)
            _mark_done(base, {"summary": json.loads(summary.to_json())})
        out[task] = {"examples": examples, "task_vocabulary": vocabulary, "vocabulary": out[setup]["vocabulary"],
                     "setup": setup}
    return out


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


def pretrain_setup(setup: str, paths: Dict[str, str], work: str, settings: Dict[str, Any]) -> Dict[str, Any]:
    """Pretrains (or reuses) the backbone of one setup; returns its info incl. export dir and metrics."""
    from peterrec.trainer.config import BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    tag = tag_of({"pretrain": settings["pretrain"], "ingest_max_len": settings["ingest_max_len"]})
    base = os.path.join(work, "pretrain", f"{setup}-{tag}")
    info_path = os.path.join(base, "benchmark_info.json")
    if os.path.exists(info_path):
        with open(info_path) as handle:
            info = json.load(handle)
        progress(f"pretraining {setup!r} reused from {base}")
        return info
    options = dict(settings["pretrain"])
    backbone = BackboneConfig(vocab_size=0, **options.pop("backbone"))
    config = PretrainConfig(backbone=backbone, verbose=2, **options)
    progress(f"pretraining setup {setup!r}: {json.dumps(settings['pretrain'])} -> {base}")
    started = time.time()
    metrics = pretrain(paths["examples"], paths["vocabulary"], os.path.join(base, "run"), config)
    elapsed = time.time() - started
    export_dir = metrics["export_dir"]
    progress(f"evaluating the {setup!r} backbone on the test users (last item held out, full ranking)")
    test = evaluate_backbone(export_dir, paths["examples"], settings["pretrain"]["max_len"])
    info = {"setup": setup, "tag": tag, "export_dir": export_dir, "elapsed_seconds": elapsed,
            "test": test, "eval": {k: v for k, v in metrics.items() if k.startswith("val_") or k in ("hr@10", "ndcg@10")},
            "positions_per_second": metrics.get("positions_per_second"), "step_seconds": metrics.get("step_seconds"),
            "epochs_completed": metrics.get("epochs_completed"), "best_epoch": metrics.get("best_epoch"),
            "parameters": metrics.get("parameters"), "train_examples": metrics.get("train_examples"),
            "train_positions": metrics.get("train_positions")}
    with open(info_path, "w") as handle:
        json.dump(info, handle, indent=2, sort_keys=True)
    progress(f"pretrained {setup!r} in {elapsed / 60:.1f} min: test HR@10 {test.get('hr@10', float('nan')):.4f}, "
             f"NDCG@10 {test.get('ndcg@10', float('nan')):.4f}, "
             f"{info['positions_per_second'] or float('nan'):,.0f} positions/s")
    return info


# ----------------------------------------------------------------------------- step 3: fine-tuning


def task_config(task: str, strategy: str, settings: Dict[str, Any]):
    """The TaskConfig of one (task, strategy) under the settings."""
    from peterrec.trainer.config import AdapterConfig, TaskConfig

    options = settings["finetune"]
    kind = "cold_start" if task == "cold_start" else "classification"
    return TaskConfig(name=task, kind=kind, num_outputs=2, strategy=strategy, readout=options["readout"],
                      readout_norm=options.get("readout_norm", False),
                      head_embedding_dim=options.get("cold_start_embedding_dim", 0) if kind == "cold_start" else 0,
                      adapter=AdapterConfig(bottleneck=options["bottleneck"]),
                      train_layer_norm=options["train_layer_norm"], fine_last_convs=options["fine_last_convs"])


def finetune_config(task: str, strategy: str, seed: int, paths: Dict[str, str], settings: Dict[str, Any]):
    """The FinetuneConfig of one run."""
    from peterrec.trainer.finetune import FinetuneConfig

    options = settings["finetune"]
    lr = options["fine_all_learning_rate"] if strategy in ("fine-all", "fine-last") else options["learning_rate"]
    return FinetuneConfig(task=task_config(task, strategy, settings), batch_size=options["batch_size"],
                          epochs=options["epochs"], learning_rate=lr,
                          lr_schedule=options.get("lr_schedule", "constant"),
                          early_stopping_patience=options["early_stopping_patience"], seed=seed,
                          max_len=options["max_len"], task_vocabulary=paths["task_vocabulary"],
                          monitor=options.get("classification_monitor") if task != "cold_start" else None,
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


def run_finetune(task: str, strategy: str, seed: int, paths: Dict[str, str], backbone_dir: str, work: str,
                 settings: Dict[str, Any], tag: str) -> Dict[str, Any]:
    """One fine-tuning run; returns its result row."""
    import tf_keras as keras

    from peterrec.trainer.finetune import finetune

    keras.backend.clear_session()
    output_dir = os.path.join(work, "finetune", tag, task, strategy, f"seed{seed}")
    config = finetune_config(task, strategy, seed, paths, settings)
    started = time.time()
    metrics = finetune(backbone_dir, paths["examples"], output_dir, config)
    keep = ("accuracy", "macro_f1", "hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10",
            "sampled_mrr@5", "loss")
    return {"tag": tag, "task": task, "strategy": strategy, "seed": seed, "split": metrics.get("split"),
            "metrics": {k: metrics[k] for k in keep if k in metrics},
            "eval_metrics": {k: v for k, v in metrics.get("splits", {}).get("eval", {}).items() if k in keep},
            "trainable_params": metrics.get("trainable_params"), "fine_all_params": metrics.get("fine_all_params"),
            "trainable_percent": metrics.get("trainable_percent"), "epochs_completed": metrics.get("epochs_completed"),
            "best_epoch": metrics.get("best_epoch"), "step_seconds": metrics.get("step_seconds"),
            "elapsed_seconds": time.time() - started, "finished": datetime.datetime.now().isoformat(timespec="seconds")}


# ----------------------------------------------------------------------------- step 4: baselines, timing


def compute_baselines(data_paths: Dict[str, Dict[str, str]], tasks: List[str], work: str,
                      settings: Dict[str, Any]) -> Dict[str, Any]:
    """Reference baselines per task (cached in the work dir)."""
    from peterrec.components.vocabulary import Vocabulary  # noqa: F401  (fails early if the package is broken)
    from peterrec.components.ingest import load_vocabulary

    max_len = settings["finetune"]["max_len"]
    path = os.path.join(work, f"baselines-L{settings['ingest_max_len']}-C{max_len}"
                              f"-T{settings['max_target_items']}.json")
    cached = {}
    if os.path.exists(path):
        with open(path) as handle:
            cached = json.load(handle)
    def run(task: str, context: int) -> Dict[str, Any]:
        paths = data_paths[task]
        kind = "cold_start" if task == "cold_start" else "classification"
        progress(f"baselines for {task!r} (context {context})")
        started = time.time()
        splits = {s: baselines_lib.load_split(paths["examples"], s, kind, context) for s in ("train", "eval", "test")}
        item_vocab = len(load_vocabulary(paths["vocabulary"]))
        key = "targets" if kind == "cold_start" else "labels"
        pair = {s: (splits[s]["item_ids"], splits[s][key]) for s in splits}
        if kind == "classification":
            result = baselines_lib.classification_baselines(pair["train"], pair["test"], item_vocab,
                                                            eval_split=pair["eval"])
        else:
            target_vocab = len(load_vocabulary(paths["task_vocabulary"]))
            result = baselines_lib.cold_start_baselines(pair["train"], pair["test"], item_vocab, target_vocab, 1,
                                                        eval_split=pair["eval"])
        result["seconds"] = time.time() - started
        result["test_users"] = len(pair["test"][0])
        result["context"] = context
        progress(f"baselines for {task!r}: {json.dumps({k: v for k, v in result.items() if isinstance(v, dict)})}")
        return result

    long_context = settings["ingest_max_len"]
    for task in tasks:
        changed = False
        if task not in cached:
            cached[task] = run(task, max_len)
            changed = True
        if long_context != max_len and "long" not in cached[task]:
            # The same baselines on every item kept at ingestion: how much a longer context gives.
            cached[task]["long"] = run(task, long_context)
            changed = True
        if changed:
            with open(path, "w") as handle:
                json.dump(cached, handle, indent=2, sort_keys=True)
    return cached


def measure_step_times(backbone_dir: str, paths: Dict[str, str], settings: Dict[str, Any], strategies: List[str],
                       steps: int = 10, rounds: int = 3) -> Dict[str, float]:
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
    task_name = "gender"
    kind = "classification"
    num_classes = len(load_vocabulary(paths["task_vocabulary"]))
    dataset = data.dataset_from_files(data.split_files(paths["examples"], "train"), options["batch_size"],
                                      options["max_len"], kind=kind, drop_remainder=True)
    batch = next(iter(dataset))
    models = {}
    for strategy in strategies:
        backbone, _, _ = artifacts.load_backbone(backbone_dir, trainable=False)
        task = dataclasses.replace(task_config(task_name, strategy, settings), num_outputs=num_classes)
        base = fresh_backbone_like(backbone) if strategy == "peter-zero" else backbone
        model = build_task_model(base, task)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-4))
        step = tf.function(model.train_step)  # what fit runs per batch, without Keras' input wrapping
        for _ in range(2):  # trace and warm up
            step(batch)
        models[strategy] = step
    durations: Dict[str, List[float]] = {s: [] for s in strategies}
    for _ in range(rounds):
        for strategy, step in models.items():
            for _ in range(steps):
                started = time.perf_counter()
                outputs = step(batch)
                float(outputs["loss"])  # wait for the step to finish
                durations[strategy].append(time.perf_counter() - started)
    return {s: statistics.median(v) for s, v in durations.items()}


# ----------------------------------------------------------------------------- step 5: the table


def _mean_std(values: List[float]) -> str:
    if not values:
        return "—"
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.4f} (n=1)"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def _metric_of(task: str) -> str:
    return "mrr@5" if task == "cold_start" else "accuracy"


PETERREC = ("peterrec-serial", "peterrec-parallel")


def criteria_lines(mean_of, percent_of, baselines: Dict[str, Any], tasks: List[str],
                   std_error_of=None) -> List[str]:
    """The issue's Done-when criteria, each checked on the seed means: PASS / FAIL with the numbers.

    mean_of(task, strategy, metric) -> mean over finished seeds or None; percent_of(task, strategy)
    -> trainable % of fine-all or None; std_error_of(task, strategy, metric) -> standard error of
    that mean or None (optional: when given, the comparisons between strategies show the standard
    error of the difference, and a verdict whose margin to its threshold is smaller than that
    error says so: it would flip within the seeds' noise). "Best PeterRec" is the better of the two
    insertions per task.
    """
    lines = ["## Done-when criteria (seed means)", "", "| criterion | task | numbers | verdict |", "|---|---|---|---|"]

    def row(criterion, task, numbers, ok, margin=None, error=None):
        verdict = "—" if ok is None else ("PASS" if ok else "FAIL")
        if ok is not None and margin is not None and error is not None and abs(margin) < error:
            verdict += " (inside one s.e.)"
        lines.append(f"| {criterion} | {task} | {numbers} | {verdict} |")

    for task in tasks:
        metric = _metric_of(task)
        candidates = [(mean_of(task, s, metric), s) for s in PETERREC if mean_of(task, s, metric) is not None]
        if not candidates:
            row("PeterRec measured", task, "no finished run", None)
            continue
        best, name = max(candidates)

        def difference_error(other):
            errors = [std_error_of(task, s, metric) for s in (name, other)] if std_error_of else [None]
            return math.hypot(*errors) if None not in errors else None

        fine_all = mean_of(task, "fine-all", metric)
        if fine_all is not None:
            error = difference_error("fine-all")
            if task == "cold_start":
                relative = (best - fine_all) / fine_all
                noise = "" if error is None else f" ± {error / fine_all:.1%}"
                row("best PeterRec within 2 % relative of fine-all (MRR@5)", task,
                    f"{name} {best:.4f} vs fine-all {fine_all:.4f} ({relative:+.1%}{noise})", relative >= -0.02,
                    best - 0.98 * fine_all, error)
            else:
                gap = 100 * (best - fine_all)
                noise = "" if error is None else f" ± {100 * error:.2f}"
                row("best PeterRec within 1 accuracy point of fine-all", task,
                    f"{name} {best:.4f} vs fine-all {fine_all:.4f} ({gap:+.2f}{noise} points)", gap >= -1.0,
                    best - fine_all + 0.01, error)
        percent = percent_of(task, name)
        if percent is not None:
            row("at most 10 % of fine-all's trainable parameters", task, f"{name} {percent:.2f} %", percent <= 10.0)
        for other in ("fine-cls", "peter-zero"):
            value = mean_of(task, other, metric)
            if value is not None:
                error = difference_error(other)
                noise = "" if error is None else f" ({best - value:+.4f} ± {error:.4f})"
                row(f"PeterRec beats {other}", task, f"{best:.4f} vs {value:.4f}{noise}", best > value, best - value,
                    error)
        reference = baselines.get(task, {})
        if task == "cold_start":
            hr = max(mean_of(task, s, "hr@10") or 0.0 for s in PETERREC)
            if "item_knn" in reference:
                row("PeterRec beats item kNN on HR@10", task, f"{hr:.4f} vs {reference['item_knn']['hr@10']:.4f}",
                    hr > reference["item_knn"]["hr@10"])
        else:
            if "majority" in reference and task in ("gender", "age"):
                margin = 100 * (best - reference["majority"]["accuracy"])
                row("PeterRec clearly above the majority class (> 1 point)", task,
                    f"{best:.4f} vs {reference['majority']['accuracy']:.4f} ({margin:+.2f} points)", margin > 1.0)
            if "logreg" in reference:
                gap = 100 * (best - reference["logreg"]["accuracy"])
                row("gap to logistic regression on a bag of items (reported, not a criterion)", task,
                    f"{best:.4f} vs {reference['logreg']['accuracy']:.4f} ({gap:+.2f} points)", None)
    return lines + [""]


def format_table(rows: List[Dict[str, Any]], baselines: Dict[str, Any], pretraining: Dict[str, Any],
                 timing: Optional[Dict[str, float]], settings: Dict[str, Any], tag: str, tasks: List[str],
                 strategies: List[str], seeds: List[int], command: str) -> str:
    """The markdown report: main table, parameters, cold-start details, pretraining, timing."""
    rows = [r for r in rows if r.get("tag") == tag and r.get("seed") in seeds]
    by_cell: Dict[tuple, List[Dict[str, Any]]] = {}
    for row in rows:
        by_cell.setdefault((row["task"], row["strategy"]), []).append(row)
    for cell in by_cell.values():
        cell.sort(key=lambda r: r["seed"])

    def values(task, strategy, metric):
        return [r["metrics"][metric] for r in by_cell.get((task, strategy), []) if metric in r["metrics"]]

    lines = [f"# PeterRec transfer table on MovieLens-1M (settings tag `{tag}`)", "",
             f"Produced by `{command}` on {datetime.date.today().isoformat()}. Every number below comes from "
             "that script's runs (results file in its work dir); a cell shows mean ± std over the finished "
             f"seeds and `(n=k)` how many of the requested seeds {seeds} finished; `—` means not run.", "",
             "Test split (10 % of users by hash; 80/10/10 train/eval/test), best epoch on eval restored. "
             "Classification: accuracy with a full softmax over all classes. Cold start: MRR@5 with FULL "
             "ranking over all target-domain items, one query per (test user, target item).", ""]
    header = "| model | " + " | ".join(TASK_TITLES[t] for t in tasks) + " |"
    lines += ["## Main table", "", header, "|" + "---|" * (len(tasks) + 1)]
    for strategy in strategies:
        cells = [_mean_std(values(t, strategy, _metric_of(t))) for t in tasks]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    ref = []
    for name, label in (("majority", "majority class"), ("logreg", "logistic regression, bag of items"),
                        ("popularity", "popularity"), ("item_knn", "item co-occurrence kNN")):
        cells, any_value = [], False
        for t in tasks:
            result = baselines.get(t, {}).get(name)
            if result is None:
                cells.append("n/a" if (t == "cold_start") == (name in ("majority", "logreg")) else "—")
            else:
                cells.append(f"{result[_metric_of(t)]:.4f}")
                any_value = True
        if any_value or baselines:
            ref.append(f"| *{label}* | " + " | ".join(cells) + " |")
    long_rows = {}
    for t in tasks:
        long = baselines.get(t, {}).get("long")
        if long:
            for name in ("logreg", "item_knn"):
                if name in long:
                    long_rows.setdefault(name, {})[t] = long[name][_metric_of(t)]
                    long_rows.setdefault("context", {})[name] = long["context"]
    for name, label in (("logreg", "logistic regression, bag of items"), ("item_knn", "item co-occurrence kNN")):
        if name in long_rows:
            cells = [f"{long_rows[name][t]:.4f}" if t in long_rows[name] else "n/a" for t in tasks]
            ref.append(f"| *{label}, last {long_rows['context'][name]} items* | " + " | ".join(cells) + " |")
    lines += ref + [""]

    def mean_of(task, strategy, metric):
        found = values(task, strategy, metric)
        return statistics.mean(found) if found else None

    def percent_of(task, strategy):
        cell = by_cell.get((task, strategy))
        return cell[0]["trainable_percent"] if cell else None

    def std_error_of(task, strategy, metric):
        found = values(task, strategy, metric)
        return statistics.stdev(found) / math.sqrt(len(found)) if len(found) > 1 else None

    lines += criteria_lines(mean_of, percent_of, baselines, tasks, std_error_of)
    lines += ["± after a difference: one standard error of that difference over the seeds "
              "(sqrt(se1² + se2²)). A verdict marked \"inside one s.e.\" is nearer its threshold than that: "
              "the seeds cannot tell it from the opposite verdict.", ""]

    lines += ["## Trainable parameters, % of fine-all (same task)", "",
              "| model | " + " | ".join(tasks) + " |", "|" + "---|" * (len(tasks) + 1)]
    for strategy in strategies:
        cells = []
        for t in tasks:
            cell = by_cell.get((t, strategy))
            cells.append("—" if not cell else f"{cell[0]['trainable_percent']:.2f}% "
                                              f"({cell[0]['trainable_params']:,})")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines.append("")

    if "cold_start" in tasks:
        metrics = ("hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10", "sampled_mrr@5")
        lines += ["## Cold start (genre domains), full ranking and sampled 100 candidates", "",
                  "| model | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
        for strategy in strategies:
            lines.append(f"| {strategy} | " + " | ".join(_mean_std(values("cold_start", strategy, m))
                                                         for m in metrics) + " |")
        for name in ("popularity", "item_knn"):
            result = baselines.get("cold_start", {}).get(name)
            if result:
                lines.append(f"| *{name}* | " + " | ".join(f"{result[m]:.4f}" for m in metrics) + " |")
        lines.append("")

    attribute = [t for t in tasks if t != "cold_start"]
    if attribute:
        lines += ["## Attribute tasks, macro-F1", "", "| model | " + " | ".join(attribute) + " |",
                  "|" + "---|" * (len(attribute) + 1)]
        for strategy in strategies:
            lines.append(f"| {strategy} | " + " | ".join(_mean_std(values(t, strategy, "macro_f1"))
                                                         for t in attribute) + " |")
        for name in ("majority", "logreg"):
            if any(name in baselines.get(t, {}) for t in attribute):
                lines.append(f"| *{name}* | " + " | ".join(
                    f"{baselines[t][name]['macro_f1']:.4f}" if name in baselines.get(t, {}) else "—"
                    for t in attribute) + " |")
        lines.append("")

    lines += ["## Pretraining", "",
              "| setup | used by | epochs | params | positions/s | s/step | test next-item HR@10 | NDCG@10 |",
              "|---|---|---|---|---|---|---|---|"]
    for setup, info in pretraining.items():
        used = "cold_start" if setup == "source" else "attribute tasks"
        pps = info.get("positions_per_second")
        step = info.get("step_seconds")
        lines.append(f"| {setup} | {used} | {info.get('epochs_completed')} | {info.get('parameters'):,} | "
                     f"{pps:,.0f} | {step:.4f} | {info['test'].get('hr@10', float('nan')):.4f} | "
                     f"{info['test'].get('ndcg@10', float('nan')):.4f} |" if pps and step else
                     f"| {setup} | {used} | {info.get('epochs_completed')} | — | — | — | "
                     f"{info['test'].get('hr@10', float('nan')):.4f} | {info['test'].get('ndcg@10', float('nan')):.4f} |")
    lines += ["", "Positions/s: training sequence positions per second (median step time, one pass of the "
              "train split). Next-item metrics: the last item of each test user held out, ranked against all "
              "items.", ""]
    if timing:
        base = timing.get("fine-all")
        lines += ["## Step time, side by side (gender task, same batch, alternating rounds)", "",
                  "| strategy | s/step | ratio to fine-all |", "|---|---|---|"]
        for strategy, seconds in timing.items():
            ratio = f"{seconds / base:.2f}" if base else "—"
            lines.append(f"| {strategy} | {seconds:.4f} | {ratio} |")
        lines.append("")
    lines += ["## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", required=True, help="the ml-1m folder (ratings.dat, users.dat, movies.dat)")
    parser.add_argument("--work", default="/tmp/peterrec-transfer", help="work dir (outside the repository)")
    parser.add_argument("--quick", action="store_true", help="one seed, fewer epochs: a smoke check")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--readout", default="tcl+mean", choices=("tcl", "mean", "tcl+mean"))
    parser.add_argument("--readout-norm", action="store_true",
                        help="a task-owned LayerNorm on each read-out part before the head")
    parser.add_argument("--cold-start-embedding-dim", type=int, default=0,
                        help="cold start: width of the target-item table (0 = the user-vector width)")
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience of fine-tuning in epochs (default 3; 0 in --quick)")
    parser.add_argument("--lr-schedule", default="constant", choices=("constant", "cosine"),
                        help="fine-tuning learning-rate schedule (cosine: to 5 %% of the rate over the epochs)")
    parser.add_argument("--classification-monitor", default="val_accuracy", choices=("val_accuracy", "val_loss"),
                        help="eval metric that picks the best epoch and stops early on the attribute tasks "
                             "(val_loss is smoother on a few hundred eval users)")
    parser.add_argument("--context", type=int, default=50, help="most recent items a model sees (max_len)")
    parser.add_argument("--ingest-max-len", type=int, default=200, help="items kept per user at ingestion")
    parser.add_argument("--max-target-items", type=int, default=5, help="cold start: target items per train user")
    parser.add_argument("--non-causal", action="store_true", help="GRec encoder with cloze pretraining")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--blocks-pairs", type=int, default=2,
                        help="pairs of residual blocks with conv dilations (1,2),(4,8) (2 = 4 blocks)")
    parser.add_argument("--pretrain-epochs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="fine-tuning lr (frozen strategies)")
    parser.add_argument("--fine-all-learning-rate", type=float, default=1e-3, help="lr of fine-all and fine-last")
    parser.add_argument("--bottleneck", type=int, default=16)
    parser.add_argument("--prepare-only", action="store_true",
                        help="ingest, pretrain and compute the baselines, then stop (before starting several "
                             "fine-tuning processes on the work dir)")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="print the table from finished runs, run nothing")
    parser.add_argument("--out", default=DEFAULT_OUT, help="markdown file for the table")
    return parser.parse_args(argv)


def run_command(argv: List[str], movielens: str) -> str:
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
        shown.append("PATH/ml-1m" if arg == movielens else arg)
    return "python benchmarks/transfer_table.py " + " ".join(shown)


def run_plan(seeds: List[int], strategies: List[str], tasks: List[str]) -> List[tuple]:
    """Every (seed, task, strategy) to run: seed-major, then the strategies the Done-when criteria
    compare first, so a partial run still fills whole comparisons."""
    order = sorted(strategies, key=lambda s: RUN_ORDER.index(s))
    return [(seed, task, strategy) for seed in seeds for strategy in order for task in tasks]


def finished_runs(rows: List[Dict[str, Any]], tag: str) -> set:
    """The (seed, task, strategy) of every finished run with this settings tag."""
    return {(r["seed"], r["task"], r["strategy"]) for r in rows if r.get("tag") == tag}


def main(argv=None) -> int:
    args = parse_args(argv)
    import peterrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

    work = os.path.abspath(args.work)
    repo = os.path.dirname(HERE)
    if os.path.commonpath([work, repo]) == repo:
        print(f"error: --work {work} is inside the repository; use a folder outside it (e.g. /tmp/...)",
              file=sys.stderr)
        return 2
    os.makedirs(work, exist_ok=True)
    seeds = [0] if args.quick else list(range(args.seeds))
    settings = settings_from_args(args)
    tag = ("quick-" if args.quick else "") + tag_of(settings)
    command = run_command(argv if argv is not None else sys.argv[1:], args.movielens)
    results_path = os.path.join(work, "results.jsonl")
    with open(os.path.join(work, f"settings-{tag}.json"), "w") as handle:
        json.dump(settings, handle, indent=2, sort_keys=True)
    progress(f"settings tag {tag}; work dir {work}; seeds {seeds}; tasks {args.tasks}; strategies {args.strategies}")

    data_paths = ingest_all(args.movielens, work, settings, args.tasks) if not args.table_only else None
    pretraining: Dict[str, Any] = {}
    timing = None
    baselines: Dict[str, Any] = {}
    if not args.table_only:
        setups = sorted({data_paths[t]["setup"] for t in args.tasks})
        for setup in setups:
            pretraining[setup] = pretrain_setup(setup, data_paths[setup], work, settings)
        if not args.no_baselines:
            baselines = compute_baselines(data_paths, args.tasks, work, settings)
        if args.prepare_only:
            progress("data, pretraining and baselines are ready (--prepare-only): no fine-tuning run")
            return 0
        timing_path = os.path.join(work, f"timing-{tag}.json")
        if os.path.exists(timing_path):
            with open(timing_path) as handle:
                timing = json.load(handle)
        elif not args.no_timing and "gender" in args.tasks and "all" in pretraining:
            progress("measuring step times side by side (gender task)")
            measured = [s for s in ("peterrec-serial", "peterrec-parallel", "iak", "fine-cls", "fine-all")]
            timing = measure_step_times(pretraining["all"]["export_dir"], data_paths["gender"], settings, measured)
            with open(timing_path, "w") as handle:
                json.dump(timing, handle, indent=2)
            progress("step times: " + ", ".join(f"{s} {v * 1000:.1f} ms" for s, v in timing.items()))

        plan = run_plan(seeds, args.strategies, args.tasks)
        finished = finished_runs(read_results(results_path), tag)
        pending = [p for p in plan if p not in finished]
        progress(f"{len(plan) - len(pending)} of {len(plan)} fine-tuning runs already finished; "
                 f"{len(pending)} to go (shared with any other process on this work dir)")
        claims = RunClaims(os.path.join(work, "claims", tag))
        for index, (seed, task, strategy) in enumerate(pending, 1):
            name = f"{task}/{strategy}/seed {seed}"
            key = f"{task}-{strategy}-{seed}"
            if not claims.claim(key):
                progress(f"run {index}/{len(pending)}: {name} is running in another process, skipped")
                continue
            try:
                # Checked after claiming: another process may have finished it since the plan was read.
                if (seed, task, strategy) in finished_runs(read_results(results_path), tag):
                    progress(f"run {index}/{len(pending)}: {name} finished elsewhere, skipped")
                    continue
                progress(f"run {index}/{len(pending)}: task {task}, strategy {strategy}, seed {seed}")
                setup = data_paths[task]["setup"]
                row = run_finetune(task, strategy, seed, data_paths[task], pretraining[setup]["export_dir"], work,
                                   settings, tag)
                with open(results_path, "a") as handle:
                    handle.write(json.dumps(row, sort_keys=True) + "\n")
            finally:
                claims.release(key)
            shown = {k: round(v, 4) for k, v in row["metrics"].items() if k in ("accuracy", "mrr@5", "hr@10")}
            progress(f"finished {name} in {row['elapsed_seconds'] / 60:.1f} min: {shown}, "
                     f"{row['trainable_percent']:.2f}% of fine-all's parameters")
    else:
        for setup_dir in sorted(os.listdir(os.path.join(work, "pretrain"))) if os.path.isdir(
                os.path.join(work, "pretrain")) else []:
            info_path = os.path.join(work, "pretrain", setup_dir, "benchmark_info.json")
            expected = tag_of({"pretrain": settings["pretrain"], "ingest_max_len": settings["ingest_max_len"]})
            if os.path.exists(info_path) and setup_dir.endswith(expected):
                with open(info_path) as handle:
                    info = json.load(handle)
                pretraining[info["setup"]] = info
        for name in os.listdir(work):
            if name.startswith(f"baselines-L{settings['ingest_max_len']}-C{settings['finetune']['max_len']}-"):
                with open(os.path.join(work, name)) as handle:
                    baselines = json.load(handle)
        timing_path = os.path.join(work, f"timing-{tag}.json")
        if os.path.exists(timing_path):
            with open(timing_path) as handle:
                timing = json.load(handle)

    table = format_table(read_results(results_path), baselines, pretraining, timing, settings, tag, args.tasks,
                         args.strategies, seeds, command)
    print("\n" + table, flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        handle.write(table + "\n")
    progress(f"table written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
