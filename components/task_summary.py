"""The summary of a task run: ``TaskSummary`` and the checks a task run ends with."""

import dataclasses
from typing import Dict

from peterrec.components.ingest_config import IngestConfig
from peterrec.components.ingest_summary import (
    IngestSummary, check_reject_fraction, format_summary_table, publish_summary, summary_fields)
from peterrec.components.records import DUPLICATE_USER, UNKNOWN_LABEL, UNKNOWN_USER, IngestError
from peterrec.components.vocabulary import Vocabulary

ATTRIBUTE = "attribute"
COLD_START = "cold_start"


@dataclasses.dataclass
class TaskSummary(IngestSummary):
    """An ``IngestSummary`` plus the task's own figures.

    ``kept``/``truncated`` include target items for cold-start tasks (see
    ``target_items_kept``/``target_items_truncated``: target items of train users beyond
    ``max_target_items`` count as truncated); ``vocabulary_*`` describe the
    pretraining item vocabulary the examples use, ``task_vocabulary_*`` the label or
    target vocabulary written beside them.
    """

    task: str = ""
    task_vocabulary_kind: str = ""
    task_vocabulary_size: int = 0
    task_vocabulary_fingerprint: str = ""
    label_lines: int = 0
    label_rejected: int = 0
    labels_by_split: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    target_items_kept: int = 0
    target_items_truncated: int = 0

    def _rows(self):
        rows = super()._rows()
        if self.task == ATTRIBUTE:
            rows.insert(6, ("label lines read", f"{self.label_lines:,}  (rejected {self.label_rejected:,})"))
            for split, counts in self.labels_by_split.items():
                shown = "  ".join(f"{label} {count:,}" for label, count in sorted(counts.items()))
                rows.append((f"  labels in {split}", shown))
        if self.task == COLD_START:
            rows.insert(3, ("    of which target items", f"kept {self.target_items_kept:,}, "
                                                         f"truncated {self.target_items_truncated:,}"))
        rows.append((f"{self.task_vocabulary_kind} vocabulary",
                     f"{self.task_vocabulary_size:,} ids, fingerprint {self.task_vocabulary_fingerprint[:12]}"))
        return rows

    def format_table(self) -> str:
        """The printed summary of a task run."""
        title = f"Task examples ({self.task}): {self.source_format} {self.source_path}"
        return format_summary_table(title, self._rows(), self.rejects_by_reason, self.runner, self.elapsed_seconds)


def finish_task(config: IngestConfig, stats: Dict[str, int], item_vocabulary: Vocabulary,
                task_vocabulary: Vocabulary, task: str, runner: str, elapsed: float,
                rejects_dir: str) -> TaskSummary:
    """Builds, writes, logs and checks the summary of a task run (``task``: ATTRIBUTE or COLD_START).

    Beyond ``publish_summary``'s checks, an attribute task's bad attribute-table lines
    must stay within ``max_reject_fraction`` too, and some user must have an example.
    """
    labels_by_split: Dict[str, Dict[str, int]] = {}
    for key, value in stats.items():
        if key.startswith("label_counts/"):
            _, split, label = key.split("/", 2)
            labels_by_split.setdefault(split, {})[label] = value
    summary = TaskSummary(
        **summary_fields(config, stats, item_vocabulary, runner, elapsed), task=task,
        task_vocabulary_kind=task_vocabulary.kind, task_vocabulary_size=len(task_vocabulary),
        task_vocabulary_fingerprint=task_vocabulary.fingerprint,
        label_lines=stats.get("labels/read", 0), label_rejected=stats.get("labels/rejected", 0),
        labels_by_split={s: labels_by_split[s] for s in config.split_names if s in labels_by_split},
        target_items_kept=stats.get("target_kept", 0), target_items_truncated=stats.get("target_truncated", 0))
    publish_summary(summary, config, rejects_dir)
    by_reason = summary.rejects_by_reason
    if task == ATTRIBUTE:
        label_bad = summary.label_rejected + sum(by_reason.get(r, 0) for r in (UNKNOWN_USER, DUPLICATE_USER,
                                                                               UNKNOWN_LABEL))
        check_reject_fraction(label_bad, summary.label_lines, config.max_reject_fraction,
                              "attribute table lines", rejects_dir, by_reason)
    if summary.users == 0:
        raise IngestError(f"no {task} example could be built from {config.source_path}; see {rejects_dir}")
    return summary
