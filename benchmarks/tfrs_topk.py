"""Served top-k: ours (``logits = h W^T + b``, ``top_k``, name lookup) against TFRS BruteForce.

    python benchmarks/tfrs_topk.py [--items 3700] [--dim 64] [--k 10] [--calls 300] [--rounds 5]
        [--out results.json]

Part A times the top-k step alone (hidden [B, d] -> K names and scores). Part B times the whole
``next_items`` signature of a ServingModule (string ids -> backbone -> top-k), once as served
and once with ``next_items`` overridden to use ``tfrs.layers.factorized_top_k.BruteForce``,
both traced as concrete functions. TFRS scores by a dot product only, so the output layer's
bias rides along as one more dimension of the index. Rounds alternate between the two so
machine load falls on both alike; medians (and 90th percentiles) over all calls, for batches
of 1 and 32, with whether both return the same ids. The figures that kept ours (serving
/serving_module.py): identical ids, no measurable latency difference, and BruteForce's index
holds a second copy of the item table. Writes a JSON only where ``--out`` says.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time


def parse_args(argv=None):
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=3700, help="item vocabulary (default: ML-1M's size)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per function and batch size")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds the calls are split into")
    parser.add_argument("--out", default=None, help="JSON file for the figures (default: print only)")
    return parser.parse_args(argv)


def build_functions(args, assets_dir: str):
    """(functions by name, backbone, vocabulary): the top-k step and the whole signature, ours
    and TFRS's, as traced functions."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from peterrec.components import ids
    from peterrec.serving import random_artifacts, serving_module, signatures

    reserved = ids.NUM_RESERVED
    vocabulary = random_artifacts.item_vocabulary(args.items)
    backbone = random_artifacts.build_backbone(vocabulary, embedding_dim=args.dim, dilations=(1, 2, 4, 8, 1, 2, 4, 8))
    scorer = backbone.output_layer
    names = tf.constant(list(vocabulary.tokens))
    hidden_spec = [tf.TensorSpec([None, args.dim], tf.float32)]

    @tf.function(input_signature=hidden_spec, autograph=False)
    def topk_ours(hidden):
        values, indices = tf.math.top_k(backbone.item_logits(hidden)[:, reserved:], k=args.k)
        return values, tf.gather(names, indices)

    brute = tfrs.layers.factorized_top_k.BruteForce(k=args.k)
    brute.index(tf.concat([scorer.kernel[reserved:], scorer.bias[reserved:, tf.newaxis]], axis=1), names)

    @tf.function(input_signature=hidden_spec, autograph=False)
    def topk_tfrs(hidden):
        return brute(tf.concat([hidden, tf.ones_like(hidden[:, :1])], axis=1), k=args.k)

    class TfrsModule(serving_module.ServingModule):
        """next_items through BruteForce (the index: a copy of the output layer, bias folded in)."""

        def __init__(self, *module_args, **kwargs):
            super().__init__(*module_args, **kwargs)
            self._models.brute = brute

        def next_items(self, items):
            hidden = self._pretrained_hidden(self._ids(items))[:, -1, :]
            query = tf.concat([hidden, tf.ones_like(hidden[:, :1])], axis=1)
            values, found = self._models.brute(query, k=min(self.top_k, self.num_items))
            return {signatures.OUTPUT_ITEMS: found, signatures.OUTPUT_SCORES: values}

    spec = tf.TensorSpec([None, None], tf.string, name="items")
    functions = {"topk_ours": topk_ours, "topk_tfrs": topk_tfrs}
    for label, cls in (("ours", serving_module.ServingModule), ("tfrs", TfrsModule)):
        module = cls(backbone, vocabulary, [], *serving_module.write_vocabulary_assets(vocabulary, assets_dir),
                     max_len=50, top_k=args.k)
        functions[f"sig_{label}"] = tf.function(module.next_items, input_signature=[spec],
                                                autograph=False).get_concrete_function()
    return functions, vocabulary


def measure(functions, vocabulary, args, batch: int):
    """Same-answer checks and call times (microseconds) of every function at one batch size."""
    import numpy as np
    import tensorflow as tf

    from peterrec.serving import random_artifacts, signatures

    hidden = tf.constant(np.random.default_rng(0).normal(0, 1, (batch, args.dim)).astype(np.float32))
    items = tf.constant(signatures.pad_item_rows(
        random_artifacts.random_item_rows(vocabulary, batch, min_len=5, max_len=50, seed=batch)))
    calls = {"topk_ours": lambda: functions["topk_ours"](hidden), "topk_tfrs": lambda: functions["topk_tfrs"](hidden),
             "sig_ours": lambda: functions["sig_ours"](items), "sig_tfrs": lambda: functions["sig_tfrs"](items)}
    ours, theirs = calls["topk_ours"](), calls["topk_tfrs"]()
    served, via_tfrs = calls["sig_ours"](), calls["sig_tfrs"]()
    result = {"topk_same_ids": bool(np.array_equal(ours[1].numpy(), theirs[1].numpy())),
              "topk_max_score_diff": float(np.max(np.abs(ours[0].numpy() - theirs[0].numpy()))),
              "signature_same_items": bool(np.array_equal(served["items"].numpy(), via_tfrs["items"].numpy())),
              "signature_max_score_diff": float(np.max(np.abs(served["scores"].numpy() - via_tfrs["scores"].numpy())))}
    times = {key: [] for key in calls}
    for call in calls.values():
        for _ in range(20):
            call()
    for _ in range(args.rounds):
        for key, call in calls.items():
            for _ in range(args.calls // args.rounds):
                started = time.perf_counter()
                out = call()
                (out[0] if isinstance(out, tuple) else out["scores"]).numpy()
                times[key].append((time.perf_counter() - started) * 1e6)
    for key, values in times.items():
        result[f"{key}_median_us"] = round(statistics.median(values), 1)
        result[f"{key}_p90_us"] = round(float(np.percentile(values, 90)), 1)
    return result


def main(argv=None) -> int:
    """Builds both implementations, measures batches of 1 and 32, prints (and saves) the figures."""
    args = parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import peterrec  # noqa: F401  (tf-keras before TensorFlow)

    results = {"settings": vars(args), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as assets_dir:
        functions, vocabulary = build_functions(args, assets_dir)
        for batch in (1, 32):
            results[f"batch{batch}"] = measure(functions, vocabulary, args, batch)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
