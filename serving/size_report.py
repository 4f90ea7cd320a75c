"""Sizes on disk of a served version against its inputs and against N separate full models."""

import dataclasses
import os
from typing import Dict, List, Sequence

from peterrec.serving.served_tasks import ServedTask
from peterrec.trainer import artifacts


@dataclasses.dataclass
class SizeReport:
    """Bytes on disk: the served version against its inputs and against N separate full models.

    ``separate_models_bytes`` estimates N separately fine-tuned full models as N backbone copies
    plus every patch (what serving each task on its own would store).
    """

    version_bytes: int
    parts: Dict[str, int]
    backbone_bytes: int
    patch_bytes: Dict[str, int]

    @property
    def patches_total(self) -> int:
        """Bytes of all the patch artifacts together."""
        return sum(self.patch_bytes.values())

    @property
    def shared_inputs_bytes(self) -> int:
        """backbone + sum of patches."""
        return self.backbone_bytes + self.patches_total

    @property
    def separate_models_bytes(self) -> int:
        """N backbone copies plus every patch: what serving each task on its own would store."""
        return len(self.patch_bytes) * self.backbone_bytes + self.patches_total

    def lines(self) -> List[str]:
        """The human-readable report (printed by ``peterrec export``)."""
        n = len(self.patch_bytes)
        parts = ", ".join(f"{name} {_mb(size)}" for name, size in self.parts.items())
        return [
            f"size on disk: served model {_mb(self.version_bytes)} ({parts})",
            f"  backbone export {_mb(self.backbone_bytes)} + {n} patch artifact(s) {_mb(self.patches_total)} "
            f"= {_mb(self.shared_inputs_bytes)}; served / (backbone + patches) = "
            f"{self.version_bytes / max(1, self.shared_inputs_bytes):.2f}",
            f"  {n} separate full model(s) (a backbone copy + patch each) ~ {_mb(self.separate_models_bytes)}; "
            f"served / separate = {self.version_bytes / max(1, self.separate_models_bytes):.2f}",
        ]


def _mb(size: int) -> str:
    return f"{size / 1e6:.3f} MB"


def size_report(version_dir: str, backbone_dir: str, tasks: Sequence[ServedTask]) -> SizeReport:
    """Measures the served version, the backbone export and the patch artifacts on disk."""
    parts: Dict[str, int] = {}
    for entry in sorted(os.listdir(version_dir)):
        path = os.path.join(version_dir, entry)
        parts[entry] = artifacts.directory_size(path) if os.path.isdir(path) else os.path.getsize(path)
    return SizeReport(sum(parts.values()), parts, artifacts.directory_size(backbone_dir),
                      {task.name: artifacts.directory_size(task.source) for task in tasks})
