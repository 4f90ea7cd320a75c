"""The tasks of a served model: patch artifacts loaded onto one backbone, with their output names.

``load_served_tasks`` reads each patch artifact (``DIR``, or ``NAME=DIR`` to serve it under
another signature name), checks its backbone fingerprint BEFORE loading it, checks its name
against the signature contract (``peterrec.serving.signatures``) and loads it onto the shared
backbone instance. Each becomes a ``ServedTask``: the task model, its metadata and the names of
its outputs (class names, or the real target items of a cold-start task).
"""

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from peterrec.serving import signatures
from peterrec.trainer import artifacts


class AssemblyError(ValueError):
    """The artifacts cannot be assembled into one served model (the message says why)."""


@dataclasses.dataclass
class ServedTask:
    """One task of the served model: its TaskModel on the shared backbone and its output names.

    ``output_names`` are the class names (classification) or the REAL target items (cold start,
    in target-id order from id ``num_reserved`` on).
    """

    name: str
    kind: str
    model: object  # peterrec.trainer.task_model.TaskModel
    metadata: artifacts.PatchMetadata
    output_names: List[str]
    num_reserved: int
    source: str

    @property
    def strategy(self) -> str:
        """The fine-tuning strategy (paper name)."""
        return self.metadata.strategy

    def top_k(self, requested: int) -> int:
        """K of a cold-start signature: the requested K, at most the number of target items."""
        return min(int(requested), len(self.output_names))


def parse_task_argument(argument: str) -> Tuple[Optional[str], str]:
    """``DIR`` or ``NAME=DIR`` (serve the artifact under another signature name) -> (name, dir)."""
    if "=" in argument and not os.path.isdir(argument):
        name, path = argument.split("=", 1)
        return name, path
    return None, argument


def _output_names(task_config, metadata: artifacts.PatchMetadata, head, source: str) -> Tuple[List[str], int]:
    """(output names, reserved ids) of a task from its label / target vocabulary."""
    vocabulary = metadata.vocabulary()
    outputs = int(task_config.num_outputs)
    if task_config.kind == signatures.KIND_CLASSIFICATION:
        names = [str(n) for n in range(outputs)] if vocabulary is None else vocabulary.all_tokens()
        reserved = 0
    else:
        reserved = int(head.num_reserved)
        if vocabulary is None:
            names = [str(n) for n in range(reserved, outputs)]
        else:
            if vocabulary.num_reserved != reserved:
                raise AssemblyError(f"{source}: the target vocabulary has {vocabulary.num_reserved} reserved ids "
                                    f"but the head reserves {reserved}")
            names = list(vocabulary.tokens)
    if vocabulary is not None and len(vocabulary) != outputs:
        raise AssemblyError(f"{source}: the {vocabulary.kind} vocabulary has {len(vocabulary)} ids but the task "
                            f"has {outputs} outputs: the artifact is inconsistent")
    if not names:
        raise AssemblyError(f"{source}: the task has no real outputs to serve")
    return names, reserved


def load_served_tasks(task_arguments: Sequence[str], backbone, vocabulary, fingerprint: str,
                      log: Callable[[str], None] = lambda message: None) -> List[ServedTask]:
    """Loads patch artifacts (``DIR`` or ``NAME=DIR``) onto ``backbone``, checking fingerprints first.

    Raises ``artifacts.BackboneMismatchError`` naming the artifact when it was trained on another
    backbone, and AssemblyError for bad or duplicate task names.
    """
    if not task_arguments:
        raise AssemblyError("give at least one patch artifact (--task DIR)")
    tasks: List[ServedTask] = []
    seen: Dict[str, str] = {}
    for argument in task_arguments:
        rename, directory = parse_task_argument(argument)
        if not os.path.isdir(directory):
            raise AssemblyError(f"patch artifact {directory!r} does not exist (or is not a folder)")
        metadata = artifacts.read_patch_metadata(directory)
        name = rename or metadata.task_name
        try:
            signatures.validate_task_name(name)
        except ValueError as error:
            raise AssemblyError(f"{directory}: {error} (serve it under another name with --task NAME={directory})") \
                from error
        if name in seen:
            raise AssemblyError(f"two artifacts are named {name!r} ({seen[name]} and {directory}); "
                                f"rename one with --task OTHER_NAME={directory}")
        if metadata.kind not in signatures.TASK_KINDS:
            raise AssemblyError(f"{directory}: task kind {metadata.kind!r} is not one of {signatures.TASK_KINDS}")
        if metadata.backbone_fingerprint != fingerprint:
            raise artifacts.BackboneMismatchError(
                f"patch artifact {directory} (task {metadata.task_name!r}) was fine-tuned on backbone "
                f"{metadata.backbone_fingerprint[:16]}..., but --backbone is {fingerprint[:16]}...: export it with "
                "the backbone it was trained on, or fine-tune the task again on this backbone")
        seen[name] = directory
        model, metadata = artifacts.load_patch_artifact(directory, backbone, vocabulary)
        task = served_task(model, metadata, os.path.abspath(directory), name)
        tasks.append(task)
        log(f"  task {name}: {metadata.kind}, {metadata.strategy}, {len(task.output_names)} outputs ({directory})")
        if metadata.vocabulary() is None:
            log(f"  warning: {directory} records no label/target vocabulary: its outputs are served as ids")
    return tasks


def served_task(model, metadata: artifacts.PatchMetadata, source: str = "", name: Optional[str] = None) -> ServedTask:
    """A ServedTask of a TaskModel already on the backbone (``name`` defaults to the task's name)."""
    names, reserved = _output_names(model.config, metadata, model.head, source or metadata.task_name)
    return ServedTask(name or metadata.task_name, metadata.kind, model, metadata, names, reserved, source)
