"""A tiny pipeline config and one shared local run, for the pipeline's tests.

``tiny_config()`` is the embedded default scaled down (400 users, a 1-block backbone of
width 16, a few epochs) with two tasks, a gender-like classification and a cold-start
task; its synthetic signal is strong enough that both beat their baselines, so the
evaluators bless them and the model is pushed.

``shared_run()`` runs that pipeline once per process (LocalDagRunner, SQLite, Beam
in memory) into a temporary folder that is removed at exit, and returns it; the
end-to-end, cache and failure tests all start from it instead of paying for their own run.
"""

import atexit
import copy
import dataclasses
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

from peterrec.pipeline import config as config_lib

BEAM_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]

_FINETUNE = {"readout": "tcl+mean", "epochs": 6, "batch_size": 64, "learning_rate": 0.01,
             "early_stopping_patience": 0, "verbose": 0}

TINY_CONFIG: Dict[str, Any] = {
    "pipeline_name": "peterrec-tiny",
    "data": {"synthetic": {"users": 500, "source_items": 60, "target_items": 40, "min_source_len": 8,
                           "max_source_len": 20, "min_target_len": 2, "max_target_len": 5, "seed": 1,
                           "gender_weight": 3.0, "label_noise": 0.02, "cluster_weight": 3.0,
                           "popularity_exponent": 0.5}},
    "ingest": {"max_len": 16, "domain": "source"},
    "pretrain": {"backbone": {"embedding_dim": 16, "dilations": [1, 2]}, "epochs": 3, "batch_size": 64,
                 "learning_rate": 0.005, "early_stopping_patience": 0, "verbose": 0},
    "tasks": [
        {"name": "gender", "kind": "classification", "strategy": "peterrec-serial",
         "label_source": {"attribute": "gender"}, "threshold": {"metric": "accuracy", "baseline": "majority"},
         "finetune": dict(_FINETUNE)},
        {"name": "cold_start", "kind": "cold_start", "strategy": "peterrec-parallel",
         "label_source": {"source_domain": "source", "target_domain": "target", "max_target_items": 3},
         "threshold": {"metric": "hr@10", "baseline": "popularity"}, "finetune": dict(_FINETUNE)},
    ],
    "serving": {"model_name": "peterrec", "top_k": 5},
}


def tiny_config_dict(**changes: Any) -> Dict[str, Any]:
    """A deep copy of ``TINY_CONFIG`` with top-level keys replaced."""
    data = copy.deepcopy(TINY_CONFIG)
    data.update(copy.deepcopy(changes))
    return data


def tiny_config(**changes: Any) -> config_lib.PipelineConfig:
    """The validated tiny config (see ``tiny_config_dict``)."""
    return config_lib.parse_config(tiny_config_dict(**changes), source="<tiny test config>")


@dataclasses.dataclass
class SharedRun:
    """The shared run: its config, folders and ``LocalRunResult``."""

    config: config_lib.PipelineConfig
    workdir: str
    pipeline_root: str
    result: Any  # local_runner.LocalRunResult


_SHARED: Dict[str, SharedRun] = {}


def shared_run(parent_dir: Optional[str] = None, log=print) -> SharedRun:
    """Runs the tiny pipeline once per process (later calls return the same run).

    ``parent_dir``: where its folder goes; tests pass pytest's ``tmp_path_factory.getbasetemp()``
    so pytest's own retention cleans it up. Without it, a temporary folder removed at exit.
    """
    if "run" in _SHARED:
        return _SHARED["run"]
    from peterrec.pipeline import local_runner

    workdir = tempfile.mkdtemp(prefix="peterrec-pipeline-test-", dir=parent_dir)
    if parent_dir is None:
        atexit.register(shutil.rmtree, workdir, True)
    config = tiny_config()
    # <workdir>/pipeline is where ``peterrec demo --output <workdir>`` puts its pipeline root.
    root = os.path.join(workdir, "pipeline")
    result = local_runner.run(config, root, beam_pipeline_args=BEAM_ARGS, log=log)
    _SHARED["run"] = SharedRun(config, workdir, root, result)
    return _SHARED["run"]


def rerun(shared: SharedRun, config: Optional[config_lib.PipelineConfig] = None, log=print, **options):
    """Runs the pipeline again on the shared root (same Beam arguments); returns its result."""
    from peterrec.pipeline import local_runner

    return local_runner.run(config or shared.config, shared.pipeline_root, beam_pipeline_args=BEAM_ARGS, log=log,
                            **options)
