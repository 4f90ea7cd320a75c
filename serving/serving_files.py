"""Keeps the TF Serving files beside a model base in step with the versions ``peterrec export`` writes.

``update_serving_files(DIR/NAME, version, label="canary")`` writes into ``DIR`` (by default):

- ``models.config``: the ``model_config_list`` entry of NAME (other models' entries are kept),
  its ``base_path``, version labels and a version policy that serves every labelled version
  and the new one (see ``plan_entry``);
- ``batching_parameters.txt`` and ``monitoring.config`` with this package's defaults, only when
  they do not exist yet (edits made by people are never overwritten).

The file formats and writers are ``peterrec.serving.model_config``'s; this module only decides
what goes in them.
"""

import os
from typing import Dict, Iterable, Optional

from peterrec.serving import model_config

STABLE = "stable"
CANARY = "canary"


def validate_label(label: str) -> str:
    """Returns ``label`` if it can be a version label (letters, digits, '_' or '-'), else ValueError."""
    if not label or not all(c.isalnum() or c in "_-" for c in label) or label.isdigit():
        raise ValueError(f"version label {label!r} must be letters, digits, '_' or '-' (e.g. {STABLE} or {CANARY})")
    return label


def versions_on_disk(model_base: str) -> Iterable[int]:
    """The version numbers that have a SavedModel under ``model_base``."""
    from peterrec.serving.servable import list_versions

    return list_versions(model_base) if os.path.isdir(model_base) else {}


def plan_entry(name: str, model_base: str, version: int, label: Optional[str],
               previous: Optional[model_config.ModelEntry], on_disk: Iterable[int]) -> model_config.ModelEntry:
    """The models.config entry after publishing ``version`` (optionally labelled ``label``).

    Labels of the previous entry are kept while their version is still on disk; ``label`` moves to
    the new version. The policy must keep every labelled version and the new one loaded (TF
    Serving refuses labels of versions it does not serve): an ``all`` policy stays; a ``latest``
    window (the previous ``num_versions``, 1 by default) stays when it holds them all; otherwise
    the policy becomes ``specific`` with exactly the labelled versions and the new one, so a version
    that lost its last label is unloaded (pinning extra versions by hand is undone by an export).
    """
    on_disk = set(int(v) for v in on_disk) | {int(version)}
    labels = {} if previous is None else {k: int(v) for k, v in previous.labels.items() if int(v) in on_disk}
    if label is not None:
        labels[validate_label(label)] = int(version)
    needed = set(labels.values()) | {int(version)}
    entry = model_config.ModelEntry(name, os.path.abspath(model_base), labels=labels)
    policy = model_config.POLICY_LATEST if previous is None else previous.policy
    if policy == model_config.POLICY_ALL:
        entry.policy = model_config.POLICY_ALL
    else:
        window = 1 if previous is None or policy != model_config.POLICY_LATEST else previous.num_versions
        if needed <= set(sorted(on_disk, reverse=True)[:window]):
            entry.policy, entry.num_versions = model_config.POLICY_LATEST, window
        else:
            entry.policy, entry.versions = model_config.POLICY_SPECIFIC, tuple(sorted(needed))
    return entry.validate()


def update_serving_files(model_base: str, version: int, label: Optional[str] = None,
                         config_dir: Optional[str] = None,
                         batching: Optional[model_config.BatchingParameters] = None,
                         monitoring: Optional[model_config.MonitoringConfig] = None) -> Dict[str, str]:
    """Updates models.config for the new version; writes the batching/monitoring files if missing.

    ``batching`` / ``monitoring`` given explicitly are always written. Returns
    ``{"model_config": path, "batching_parameters": path, "monitoring_config": path}``.
    """
    model_base = os.path.abspath(model_base)
    name = os.path.basename(model_base)
    config_dir = os.path.abspath(config_dir or os.path.dirname(model_base))
    config_path = os.path.join(config_dir, model_config.MODELS_CONFIG_FILE)
    entries = []
    if os.path.exists(config_path):
        entries = model_config.entries_of(model_config.read_model_config(config_path))
    previous = next((entry for entry in entries if entry.name == name), None)
    entry = plan_entry(name, model_base, version, label, previous, versions_on_disk(model_base))
    entries = [entry if e.name == name else e for e in entries] if previous is not None else entries + [entry]
    paths = {"model_config": model_config.write_model_config(config_path, entries)}
    batching_path = os.path.join(config_dir, model_config.BATCHING_PARAMETERS_FILE)
    if batching is not None or not os.path.exists(batching_path):
        model_config.write_batching_parameters(batching_path, batching)
    paths["batching_parameters"] = batching_path
    monitoring_path = os.path.join(config_dir, model_config.MONITORING_CONFIG_FILE)
    if monitoring is not None or not os.path.exists(monitoring_path):
        model_config.write_monitoring_config(monitoring_path, monitoring)
    paths["monitoring_config"] = monitoring_path
    return paths
