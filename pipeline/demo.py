"""The main job end to end: ``peterrec demo --output DIR``.

1. generates the embedded synthetic data set (``DIR/pipeline/data``);
2. runs the local pipeline (ingestion, validation, pretraining, each task's fine-tuning and
   evaluation, assembly, push) with a progress line per component;
3. starts the TF-Serving-compatible server (``peterrec.serving.server.Server``) on the
   pushed model's ``models.config``, on free loopback ports;
4. sends one request per task through ``peterrec.serving.Client`` for a held-out (test
   split) user, prints the answers beside the user's true label or target items, plus the
   backbone's ``next_items``;
5. prints the wall time of each stage and of the whole job.

A second ``peterrec demo`` with the same DIR reuses the cached pipeline outputs (seconds).
"""

import csv
import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional, Sequence

from peterrec.pipeline import config as config_lib

# Beam for the demo: the in-memory DirectRunner starts in a fraction of a second, while
# multi-processing starts worker processes for each Beam component; for the small
# embedded data set, starting workers costs more than they save.
DEMO_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


class DemoError(RuntimeError):
    """The demo could not finish (the message says which stage and why)."""


@dataclasses.dataclass
class DemoUser:
    """A held-out user: source items (oldest first), labels and target-domain items."""

    user_id: str
    items: List[str]
    labels: Dict[str, str]
    targets: List[str]


@dataclasses.dataclass
class DemoResult:
    """What the demo did: the pipeline run, the answers, the timings."""

    run: object  # local_runner.LocalRunResult
    user: DemoUser
    answers: Dict[str, object]
    seconds: Dict[str, float]


def pick_user(config: config_lib.PipelineConfig, data_dir: str, split: str = "test") -> DemoUser:
    """The first user of ``split`` (the ingestion's hash split) with a history, from the synthetic files."""
    from peterrec.components import splits

    ingest = config.ingest_config(os.path.dirname(data_dir))
    source_domain = ingest.domain or "source"
    events: Dict[str, List[tuple]] = {}
    with open(os.path.join(data_dir, config_lib.SYNTHETIC_INTERACTIONS), encoding="utf-8") as handle:
        for line_number, row in enumerate(csv.DictReader(handle)):
            events.setdefault(row["user"], []).append((int(row["timestamp"]), line_number, row["item"],
                                                       row.get("domain") or source_domain))
    for user_id in sorted(events):
        if splits.assign_split(user_id, ingest.split_fractions, ingest.split_salt) != split:
            continue
        ordered = sorted(events[user_id])
        items = [item for _, _, item, domain in ordered if domain == source_domain][-config.context_length:]
        targets = [item for _, _, item, domain in ordered if domain != source_domain]
        if not items:
            continue
        labels = {}
        for attribute in config_lib.SYNTHETIC_ATTRIBUTES:
            path = os.path.join(data_dir, f"{attribute}.csv")
            if os.path.exists(path):
                with open(path, encoding="utf-8") as handle:
                    labels[attribute] = next((row["label"] for row in csv.DictReader(handle)
                                              if row["user"] == user_id), "?")
        return DemoUser(user_id, items, labels, targets)
    raise DemoError(f"no {split} user with a history in {data_dir}")


def _short(items: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(items[-limit:])
    return f"... {shown}" if len(items) > limit else shown


def ask_every_task(client, config: config_lib.PipelineConfig, user: DemoUser, served: Sequence[str],
                   log: Callable[[str], None] = print, k: int = 5) -> Dict[str, object]:
    """One request per served task (plus ``next_items``); prints and returns the answers."""
    answers: Dict[str, object] = {}
    for task in config.tasks:
        if task.name not in served:
            log(f"  {task.name}: not served (not blessed)")
            continue
        if task.kind == config_lib.CLASSIFICATION:
            answer = client.classify(task.name, user.items)
            answers[task.name] = answer
            probabilities = ", ".join(f"{label} {p:.2f}" for label, p in
                                      sorted(answer.probabilities.items(), key=lambda kv: -kv[1]))
            truth = user.labels.get(task.label_source.get("attribute", ""), "?")
            log(f"  {task.name} (classification): {answer.label}   [{probabilities}]   true label: {truth}")
        else:
            answer = client.recommend(task.name, user.items, k=k)
            answers[task.name] = answer
            shown = ", ".join(f"{item} {score:.2f}" for item, score in answer)
            hits = [item for item, _ in answer if item in user.targets]
            log(f"  {task.name} (cold start): top {k}: {shown}")
            log(f"      the user's target-domain items: {_short(user.targets)}; hits in the top {k}: "
                f"{', '.join(hits) if hits else 'none'}")
    answer = client.next_items(user.items, k=k)
    answers["next_items"] = answer
    log(f"  next_items (pretrained backbone): {', '.join(item for item, _ in answer)}")
    return answers


def _evaluation_lines(run) -> List[str]:
    import json

    lines = []
    for node, record in sorted(run.executions.items()):
        if not node.startswith("TaskEvaluator_") or "evaluation" not in record.outputs:
            continue
        path = os.path.join(record.output("evaluation").uri, "metrics.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                report = json.load(handle)
            lines.append(f"  {report['task']} ({report['strategy']}, {report['trainable_params']:,} trainable "
                         f"parameters): {report['reason']} -> {'blessed' if report['blessed'] else 'NOT blessed'}")
    return lines


def run_demo(output_dir: str, config: Optional[config_lib.PipelineConfig] = None,
             beam_pipeline_args: Sequence[str] = DEMO_BEAM_ARGS, log: Callable[[str], None] = print,
             **pipeline_options) -> DemoResult:
    """Runs the whole demo into ``output_dir`` (see the module docstring) and returns what it did."""
    from peterrec.pipeline import local_runner
    from peterrec.serving.client import Client
    from peterrec.serving.server import Server

    started = time.perf_counter()
    seconds: Dict[str, float] = {}
    config = config or config_lib.load_default_config()
    if not config.data.is_synthetic:
        raise DemoError("the demo runs on a synthetic data set; use `peterrec run` for your own data")
    pipeline_root = os.path.join(os.path.abspath(output_dir), "pipeline")
    log(f"== peterrec demo: {config.pipeline_name}, {len(config.tasks)} tasks "
        f"({', '.join(t.name for t in config.tasks)}), output {os.path.abspath(output_dir)}")
    stage = time.perf_counter()
    run = local_runner.run(config, pipeline_root, beam_pipeline_args=beam_pipeline_args, log=log,
                           **pipeline_options)
    seconds["pipeline"] = time.perf_counter() - stage
    for line in _evaluation_lines(run):
        log(line)
    if run.pushed_version is None:
        raise DemoError("the pipeline pushed no model (a task was not blessed: see the evaluations above)")
    served = [t.name for t in config.tasks]
    assembler = run.executions.get("ServingModelAssembler")
    if assembler is not None:
        from peterrec.pipeline import metadata

        tasks = metadata.artifact_property(assembler.output("model"), "tasks", "")
        served = [name for name in str(tasks).split(",") if name] or served

    log(f"== serving version {run.pushed_version} of {config.serving.model_name} ({run.pushed_path})")
    stage = time.perf_counter()
    user = pick_user(config, config.data.resolved_data_dir(pipeline_root))
    with Server(run.model_config_path, grpc_port=0, rest_port=0, poll_seconds=30.0) as server:
        seconds["server_start"] = time.perf_counter() - stage
        log(f"server: gRPC {server.grpc_target}, REST {server.rest_url}")
        log(f"== one request per task for held-out user {user.user_id}: {len(user.items)} items: "
            f"{_short(user.items)}")
        stage = time.perf_counter()
        with Client(server.grpc_target, model_name=config.serving.model_name) as client:
            answers = ask_every_task(client, config, user, served, log)
        seconds["requests"] = time.perf_counter() - stage
    seconds["total"] = time.perf_counter() - started
    log(f"== done in {seconds['total']:.1f} s (pipeline {seconds['pipeline']:.1f} s, server start "
        f"{seconds['server_start']:.1f} s, requests {seconds['requests']:.2f} s)")
    return DemoResult(run, user, answers, seconds)
