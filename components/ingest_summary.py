"""The figures of an ingestion run: ``IngestSummary``, its printed table, and its checks.

Every run (ingestion and the task pipelines) ends the same way: its counters become a
summary (``summary_fields``), which is written to ``summary.json`` in the rejects folder,
logged, and checked (``publish_summary``): every interaction read is accounted for and
the rejected fraction stays within ``max_reject_fraction``.
"""

import dataclasses
import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from peterrec.components.ingest_config import IngestConfig
from peterrec.components.records import USER_LEVEL_REASONS, IngestError
from peterrec.components.vocabulary import Vocabulary

summary_log = logging.getLogger("peterrec.components.summary")


@dataclasses.dataclass
class IngestSummary:
    """The figures of one ingestion run; ``summary.json`` in the rejects folder holds them.

    ``read``/``kept``/``truncated``/``filtered``/``dropped``/``rejected`` count
    interactions (``kept + truncated + filtered + dropped + rejected == read``);
    ``rejects_by_reason`` counts reject entries: rejected lines, and user-level entries
    (``records.USER_LEVEL_REASONS``, e.g. ``empty_sequence``) and table lines (item or
    label tables) that are not interactions.
    """

    read: int
    kept: int
    truncated: int
    rejected: int
    rejects_by_reason: Dict[str, int]
    users: int
    users_by_split: Dict[str, int]
    vocabulary_size: int
    vocabulary_fingerprint: str
    filtered: int = 0
    dropped: int = 0
    unknown_items: int = 0       # kept items that map to the unknown id (reused vocabulary, min_item_count)
    rare_items: int = 0          # distinct items below min_item_count, left out of the vocabulary
    max_len: Optional[int] = None
    max_reject_fraction: float = 0.0
    source_format: str = ""
    source_path: str = ""
    runner: str = ""
    elapsed_seconds: float = 0.0

    @property
    def reject_fraction(self) -> float:
        """Rejected interactions over interactions read."""
        return self.rejected / self.read if self.read else 0.0

    @property
    def accounted(self) -> int:
        """kept + truncated + filtered + dropped + rejected: equals ``read`` in a sound run."""
        return self.kept + self.truncated + self.filtered + self.dropped + self.rejected

    def to_json(self) -> str:
        """Serialises the summary as JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IngestSummary":
        """Reads a summary written by ``to_json`` (keys this version does not know are ignored)."""
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def _rows(self) -> List[Tuple[str, str]]:
        pct = f"{100 * self.reject_fraction:.3f}% of read, max {100 * self.max_reject_fraction:.3f}%"
        rows = [("interactions read", f"{self.read:,}"),
                ("  kept", f"{self.kept:,}"),
                (f"  truncated ({'no cap' if self.max_len is None else f'cap max_len={self.max_len}'})",
                 f"{self.truncated:,}"),
                ("  filtered (other domains)", f"{self.filtered:,}"),
                ("  dropped (with rejected users)", f"{self.dropped:,}"),
                ("  rejected", f"{self.rejected:,}  ({pct})")]
        splits = "  ".join(f"{name} {count:,}" for name, count in self.users_by_split.items())
        rows.append(("users", f"{self.users:,}  ({splits})"))
        rows.append(("item vocabulary",
                     f"{self.vocabulary_size:,} ids, fingerprint {self.vocabulary_fingerprint[:12]}"))
        if self.rare_items:
            rows.append(("  items below min_item_count", f"{self.rare_items:,} (mapped to <unk>)"))
        if self.unknown_items:
            rows.append(("  kept interactions mapped to <unk>", f"{self.unknown_items:,}"))
        return rows

    def format_table(self) -> str:
        """The printed summary: counts, users by split, vocabulary, rejects by reason."""
        title = f"Ingestion summary: {self.source_format} {self.source_path}".rstrip()
        return format_summary_table(title, self._rows(), self.rejects_by_reason, self.runner, self.elapsed_seconds)


def format_summary_table(title: str, rows: Sequence[Tuple[str, str]], by_reason: Dict[str, int],
                         runner: str, elapsed: float) -> str:
    """Lays out a run's summary: a title, (name, value) rows, rejects by reason, where it ran."""
    width = max(len(name) for name, _ in rows) + 2
    lines = [title, "-" * max(len(title), 40)]
    lines += [f"{name:<{width}}{value}" for name, value in rows]
    if by_reason:
        lines.append("rejects by reason")
        for reason, count in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            kind = " (users)" if reason in USER_LEVEL_REASONS else ""
            lines.append(f"  {reason + kind:<{width - 2}}{count:,}")
    else:
        lines.append("rejects by reason  none")
    if runner:
        lines.append(f"ran on {runner} in {elapsed:.1f} s")
    return "\n".join(lines)


def read_summary(rejects_dir: str) -> IngestSummary:
    """Reads the ``summary.json`` a run wrote into its rejects folder."""
    from apache_beam.io.filesystems import FileSystems

    from peterrec.components import beam_steps  # lazy: Beam is slow to import

    with FileSystems.open(os.path.join(rejects_dir, beam_steps.SUMMARY_FILE)) as handle:
        return IngestSummary.from_json(handle.read().decode("utf-8"))


def rejects_by_reason(stats: Dict[str, int]) -> Dict[str, int]:
    """Extracts the per-reason counts from the run's stats."""
    return {key.split("/", 1)[1]: value for key, value in stats.items() if key.startswith("rejects/")}


def summary_fields(config: IngestConfig, stats: Dict[str, int], item_vocabulary: Vocabulary, runner: str,
                   elapsed: float) -> Dict[str, Any]:
    """The ``IngestSummary`` fields of a run, from its config, summed counters and item vocabulary."""
    return dict(
        read=stats.get("read", 0), kept=stats.get("kept", 0), truncated=stats.get("truncated", 0),
        rejected=stats.get("rejected", 0), rejects_by_reason=rejects_by_reason(stats), users=stats.get("users", 0),
        users_by_split={name: stats.get(f"users/{name}", 0) for name in config.split_names},
        vocabulary_size=len(item_vocabulary), vocabulary_fingerprint=item_vocabulary.fingerprint,
        filtered=stats.get("filtered", 0), dropped=stats.get("dropped", 0),
        unknown_items=stats.get("unknown_items", 0), rare_items=stats.get("rare_items", 0), max_len=config.max_len,
        max_reject_fraction=config.max_reject_fraction, source_format=config.source_format,
        source_path=config.source_path, runner=runner, elapsed_seconds=round(elapsed, 3))


def publish_summary(summary: IngestSummary, config: IngestConfig, rejects_dir: str) -> None:
    """Writes ``summary.json``, logs the table, and raises IngestError if the run failed its checks.

    The checks: every interaction read is accounted for, something was read, and the
    rejected fraction is within ``max_reject_fraction``.
    """
    from peterrec.components import beam_steps, output_files

    # Written last and atomically: a summary marks a complete run (output_files).
    output_files.write_atomically(os.path.join(rejects_dir, beam_steps.SUMMARY_FILE), summary.to_json().encode("utf-8"))
    log_summary(summary.format_table())
    if summary.accounted != summary.read:
        raise IngestError(f"accounting error: kept+truncated+filtered+dropped+rejected = {summary.accounted:,} "
                          f"but {summary.read:,} interactions were read (a bug; please report it)")
    if summary.read == 0:
        raise IngestError(f"no interactions were read from {config.source_path}")
    check_reject_fraction(summary.rejected, summary.read, config.max_reject_fraction, "interaction lines",
                          rejects_dir, summary.rejects_by_reason)


def report_rejects(rejects_dir: str, limit: int = 5) -> str:
    """A few rejects of a run, formatted for an error message or the console."""
    from peterrec.components import beam_steps

    shown = []
    for reject in beam_steps.read_rejects(rejects_dir, limit=limit):
        where = f"{reject.source}:{reject.line_number}" if reject.line_number is not None else reject.source
        shown.append(f"  [{reject.reason}] {where}: {reject.line[:120]!r} {reject.detail}".rstrip())
    return "\n".join(shown)


def check_reject_fraction(rejected: int, read: int, max_fraction: float, what: str, rejects_dir: str,
                          by_reason: Dict[str, int]) -> None:
    """Raises IngestError when rejected/read exceeds the maximum (after outputs are written)."""
    if read and rejected / read > max_fraction:
        reasons = ", ".join(f"{r}: {c:,}" for r, c in sorted(by_reason.items(), key=lambda kv: -kv[1])
                            if r not in USER_LEVEL_REASONS)
        raise IngestError(
            f"{rejected:,} of {read:,} {what} were rejected ({100 * rejected / read:.2f}%), more than "
            f"max_reject_fraction={max_fraction} allows. Reasons: {reasons}. Every reject is listed in "
            f"{rejects_dir} (summary.json, rejects-*.jsonl); examples:\n{report_rejects(rejects_dir)}\n"
            "Fix the input or raise max_reject_fraction (--max-reject-fraction) if these lines are expected.")



def log_summary(table: str) -> None:
    """Logs a run's summary table (the CLI prints it on stdout instead)."""
    summary_log.info("\n%s", table)
