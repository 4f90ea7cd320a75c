"""Keeps the TF Serving files beside a model base in step with the versions ``peterrec export`` writes.

``update_serving_files(DIR/NAME, version, label="canary")`` writes into ``DIR`` (by default):

- ``models.config``: the ``model_config_list`` entry of NAME (other models' entries are kept),
  its ``base_path``, version labels and a version policy that serves every labelled version
  and the new one (see ``plan_entry``);
- ``batching_parameters.txt`` and ``monitoring.config`` with this package's defaults, only when
  they do not exist yet (edits made by people are never overwritten).

The file formats and writers are ``peterrec.serving.model_config``'s; this module only decides
what goes in them. Every file is replaced atomically (a killed export leaves the old file or the
new one), and concurrent exports take turns on ``models.config`` (a ``flock`` on the hidden
``.models.config.lock`` beside it).
"""

import dataclasses
import os
from typing import Dict, Iterable, Optional

from peterrec.serving import crash_safe, model_config

STABLE = "stable"
CANARY = "canary"
# flock'd around the read-modify-write of models.config, so two exports never lose each other's
# entry or label (hidden; the server reads only models.config itself).
CONFIG_LOCK_FILE = ".models.config.lock"


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
    with crash_safe.exclusive_lock(os.path.join(config_dir, CONFIG_LOCK_FILE)):
        return _update_locked(config_dir, config_path, model_base, name, version, label, batching, monitoring)


def pin_served_versions(model_base: str, label: Optional[str] = None, config_dir: Optional[str] = None) -> bool:
    """Before a new version is published: pins the model's policy to the versions served now when
    the new version would otherwise push a labelled version out of a ``latest`` window.

    Called by ``peterrec export`` before its rename. Without it, a server polling the base path
    would load the new version and unload the labelled one until ``models.config`` is updated
    (for good, if the export is killed in between). It pins only when the update after publishing
    gives a ``specific`` policy anyway, and that update turns out the same from the pinned entry.
    Returns True when it rewrote ``models.config``.
    """
    model_base = os.path.abspath(model_base)
    name = os.path.basename(model_base)
    config_dir = os.path.abspath(config_dir or os.path.dirname(model_base))
    config_path = os.path.join(config_dir, model_config.MODELS_CONFIG_FILE)
    if not os.path.exists(config_path):
        return False
    with crash_safe.exclusive_lock(os.path.join(config_dir, CONFIG_LOCK_FILE)):
        entries = model_config.entries_of(model_config.read_model_config(config_path))
        previous = next((entry for entry in entries if entry.name == name), None)
        if previous is None or previous.policy == model_config.POLICY_SPECIFIC:
            return False
        on_disk = set(versions_on_disk(model_base))
        upcoming = plan_entry(name, model_base, max(on_disk, default=0) + 1, label, previous, on_disk)
        if upcoming.policy != model_config.POLICY_SPECIFIC:
            return False
        served = set(previous.wants(on_disk)) | {v for v in previous.labels.values() if v in on_disk}
        if not served:
            return False
        pinned = dataclasses.replace(previous, policy=model_config.POLICY_SPECIFIC, versions=tuple(sorted(served)))
        model_config.write_model_config(config_path, [pinned if e.name == name else e for e in entries])
    return True


def _update_locked(config_dir, config_path, model_base, name, version, label, batching, monitoring):
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
