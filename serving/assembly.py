"""Assembly: ONE multi-task SavedModel from a backbone export and patch artifacts (contract 5).

``export_serving_model`` (the ``peterrec export`` command) loads the backbone export once, loads
every patch artifact onto that same backbone instance (``peterrec.serving.served_tasks``: each
artifact's backbone fingerprint is checked first), builds the module and its signatures
(``peterrec.serving.serving_module``; what each signature answers is documented there) and
writes the NEXT version ``MODEL_BASE/<N>/`` of one SavedModel whose object graph holds the
backbone's variables ONCE and each task's own variables once, packed
(``peterrec.serving.weight_sharing``). It is written to a hidden staging folder inside
``MODEL_BASE`` and renamed into place, so a polling server never sees half a version, even
when the export is killed (``peterrec.serving.crash_safe``: the staging folder is locked while
its export lives, fsynced before the rename, and removed by the next export if its export
died). The TF Serving files (``models.config``, batching parameters, monitoring config) are updated beside the
model base (``peterrec.serving.serving_files``), and the result reports the sizes on disk
(``peterrec.serving.size_report``).

The names other rooms use as ``assembly.X`` (``build_serving_module``, ``served_task``,
``AssemblyError``) are importable from here.
"""

import dataclasses
import datetime
import os
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from peterrec.serving import crash_safe, signatures
from peterrec.serving.served_tasks import AssemblyError, ServedTask, load_served_tasks
# served_task is re-exported: benchmarks/serving.py builds modules with ``assembly.served_task``.
from peterrec.serving.served_tasks import served_task  # noqa: F401
from peterrec.serving.serving_module import DEFAULT_MAX_LEN, ServingModule, build_serving_module
from peterrec.serving.size_report import SizeReport, size_report
from peterrec.trainer import artifacts

WARMUP_UNKNOWN_ITEM = "peterrec-warmup-unknown-item"


def next_version(model_base: str) -> int:
    """1 + the highest numeric folder under ``model_base`` (1 when there is none)."""
    if not os.path.isdir(model_base):
        return 1
    numbers = [int(name) for name in os.listdir(model_base) if name.isascii() and name.isdigit()]
    return max(numbers, default=0) + 1


def publish_version(staging: str, model_base: str, attempts: int = 20) -> Tuple[int, str]:
    """Renames a finished staging folder to the next free version number under ``model_base``
    (retrying when another export takes that number first); returns (version, its path)."""
    for _ in range(attempts):
        version = next_version(model_base)
        target = os.path.join(model_base, str(version))
        if os.path.exists(target):
            continue
        try:
            os.rename(staging, target)
        except OSError:  # another export took this number in the meantime
            if os.path.exists(staging):
                continue
            raise
        return version, target
    raise AssemblyError(f"could not find a free version number under {model_base}")


@dataclasses.dataclass
class ExportResult:
    """What ``export_serving_model`` wrote."""

    model_name: str
    model_base: str
    version: int
    path: str
    signatures: List[str]
    sizes: SizeReport
    serving_files: Dict[str, str]
    seconds: float

    def lines(self) -> List[str]:
        """The summary ``peterrec export`` prints."""
        lines = [f"exported {self.model_name} version {self.version} to {self.path} in {self.seconds:.1f} s",
                 f"signatures: {', '.join(self.signatures)}"]
        lines += self.sizes.lines()
        for kind, path in self.serving_files.items():
            lines.append(f"{kind}: {path}")
        return lines


def task_entries(module: ServingModule, tasks: Sequence[ServedTask], backbone) -> Dict[str, dict]:
    """The ``peterrec_tasks.json`` entries of every signature."""
    entries = {}
    for task in tasks:
        common = dict(strategy=task.strategy, readout=task.model.config.readout, metrics=dict(task.metadata.metrics),
                      trainable_params=int(task.metadata.trainable_params))
        if task.kind == signatures.KIND_CLASSIFICATION:
            entries[task.name] = signatures.task_entry(task.kind, labels=task.output_names, **common)
        else:
            entries[task.name] = signatures.task_entry(task.kind, top_k=task.top_k(module.top_k),
                                                       num_targets=len(task.output_names), **common)
    if module.serves_backbone_signatures:
        entries[signatures.EMBED_SIGNATURE] = signatures.task_entry(signatures.KIND_EMBED,
                                                                    dim=int(backbone.embedding_dim))
        entries[signatures.NEXT_ITEMS_SIGNATURE] = signatures.task_entry(
            signatures.KIND_NEXT_ITEMS, top_k=min(module.top_k, module.num_items))
    return entries


def warmup_rows(vocabulary) -> List[List[str]]:
    """Two item rows of different lengths for the warm-up requests, one with an unknown id."""
    tokens = list(vocabulary.tokens[:3])
    return [tokens, tokens[-1:] + [WARMUP_UNKNOWN_ITEM]]


def save_version(module: ServingModule, concrete: Dict[str, object], model_base: str, metadata: Dict[str, dict],
                 warmup_items: Optional[List[List[str]]] = None,
                 before_publish: Optional[Callable[[], object]] = None, **extra) -> Tuple[int, str]:
    """Saves the module as the next version under ``model_base`` (staging folder, then rename).

    The staging folder is locked while it lives (``peterrec.serving.crash_safe``); staging
    folders of exports that were killed are removed first. Everything is fsynced before the
    rename, so the version that appears is complete even after a power cut.

    ``metadata``: the ``peterrec_tasks.json`` entries (``task_entries``); ``extra``: its other
    top-level keys. ``warmup_items``: rows for one warm-up request per signature (None: none).
    ``before_publish`` runs once the version is complete in its staging folder, just before the
    rename (``peterrec export`` pins the served versions in ``models.config`` there).
    Returns (version, path).
    """
    from peterrec.serving import warmup as warmup_module

    model_base = os.path.abspath(model_base)
    os.makedirs(model_base, exist_ok=True)
    crash_safe.remove_stale_staging(model_base)
    with crash_safe.ExportStaging(model_base) as staging:
        tf.saved_model.save(module, staging.model_dir, signatures=concrete)
        signatures.write_tasks_metadata(staging.model_dir, metadata, **extra)
        if warmup_items:
            requests = warmup_module.contract_warmup_requests(os.path.basename(model_base), sorted(concrete),
                                                              warmup_items)
            warmup_module.write_warmup_requests(staging.model_dir, requests)
        crash_safe.fsync_tree(staging.model_dir)
        crash_safe.crash_point("export:staged")
        if before_publish is not None:
            before_publish()
        published = publish_version(staging.model_dir, model_base)
        crash_safe.fsync_dir(model_base)
        return published


def export_serving_model(backbone_dir: str, task_arguments: Sequence[str], model_base: str,
                         top_k: int = signatures.DEFAULT_TOP_K, max_len: int = DEFAULT_MAX_LEN,
                         label: Optional[str] = None, warmup: bool = True, write_serving_files: bool = True,
                         config_dir: Optional[str] = None,
                         log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Writes the next version of the multi-task SavedModel under ``model_base`` (see module doc).

    ``task_arguments``: patch artifact folders (``DIR`` or ``NAME=DIR``). ``label`` (e.g. stable or
    canary) points that version label at the new version in ``models.config``; ``config_dir``
    (default: the folder holding ``model_base``) receives the TF Serving files.
    """
    from peterrec.serving import serving_files

    started = time.perf_counter()
    model_base = os.path.abspath(model_base)
    model_name = os.path.basename(model_base)
    if not model_name or model_name.isdigit() or model_name.startswith("."):
        raise AssemblyError(f"--model-base must be DIR/NAME (NAME: the model's name), got {model_base!r}")
    if label is not None:
        serving_files.validate_label(label)
    log(f"loading backbone {backbone_dir}")
    fingerprint = artifacts.read_backbone_metadata(backbone_dir)["fingerprint"]
    backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
    log(f"loading {len(task_arguments)} patch artifact(s)")
    tasks = load_served_tasks(task_arguments, backbone, vocabulary, fingerprint, log)
    asset_dir = tempfile.mkdtemp(prefix="peterrec-export-assets-")
    try:
        log(f"tracing {len(tasks) + 2} signatures")
        module, concrete = build_serving_module(backbone, vocabulary, tasks, asset_dir, max_len=max_len, top_k=top_k)
        log("saving the SavedModel")
        version, path = save_version(
            module, concrete, model_base, task_entries(module, tasks, backbone),
            warmup_rows(vocabulary) if warmup else None,
            before_publish=(lambda: serving_files.pin_served_versions(model_base, label, config_dir))
            if write_serving_files else None,
            backbone_fingerprint=fingerprint, item_vocabulary_fingerprint=vocabulary.fingerprint,
            backbone_config=backbone.backbone_config.to_dict(), max_len=module.max_len,
            sources={"backbone": os.path.abspath(backbone_dir), **{t.name: t.source for t in tasks}},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    finally:
        shutil.rmtree(asset_dir, ignore_errors=True)
    log(f"published version {version}")
    crash_safe.crash_point("export:published")
    files = {}
    if write_serving_files:
        files = serving_files.update_serving_files(model_base, version, label=label, config_dir=config_dir)
    return ExportResult(model_name, model_base, version, path, sorted(concrete), size_report(path, backbone_dir, tasks),
                        files, time.perf_counter() - started)
