"""benchmarks/context_probe.py: the report and the work-dir lookup (the probe itself needs ML-1M)."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks",
                     "context_probe.py")
_spec = importlib.util.spec_from_file_location("peterrec_benchmark_context_probe", _PATH)
context_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(context_probe)


def test_report_shows_each_feature_per_context_and_the_gain():
    scores = {50: dict.fromkeys(context_probe.FEATURES, 0.30), 200: dict.fromkeys(context_probe.FEATURES, 0.35)}
    report = context_probe.format_report({"age": scores}, {"age": 0.32}, [50, 200], "/b")
    assert "| age | mean hidden | 0.3000 | 0.3500 | +5.00 |" in report
    assert "| age | *majority class* | 0.3200 | 0.3200 | |" in report


def test_probe_separates_a_linearly_separable_block():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    signal = labels[:, None] + 0.1 * rng.normal(size=(200, 2))
    features = np.concatenate([signal, rng.normal(size=(200, 4))], axis=1)  # blocks of width 2
    scores = context_probe.probe((features[:150], labels[:150]), (features[150:], labels[150:]), 2)
    assert scores["mean hidden"] > 0.95 and scores["last hidden"] < 0.8


def test_finding_the_backbone_needs_a_finished_pretraining(tmp_path):
    with pytest.raises(FileNotFoundError, match="transfer_table"):
        context_probe.find_backbone(str(tmp_path))
    export = tmp_path / "pretrain" / "all-abc" / "run" / "export"
    export.mkdir(parents=True)
    (tmp_path / "pretrain" / "all-abc" / "benchmark_info.json").write_text("{}")
    assert context_probe.find_backbone(str(tmp_path)) == str(export)
