"""Step cost against context length: pretraining and patch fine-tuning at L = 50 / 200 / 500.

    python benchmarks/context_cost.py [--contexts 50 200 500] [--vocab 3700] [--dim 64]
        [--batch-size 64] [--rounds 5] [--steps 10]

Builds the default backbone (dilations 1..128, receptive field 511) on random item ids, and times
one training step of next-item pretraining (full softmax at every position) and of PeterRec
serial fine-tuning (frozen backbone, patches + tcl+mean read-out + head) at each context, in
alternating rounds so that every context sees the same machine load. Prints the median step time,
the time per sequence position and the ratio to the shortest context. No data set is needed:
the cost of a step does not depend on which items are in it.
"""

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, nargs="+", default=[50, 200, 500])
    parser.add_argument("--vocab", type=int, default=3_700, help="item ids (default 3,700: ML-1M's size)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per context and round (default 10)")
    return parser.parse_args(argv)


def build_steps(contexts: List[int], vocab: int, dim: int, batch_size: int):
    """{(kind, context): a function running one training step}, traced once each."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from peterrec.components import ids
    from peterrec.trainer.backbone import NextItNetBackbone
    from peterrec.trainer.config import TaskConfig
    from peterrec.trainer.objectives import PretrainingModel, make_objective
    from peterrec.trainer.task_model import build_task_model

    rng = np.random.default_rng(0)
    steps = {}
    for context in contexts:
        items = tf.constant(rng.integers(ids.NUM_RESERVED, vocab, size=(batch_size, context)), tf.int32)
        labels = tf.constant(rng.integers(0, 7, size=(batch_size,)), tf.int32)
        backbone = NextItNetBackbone(vocab_size=vocab, embedding_dim=dim, name=f"backbone_{context}").ensure_built()
        pretraining = PretrainingModel(backbone, make_objective(backbone))
        pretraining.compile(optimizer=keras.optimizers.Adam(1e-3))
        task = build_task_model(backbone, TaskConfig("age", num_outputs=7, strategy="peterrec-serial"))
        task.compile(optimizer=keras.optimizers.Adam(1e-3))
        batch = {"item_ids": items, "label": labels}
        for kind, model in (("pretraining", pretraining), ("peterrec-serial", task)):
            step = tf.function(lambda m=model, b=batch: m.train_step(b))
            step()  # traces
            steps[(kind, context)] = step
    return steps


def measure(steps, rounds: int, per_round: int) -> Dict[tuple, float]:
    """Median seconds per step of each entry, over alternating rounds."""
    times: Dict[tuple, List[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            started = time.perf_counter()
            for _ in range(per_round):
                step()
            times[key].append((time.perf_counter() - started) / per_round)
    return {key: statistics.median(values) for key, values in times.items()}


def format_table(medians: Dict[tuple, float], contexts: List[int], batch_size: int) -> str:
    """One row per (kind, context): ms per step, microseconds per position, ratio to the shortest."""
    lines = [f"{'step':<16}{'context':>8}{'ms/step':>10}{'us/position':>13}{'x shortest':>12}"]
    for kind in ("pretraining", "peterrec-serial"):
        base = medians[(kind, contexts[0])]
        for context in contexts:
            value = medians[(kind, context)]
            lines.append(f"{kind:<16}{context:>8}{1000 * value:>10.1f}{1e6 * value / (batch_size * context):>13.2f}"
                         f"{value / base:>12.2f}")
    lines.append(f"load average {'/'.join(f'{v:.1f}' for v in os.getloadavg())}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Runs the measurement and prints the table."""
    args = parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import peterrec  # noqa: F401  (tf-keras before TensorFlow)

    contexts = sorted(set(args.contexts))
    steps = build_steps(contexts, args.vocab, args.dim, args.batch_size)
    print(format_table(measure(steps, args.rounds, args.steps), contexts, args.batch_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
