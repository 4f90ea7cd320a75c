"""Cold-start training softmax: full vs the unigram-sampled softmax vs TFRS in-batch Retrieval.

    python benchmarks/tfrs_compare.py [--users 6000] [--target-items 1000] [--seeds 0 1 2 3 4]
        [--epochs 10] [--batch-size 64] [--dim 32] [--num-sampled 100] [--model-rounds 3]
        [--out results.json]

Data: the project's synthetic generator (``components/synthetic.py``, data seed 0): a user's
source-domain items are the input, their target-domain items the cold-start targets; 80 % of
the users train, 20 % are test users (every (user, target) pair one query). Target ids are
numbered by frequency after the padding id, as the target vocabulary does, and the samplers'
counts are those frequencies (over all users; the same for every kind).

Model: to isolate the loss, a small bag-of-items user tower (mean of learned source-item
embeddings, a ReLU layer, LayerNorm) feeds the project's ``ColdStartHead``, trained with
"full" (``cold_start_loss``), "unigram" (``ColdStartHead.unigram_loss``: ``--num-sampled``
frequency-aware negatives from the whole target vocabulary, log-Q; the project's sampled
softmax until this comparison) or "in_batch" (``ColdStartHead.in_batch_loss``: TFRS
``tasks.Retrieval`` over the batch's pairs, log-Q, accidental hits removed; what
``softmax="sampled"`` trains with since). Each seed trains the three from the same initial
weights and batch order, in rotating order so machine load falls on all of them alike.

Reported per kind: test MRR@5 and HR@10 by full ranking over all target ids (mean and standard
error over seeds), the median training step time, and the ratios to "unigram"; then the median
step time of a real PeterRec fine-tune (``TaskModel``, random backbone) with each loss. Writes a
JSON of the figures only where ``--out`` says.
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Dict, List

KINDS = ("full", "unigram", "in_batch")


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=6000)
    parser.add_argument("--target-items", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--num-sampled", type=int, default=100, help="negatives of the unigram softmax")
    parser.add_argument("--max-len", type=int, default=50, help="last source items read per user")
    parser.add_argument("--model-rounds", type=int, default=3,
                        help="rounds of fine-tune step timing on a random backbone (0: skip)")
    parser.add_argument("--out", default=None, help="JSON file for the figures (default: print only)")
    return parser.parse_args(argv)


def build_data(users: int, target_items: int, max_len: int):
    """(train, test, source vocab size, target vocab size, target counts) from synthetic rows;
    train/test are (padded source ids [N, L], padded target ids [N, Tt])."""
    import numpy as np

    from peterrec.components import ids, synthetic

    rows = synthetic.generate_rows(synthetic.SyntheticConfig(users=users, target_items=target_items, seed=0))[0]
    history: Dict[str, Dict[str, List[str]]] = {}
    for user, item, _, domain in rows:
        history.setdefault(user, {synthetic.SOURCE: [], synthetic.TARGET: []})[domain].append(item)
    names = sorted(history)
    is_train = np.arange(len(names)) % 5 != 0

    def numbering(domain, reserved):
        counts: Dict[str, int] = {}
        for user in names:
            for item in history[user][domain]:
                counts[item] = counts.get(item, 0) + 1
        order = sorted(counts, key=lambda item: (-counts[item], item))
        return {item: reserved + i for i, item in enumerate(order)}, counts

    source_ids, _ = numbering(synthetic.SOURCE, ids.NUM_RESERVED)
    target_ids, item_counts = numbering(synthetic.TARGET, len(ids.TARGET_RESERVED_TOKENS))
    target_counts = [0.0] * (len(target_ids) + len(ids.TARGET_RESERVED_TOKENS))
    for item, number in target_ids.items():
        target_counts[number] = float(item_counts[item])

    def pad(sequences, width, left=False):
        out = np.zeros([len(sequences), width], np.int32)
        for row, sequence in enumerate(sequences):
            if left:   # item ids: left-padded, as the task examples are read
                out[row, width - len(sequence):] = sequence
            else:
                out[row, : len(sequence)] = sequence
        return out

    def split(mask):
        chosen = [u for u, keep in zip(names, mask) if keep]
        sources = [[source_ids[i] for i in history[u][synthetic.SOURCE]][-max_len:] for u in chosen]
        targets = [[target_ids[i] for i in history[u][synthetic.TARGET]] for u in chosen]
        return pad(sources, max_len, left=True), pad(targets, max(len(t) for t in targets))

    source_vocab = len(source_ids) + ids.NUM_RESERVED
    return split(is_train), split(~is_train), source_vocab, len(target_counts), target_counts


class UserTower:
    """Bag-of-items user vectors: mean of the real items' embeddings -> ReLU layer -> LayerNorm."""

    def __init__(self, keras, source_vocab: int, dim: int):
        self.embedding = keras.layers.Embedding(source_vocab, dim)
        self.hidden = keras.layers.Dense(dim, activation="relu")
        self.norm = keras.layers.LayerNormalization()

    def __call__(self, items):
        import tensorflow as tf

        mask = tf.cast(items > 0, tf.float32)[..., tf.newaxis]
        mean = tf.reduce_sum(self.embedding(items) * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        return self.norm(self.hidden(mean))

    @property
    def weights(self):
        """The tower's variables."""
        return self.embedding.weights + self.hidden.weights + self.norm.weights


def train_and_test(kind: str, seed: int, data, args) -> Dict[str, float]:
    """Trains one model with the ``kind`` softmax; returns its test MRR@5 / HR@10 and step times."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.trainer import metrics, objectives
    from peterrec.trainer.heads import ColdStartHead

    (train_items, train_targets), (test_items, test_targets), source_vocab, target_vocab, counts = data
    keras.utils.set_random_seed(seed)
    tower, head = UserTower(keras, source_vocab, args.dim), ColdStartHead(target_vocab)
    head(tower(tf.constant(train_items[:2])))
    variables = tower.weights + head.trainable_weights
    optimizer = keras.optimizers.Adam(1e-3)

    batch_spec = tf.TensorSpec([None, None], tf.int32)

    @tf.function(autograph=False, input_signature=[batch_spec, batch_spec])
    def step(items, targets):
        with tf.GradientTape() as tape:
            user = tower(items)
            if kind == "full":
                loss = objectives.cold_start_loss(head(user), targets, head.num_reserved)
            elif kind == "unigram":
                loss = head.unigram_loss(user, targets, args.num_sampled, counts)
            else:
                loss = head.in_batch_loss(user, targets, counts)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    order_rng = np.random.default_rng(seed)
    times = []
    for _ in range(args.epochs):
        order = order_rng.permutation(len(train_items))
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            started = time.perf_counter()
            step(tf.constant(train_items[batch]), tf.constant(train_targets[batch])).numpy()
            times.append(time.perf_counter() - started)
    scores = head(tower(tf.constant(test_items))).numpy()
    rows, targets = np.nonzero(test_targets > 0)
    ranks = metrics.np_full_ranks(scores[rows], test_targets[rows, targets], head.num_reserved)
    return {"mrr@5": metrics.np_mrr(ranks, 5), "hr@10": metrics.np_hit_rate(ranks, 10),
            "step_ms": 1000.0 * statistics.median(times[1:])}


def task_model_step_ms(kind: str, data, args, steps: int = 20) -> float:
    """Median step time (ms) of a real cold-start fine-tune step (PeterRec serial patches on a
    random NextItNet backbone of width 64, 8 dilated blocks) with the ``kind`` loss: the cost a
    user sees, where the backbone's share dilutes the head's. "unigram" swaps the head's
    ``sampled_loss`` for ``unigram_loss`` on this instance (TaskModel calls ``sampled_loss``)."""
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.components import ids
    from peterrec.serving import random_artifacts
    from peterrec.trainer.config import AdapterConfig, TaskConfig
    from peterrec.trainer.task_model import build_task_model

    (train_items, train_targets), _, source_vocab, target_vocab, counts = data
    keras.utils.set_random_seed(0)
    backbone = random_artifacts.build_backbone(random_artifacts.item_vocabulary(source_vocab - ids.NUM_RESERVED), embedding_dim=64,
                                               dilations=(1, 2, 4, 8, 1, 2, 4, 8))
    config = TaskConfig(name="cold", kind="cold_start", strategy="peterrec-serial", num_outputs=target_vocab,
                        softmax="full" if kind == "full" else "sampled",
                        adapter=AdapterConfig(bottleneck=16))
    model = build_task_model(backbone, config, target_counts=counts)
    if kind == "unigram":
        model.head.sampled_loss = lambda user, targets, counts: model.head.unigram_loss(
            user, targets, args.num_sampled, counts)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    batches = iter(tf.data.Dataset.from_tensor_slices({"item_ids": train_items, "target_item_ids": train_targets})
                   .batch(args.batch_size, drop_remainder=True).repeat())
    train = model.make_train_function()
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        train(batches)["loss"].numpy()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times[1:])


def summarise(runs: Dict[str, List[Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """Mean and standard error over seeds of each kind's figures, and the ratios to "unigram"."""
    summary = {}
    for kind, results in runs.items():
        row = {}
        for key in ("mrr@5", "hr@10", "step_ms"):
            values = [r[key] for r in results]
            row[key] = statistics.mean(values)
            row[key + "_se"] = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
        summary[kind] = row
    for kind, row in summary.items():
        for key in ("mrr@5", "hr@10", "step_ms"):
            row[key + "_vs_unigram"] = row[key] / summary["unigram"][key]
    return summary


def main(argv=None) -> int:
    """Runs every kind on every seed and prints the table (see the module docstring)."""
    args = parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import peterrec  # noqa: F401

    data = build_data(args.users, args.target_items, args.max_len)
    print(f"{len(data[0][0])} train users, {len(data[1][0])} test users, {int((data[1][1] > 0).sum())} test pairs, "
          f"{data[3] - 1} target items", flush=True)
    runs: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in KINDS}
    for index, seed in enumerate(args.seeds):
        for kind in KINDS[index % len(KINDS):] + KINDS[:index % len(KINDS)]:
            runs[kind].append(train_and_test(kind, seed, data, args))
            print(f"seed {seed} {kind}: {runs[kind][-1]}", flush=True)
    summary = summarise(runs)
    model_steps: Dict[str, List[float]] = {kind: [] for kind in KINDS}
    for index in range(args.model_rounds):
        for kind in KINDS[index % len(KINDS):] + KINDS[:index % len(KINDS)]:
            model_steps[kind].append(task_model_step_ms(kind, data, args))
    for kind, row in summary.items():
        row["task_model_step_ms"] = statistics.median(model_steps[kind]) if model_steps[kind] else float("nan")
    for kind, row in summary.items():
        row["task_model_step_ms_vs_unigram"] = row["task_model_step_ms"] / summary["unigram"]["task_model_step_ms"]
    print(f"\n{'softmax':<10}{'MRR@5':>18}{'HR@10':>18}{'step ms':>10}"
          f"{'MRR/unigram':>13}{'HR/unigram':>12}{'step/unigram':>14}")
    for kind, row in summary.items():
        print(f"{kind:<10}{row['mrr@5']:>10.4f} ± {row['mrr@5_se']:.4f}{row['hr@10']:>10.4f} ± {row['hr@10_se']:.4f}"
              f"{row['step_ms']:>10.1f}{row['mrr@5_vs_unigram']:>13.3f}{row['hr@10_vs_unigram']:>12.3f}"
              f"{row['step_ms_vs_unigram']:>14.3f}")
    print(f"\nPeterRec fine-tune step (random backbone, {args.model_rounds} rounds): "
          + ", ".join(f"{kind} {row['task_model_step_ms']:.1f} ms ({row['task_model_step_ms_vs_unigram']:.2f}x)"
                      for kind, row in summary.items()))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump({"settings": vars(args), "runs": runs, "task_model_step_ms": model_steps, "summary": summary,
                       "load": os.getloadavg()},
                      handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
