"""How much of each attribute does a frozen pretrained backbone carry, at several context lengths?

    python benchmarks/context_probe.py --work /tmp/peterrec-transfer [--contexts 50 100 200]
        [--tasks gender age occupation] [--out benchmarks/results/context_probe.md]

A linear probe (standardised features, logistic regression fitted on the train users, scored on
the test users) on three frozen user vectors: the mean hidden state over the real positions,
the hidden state at the last item, and the mean of the item embeddings. It needs the work dir
of ``transfer_table.py`` (its ingested task examples and the exported 'all' backbone) and
trains nothing but the probe, so it measures the context-length lever in a minute, where
fine-tuning every strategy at a longer context takes hours on 2 cores. The backbone is
applied as pretrained (at its own context); longer contexts only feed it more items.
"""

import argparse
import json
import os
import sys
import time
from typing import Dict, List

import numpy as np

FEATURES = ("mean hidden", "last hidden", "mean embedding")


def find_backbone(work: str) -> str:
    """The exported 'all' backbone of the newest finished pretraining in the work dir."""
    root = os.path.join(work, "pretrain")
    found = []
    for name in os.listdir(root) if os.path.isdir(root) else []:
        export = os.path.join(root, name, "run", "export")
        info = os.path.join(root, name, "benchmark_info.json")
        if name.startswith("all-") and os.path.exists(info) and os.path.isdir(export):
            found.append((os.path.getmtime(info), export))
    if not found:
        raise FileNotFoundError(f"no finished 'all' pretraining under {root}: run benchmarks/transfer_table.py first")
    return max(found)[1]


def user_features(backbone, examples: str, split: str, max_len: int):
    """(features [N, 3d] in FEATURES order, labels [N]) of one split."""
    import tensorflow as tf

    from peterrec.components import ids
    from peterrec.trainer import data

    parts, labels = [], []
    for batch in data.sequence_dataset(examples, split, 256, max_len, kind="classification"):
        item_ids = batch["item_ids"]
        mask = tf.cast(tf.not_equal(item_ids, ids.PAD_ID), tf.float32)[..., tf.newaxis]
        count = tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        hidden = backbone(item_ids)
        embedded = backbone.embed(item_ids)
        parts.append(np.concatenate([tf.reduce_sum(hidden * mask, 1) / count, hidden[:, -1],
                                     tf.reduce_sum(embedded * mask, 1) / count], axis=1))
        labels.append(batch["label"].numpy())
    return np.concatenate(parts), np.concatenate(labels)


def probe(train, test, dim: int) -> Dict[str, float]:
    """Test accuracy of a standardised logistic regression on each feature block."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scores = {}
    for index, name in enumerate(FEATURES):
        block = slice(index * dim, (index + 1) * dim)
        scaler = StandardScaler().fit(train[0][:, block])
        model = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(train[0][:, block]), train[1])
        scores[name] = float(model.score(scaler.transform(test[0][:, block]), test[1]))
    return scores


def format_report(results: Dict[str, Dict[int, Dict[str, float]]], majority: Dict[str, float],
                  contexts: List[int], backbone_dir: str) -> str:
    """Markdown: one row per (task, feature), one column per context, and the gain over the first."""
    lines = ["# Linear probe of the frozen backbone at several context lengths", "",
             f"Backbone: `{backbone_dir}` (test split; standardised logistic regression, C = 0.1).", "",
             "| task | user vector | " + " | ".join(f"context {c}" for c in contexts) +
             f" | gain {contexts[0]} -> {contexts[-1]} (points) |",
             "|---|---|" + "---|" * (len(contexts) + 1)]
    for task, by_context in results.items():
        for feature in FEATURES:
            row = [by_context[c][feature] for c in contexts]
            lines.append(f"| {task} | {feature} | " + " | ".join(f"{v:.4f}" for v in row) +
                         f" | {100 * (row[-1] - row[0]):+.2f} |")
        lines.append(f"| {task} | *majority class* | " + " | ".join(f"{majority[task]:.4f}" for _ in contexts)
                     + " | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/peterrec-transfer", help="transfer_table.py's work dir")
    parser.add_argument("--backbone", default=None, help="a backbone export (default: the work dir's 'all')")
    parser.add_argument("--contexts", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--tasks", nargs="+", default=["gender", "age", "occupation"])
    parser.add_argument("--out", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    import peterrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    from peterrec.trainer import artifacts

    try:
        backbone_dir = args.backbone or find_backbone(args.work)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backbone, config, _ = artifacts.load_backbone(backbone_dir)
    results, majority = {}, {}
    for task in args.tasks:
        examples = os.path.join(args.work, "data", f"task-{task}-L200", "examples")
        if not os.path.isdir(examples):
            print(f"error: no task examples at {examples}", file=sys.stderr)
            return 2
        results[task] = {}
        for context in args.contexts:
            started = time.time()
            train = user_features(backbone, examples, "train", context)
            test = user_features(backbone, examples, "test", context)
            results[task][context] = probe(train, test, config.embedding_dim)
            majority[task] = float(np.mean(test[1] == np.bincount(train[1]).argmax()))
            shown = json.dumps({k: round(v, 4) for k, v in results[task][context].items()})
            print(f"{task} context {context}: {shown} ({time.time() - started:.0f} s)", flush=True)
    report = format_report(results, majority, args.contexts, backbone_dir)
    print("\n" + report)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
