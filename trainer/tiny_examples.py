"""Tiny generated sequence examples for the trainer's tests, smoke runs and docs.

Writes an Examples layout (``Split-<name>/`` GZIP TFRecords, docs/architecture.md contract 1) and
the vocabularies (contract 2) straight from ``peterrec.components`` contracts, with no
dependency on the ingestion code. The data has a latent user profile, so every task is
learnable from the sequences alone:

- each user has a class c; items are split into ``num_classes`` groups, and a user's items come
  mostly from group c, walking through it in order (item k is usually followed by item k+1 of
  the same group), so the next item is predictable and the class shows in the history;
- classification examples carry the class as ``label``;
- cold-start examples carry 1-3 ``target_item_ids`` drawn from the class's target items.
"""

import dataclasses
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from peterrec.components import example_format
from peterrec.components.vocabulary import Vocabulary

DEFAULT_SPLITS: Tuple[Tuple[str, float], ...] = (("train", 0.7), ("eval", 0.15), ("test", 0.15))


@dataclasses.dataclass
class TinyDataset:
    """Paths and vocabularies of a generated tiny dataset (see ``write_tiny_dataset``)."""

    root: str
    pretrain_examples: str
    classification_examples: str
    cold_start_examples: str
    item_vocabulary_dir: str
    label_vocabulary_dir: str
    target_vocabulary_dir: str
    item_vocabulary: Vocabulary
    label_vocabulary: Vocabulary
    target_vocabulary: Vocabulary


def _user_sequence(rng: np.random.Generator, group: Sequence[int], other: Sequence[int],
                   length: int, noise: float) -> List[int]:
    position = int(rng.integers(len(group)))
    sequence = []
    for _ in range(length):
        if rng.random() < noise:
            sequence.append(int(other[rng.integers(len(other))]))
            continue
        if rng.random() < 0.8:
            position = (position + 1) % len(group)
        else:
            position = int(rng.integers(len(group)))
        sequence.append(int(group[position]))
    return sequence


def write_split_files(root: str, split: str, examples: Sequence, num_shards: int = 2) -> List[str]:
    """Writes serialized ``tf.train.Example`` protos into ``root/Split-<split>/`` GZIP shards."""
    import tensorflow as tf

    folder = example_format.split_dir(root, split)
    tf.io.gfile.makedirs(folder)
    options = tf.io.TFRecordOptions(compression_type=example_format.COMPRESSION)
    paths = [os.path.join(folder, f"{example_format.FILE_PREFIX}-{i:05d}-of-{num_shards:05d}.gz")
             for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p, options) for p in paths]
    for index, example in enumerate(examples):
        writers[index % num_shards].write(example.SerializeToString())
    for writer in writers:
        writer.close()
    return paths


def write_tiny_dataset(root: str, num_users: int = 96, num_items: int = 40, num_classes: int = 2,
                       num_targets_per_class: int = 5, min_len: int = 4, max_len: int = 16,
                       noise: float = 0.1, seed: int = 0,
                       splits: Sequence[Tuple[str, float]] = DEFAULT_SPLITS) -> TinyDataset:
    """Generates the three example sets (pretraining, classification, cold-start) and vocabularies."""
    rng = np.random.default_rng(seed)
    item_tokens = [f"item{i}" for i in range(num_items)]
    # Counts decide the id order (ids sorted by frequency); count what we generate.
    classes = rng.integers(num_classes, size=num_users)
    groups = [list(range(c, num_items, num_classes)) for c in range(num_classes)]
    raw_sequences = []
    for user in range(num_users):
        c = int(classes[user])
        others = [i for g, members in enumerate(groups) if g != c for i in members]
        length = int(rng.integers(min_len, max_len + 1))
        raw_sequences.append(_user_sequence(rng, groups[c], others, length, noise))
    counts: Dict[str, int] = {t: 0 for t in item_tokens}
    for sequence in raw_sequences:
        for item in sequence:
            counts[item_tokens[item]] += 1
    item_vocabulary = Vocabulary.from_counts("item", {t: max(c, 1) for t, c in counts.items()})
    label_vocabulary = Vocabulary.from_counts(
        "label", {f"class{c}": int((classes == c).sum()) + 1 for c in range(num_classes)})
    target_tokens = {f"target{c}_{j}": 1 for c in range(num_classes) for j in range(num_targets_per_class)}
    target_vocabulary = Vocabulary.from_counts("target", target_tokens)

    bounds = np.cumsum([fraction for _, fraction in splits]) / sum(f for _, f in splits)
    per_split: Dict[str, Dict[str, list]] = {name: {"pretrain": [], "classification": [], "cold_start": []}
                                            for name, _ in splits}
    for user in range(num_users):
        split = splits[int(np.searchsorted(bounds, (user + 0.5) / num_users))][0]
        user_id = f"user{user}"
        item_ids = [item_vocabulary.lookup(item_tokens[i]) for i in raw_sequences[user]]
        c = int(classes[user])
        label = label_vocabulary.lookup(f"class{c}")
        n_targets = int(rng.integers(1, 4))
        targets = [target_vocabulary.lookup(f"target{c}_{j}")
                   for j in rng.choice(num_targets_per_class, size=min(n_targets, num_targets_per_class),
                                       replace=False)]
        bucket = per_split[split]
        bucket["pretrain"].append(example_format.make_example(user_id, item_ids))
        bucket["classification"].append(example_format.make_example(user_id, item_ids, label=label))
        bucket["cold_start"].append(example_format.make_example(user_id, item_ids, target_item_ids=targets))

    paths = {name: os.path.join(root, name) for name in ("pretrain", "classification", "cold_start")}
    for split, bucket in per_split.items():
        for name, examples in bucket.items():
            write_split_files(paths[name], split, examples)
    vocab_dirs = {}
    for name, vocabulary in (("item", item_vocabulary), ("label", label_vocabulary), ("target", target_vocabulary)):
        folder = os.path.join(root, f"{name}_vocabulary")
        os.makedirs(folder, exist_ok=True)
        vocabulary.save(folder)
        vocab_dirs[name] = folder
    return TinyDataset(root=root, pretrain_examples=paths["pretrain"],
                       classification_examples=paths["classification"],
                       cold_start_examples=paths["cold_start"],
                       item_vocabulary_dir=vocab_dirs["item"], label_vocabulary_dir=vocab_dirs["label"],
                       target_vocabulary_dir=vocab_dirs["target"], item_vocabulary=item_vocabulary,
                       label_vocabulary=label_vocabulary, target_vocabulary=target_vocabulary)

