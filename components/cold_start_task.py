"""Cold-start examples: a user's source-domain sequence plus their target-domain items.

Items are split into a source and a target domain (a domain column, a rule such as
``movielens-genre``, or a PeterRec CSV's two fields). Each example is a user's
source-domain sequence plus ``target_item_ids`` (ids of a target vocabulary written to
``target_vocabulary_dir``), oldest first. Users are split by the hash of their id, so
evaluation and test users are held out entirely; ``max_target_items`` keeps only the
earliest target interactions of *train* users (the paper's cold-start users have at most
3 or 5).
"""

import dataclasses
from typing import Optional, Sequence, Union

from peterrec.components.beam_driver import BeamRun, check_settings, combine_histories
from peterrec.components.ingest_config import source_files
from peterrec.components.records import EMPTY_SEQUENCE, NO_TARGET_ITEMS, Reject
from peterrec.components.task_config import ColdStartTaskConfig
from peterrec.components.task_summary import COLD_START, TaskSummary, finish_task
from peterrec.components.vocabulary import Vocabulary, check_vocabulary, load_vocabulary


def _cold_start_user(history, max_target_items: Optional[int], source_label: str):
    """Per user: (history, target items, how many were capped) with train users' targets capped, or a reject."""
    from peterrec.components import beam_steps

    reason = None
    if not history.items:
        reason, detail = EMPTY_SEQUENCE, f"no source-domain interactions ({len(history.targets)} target)"
    elif not history.targets:
        reason, detail = NO_TARGET_ITEMS, f"no target-domain interactions ({history.kept} source)"
    if reason is not None:
        yield from beam_steps.drop_user(history, Reject(reason, source_label, None, history.user, detail))
        return
    targets = [event[4] for event in history.targets]  # oldest first
    capped = 0
    if max_target_items is not None and history.split == "train" and len(targets) > max_target_items:
        capped = len(targets) - max_target_items
        targets = targets[:max_target_items]
    yield history, tuple(targets), capped


def _encode_cold_start(triple, item_vocabulary: Vocabulary, target_vocabulary: Vocabulary):
    """(split, serialized example) of a cold-start user (targets outside a given vocabulary dropped)."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    history, targets, capped = triple
    known = [t for t in targets if t in target_vocabulary]
    if not known:
        yield from beam_steps.drop_user(history, Reject(
            NO_TARGET_ITEMS, "", None, history.user,
            f"none of the user's {len(targets)} target items is in the given target vocabulary"))
        return
    split, example, stats = beam_steps.encode_history(history, item_vocabulary,
                                                      target_item_ids=target_vocabulary.lookup_many(known))
    yield split, example
    stats["kept"] += len(known)
    stats["truncated"] += capped
    stats["dropped"] = len(targets) - len(known)
    stats["target_kept"] = len(known)
    stats["target_truncated"] = capped
    yield beam.pvalue.TaggedOutput(beam_steps.STATS, stats)


def run_cold_start_task(config: ColdStartTaskConfig, examples_dir: str, target_vocabulary_dir: str,
                        rejects_dir: str, vocabulary: Union[Vocabulary, str],
                        beam_pipeline_args: Optional[Sequence[str]] = None,
                        expected_vocabulary_fingerprint: Optional[str] = None,
                        target_vocabulary: Optional[Union[Vocabulary, str]] = None) -> TaskSummary:
    """Builds cold-start examples (source sequence + target items); returns the summary.

    ``vocabulary`` is the pretraining item vocabulary (checked against
    ``expected_vocabulary_fingerprint`` when given). The target vocabulary is built over
    the kept target items of all users (so held-out users' items can be scored), unless
    ``target_vocabulary`` is given.
    """
    import apache_beam as beam

    from peterrec.components import beam_steps

    check_settings(config, "cold-start")
    item_vocabulary = check_vocabulary(vocabulary, "item", expected_vocabulary_fingerprint, "the cold-start task")
    if target_vocabulary is not None:
        target_vocabulary = check_vocabulary(target_vocabulary, "target", what="the cold-start task")
    files = source_files(dataclasses.replace(config, domain=config.source_domain))
    run = BeamRun(beam_pipeline_args, files, config.chunk_bytes)
    run.start(f"building cold-start examples ({config.source_domain} -> {config.target_domain}) from "
              f"{config.source_path} on {run.runner}", examples_dir, target_vocabulary_dir, rejects_dir)
    source_label = ",".join(f.path for f in files)

    interactions = run.read_interactions(config, files, need_domain=True)
    buckets = {config.source_domain: "source", config.target_domain: "target"}
    histories = combine_histories(interactions, config, {"source": config.max_len, "target": None}, buckets, None)
    users = run.collect(histories | "Targets" >> beam.FlatMap(
        _cold_start_user, config.max_target_items, source_label).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="users"))
    targets = run.vocabulary("target", target_vocabulary_dir, given=target_vocabulary,
                             tokens=lambda: users["users"] | "TargetItems" >> beam.FlatMap(lambda triple: triple[1]))
    encoded = run.collect(users["users"] | "Encode" >> beam.FlatMap(
        _encode_cold_start, item_vocabulary, beam.pvalue.AsSingleton(targets)).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="examples"))
    stats, elapsed = run.finish(encoded["examples"], examples_dir, config, rejects_dir, "cold-start")

    task_vocabulary = target_vocabulary or load_vocabulary(target_vocabulary_dir)
    return finish_task(config, stats, item_vocabulary, task_vocabulary, COLD_START, run.runner, elapsed,
                       rejects_dir)
