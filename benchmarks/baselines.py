"""Reference baselines for the transfer table: no pretraining, no neural network.

Classification (user attribute tasks):

- ``majority_class``: always predicts the most frequent training label.
- ``logistic_regression``: multinomial logistic regression (scikit-learn) on a bag of items
  (binary user x item matrix, rows L2-normalised); the inverse regularisation strength C is
  picked by ``choose_c`` on the eval (validation) users only, which never sees the test users.
  The transfer table runs it on a bag of ALL of a user's items and on a bag of the last L
  items (``last_items``: what a model with context L reads).
- ``linear_probe``: the same logistic regression on dense, standardised features (the frozen
  backbone's mean hidden state), C again chosen on the eval users.

Cold-start (target-domain items for users with no target history):

- ``popularity``: scores every target item by its number of training (user, target) pairs.
- ``item_knn``: item co-occurrence kNN. On training users, counts how often source item i and
  target item j occur for the same user, turns the counts into cosine similarities
  ``C[i, j] / sqrt(n_i * n_j)``, keeps the ``k`` most similar source items per target item, and
  scores target j for a user as the sum of the similarities of the user's source items.

Ranking follows ``peterrec.trainer.metrics`` exactly, so baselines and fine-tuned models are
comparable: every (user, target) pair is one query; full ranking ranks the target among all
real target ids (ids below ``num_reserved`` are never candidates; ties count against the
scorer, so the rank is the number of real ids scoring at least as high); sampled ranking ranks
it among itself and 99 negatives drawn uniformly (with replacement) from the other real ids.
Reported: HR@10, NDCG@10, MRR@5, full and sampled (``sampled_`` prefix).

The algorithms work on plain Python/numpy data (lists of item-id sequences); ``load_files`` /
``load_split`` read a task's TFRecords as stored (whole histories unless ``max_len`` is given,
oldest first; TensorFlow imported lazily), ``last_items`` cuts them to what a model with
context L reads.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from peterrec.trainer import metrics

RANKING_METRICS = (("hr", 10), ("ndcg", 10), ("mrr", 5))


# ----------------------------------------------------------------------------- data


def load_files(files, kind: str, max_len: Optional[int] = None) -> Dict[str, list]:
    """Reads task examples from TFRecord files: ``{"item_ids", "labels" | "targets", "user_ids"}``.

    Each item list is the user's sequence as stored (oldest first, whole history), or its most
    recent ``max_len`` items when given. ``kind``: "classification" (labels: ints) or
    "cold_start" (targets: lists of target ids).
    """
    import tensorflow as tf

    from peterrec.components import example_format
    from peterrec.trainer import data

    spec = example_format.feature_spec(with_label=kind == "classification", with_targets=kind == "cold_start")
    files = data.expand_file_patterns(files)
    dataset = tf.data.TFRecordDataset(files, compression_type=example_format.COMPRESSION).batch(1024)
    items: List[List[int]] = []
    labels: list = []
    users: List[str] = []
    for serialized in dataset:
        parsed = tf.io.parse_example(serialized, spec)
        for row in parsed[example_format.ITEM_IDS].to_list():
            row = [int(i) for i in row]
            items.append(row[-max_len:] if max_len else row)
        users.extend(u.decode("utf-8") for u in parsed[example_format.USER_ID].numpy())
        if kind == "classification":
            labels.extend(int(v) for v in parsed[example_format.LABEL].numpy())
        else:
            labels.extend([int(t) for t in row] for row in parsed[example_format.TARGET_ITEM_IDS].to_list())
    key = "labels" if kind == "classification" else "targets"
    return {"item_ids": items, key: labels, "user_ids": users}


def load_split(examples_dir: str, split: str, kind: str, max_len: Optional[int] = None) -> Dict[str, list]:
    """``load_files`` on one split (``Split-<split>/``) of a task's examples."""
    from peterrec.trainer import data

    return load_files(data.split_files(examples_dir, split), kind, max_len)


def last_items(sequences: Sequence[Sequence[int]], length: Optional[int]) -> List[List[int]]:
    """The most recent ``length`` items of each sequence (all of them when ``length`` is None)."""
    return [list(s[-length:]) if length else list(s) for s in sequences]


def bag_of_items(sequences: Sequence[Sequence[int]], vocab_size: int, normalise: bool = True):
    """A sparse binary user x item matrix (CSR), rows L2-normalised when ``normalise``."""
    from scipy import sparse

    rows, cols = [], []
    for row, sequence in enumerate(sequences):
        unique = sorted(set(int(i) for i in sequence))
        rows.extend([row] * len(unique))
        cols.extend(unique)
    values = np.ones(len(rows), np.float64)
    matrix = sparse.csr_matrix((values, (rows, cols)), shape=(len(sequences), vocab_size))
    if normalise:
        norms = np.sqrt(np.asarray(matrix.sum(axis=1)).ravel())
        matrix = sparse.diags(1.0 / np.maximum(norms, 1.0)) @ matrix
    return matrix.tocsr()


# ----------------------------------------------------------------------------- classification


def majority_class(train_labels: Sequence[int], test_labels: Sequence[int]) -> Dict[str, float]:
    """Accuracy and macro-F1 of always predicting the most frequent training label."""
    values, counts = np.unique(np.asarray(train_labels), return_counts=True)
    majority = int(values[np.argmax(counts)])
    predictions = np.full(len(test_labels), majority)
    return {"accuracy": metrics.np_accuracy(test_labels, predictions), "macro_f1": metrics.np_macro_f1(test_labels, predictions),
            "class": majority}


C_VALUES = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def choose_c(fit, train, eval_split, c_values: Sequence[float] = C_VALUES) -> Tuple[float, Dict[float, float]]:
    """The C with the best eval accuracy (ties: the smaller C) and every C's eval accuracy.

    ``fit(c, x, y)`` returns a fitted model; ``train`` and ``eval_split`` are (x, y) pairs. The
    test users are not an argument: the choice cannot depend on them.
    """
    if eval_split is None or len(c_values) < 2:
        return float(c_values[0]), {}
    scores = {float(c): metrics.np_accuracy(eval_split[1], fit(c, *train).predict(eval_split[0])) for c in c_values}
    return max(scores, key=lambda c: (scores[c], -c)), scores


def logistic_regression(train: Tuple[Sequence[Sequence[int]], Sequence[int]],
                        test: Tuple[Sequence[Sequence[int]], Sequence[int]], vocab_size: int,
                        eval_split: Optional[Tuple[Sequence[Sequence[int]], Sequence[int]]] = None,
                        c_values: Sequence[float] = C_VALUES, seed: int = 0) -> Dict[str, Any]:
    """Multinomial logistic regression on the bag of items; C chosen on ``eval_split`` only.

    train / test / eval_split: (item-id sequences, labels). Without an eval split the first of
    ``c_values`` is used. Returns test accuracy, macro-F1, the chosen C and the eval accuracy of
    every C tried (``eval_accuracy_by_c``).
    """
    from sklearn.linear_model import LogisticRegression

    def fit(c: float, x, y):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)

    bag = (bag_of_items(train[0], vocab_size), np.asarray(train[1]))
    evaluation = None if eval_split is None else (bag_of_items(eval_split[0], vocab_size), np.asarray(eval_split[1]))
    best_c, scores = choose_c(fit, bag, evaluation, c_values)
    y_test = np.asarray(test[1])
    predictions = fit(best_c, *bag).predict(bag_of_items(test[0], vocab_size))
    return {"accuracy": metrics.np_accuracy(y_test, predictions), "macro_f1": metrics.np_macro_f1(y_test, predictions), "C": best_c,
            "eval_accuracy_by_c": {str(c): v for c, v in scores.items()}}


def linear_probe(train: Tuple[np.ndarray, Sequence[int]], test: Tuple[np.ndarray, Sequence[int]],
                 eval_split: Optional[Tuple[np.ndarray, Sequence[int]]] = None,
                 c_values: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0), seed: int = 0) -> Dict[str, Any]:
    """Logistic regression on dense features standardised on the train users; C chosen on
    ``eval_split`` only. Returns test accuracy, macro-F1, C and the eval accuracy of every C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(np.asarray(train[0]))

    def fit(c: float, x, y):
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)

    scaled = (scaler.transform(np.asarray(train[0])), np.asarray(train[1]))
    evaluation = None if eval_split is None else (scaler.transform(np.asarray(eval_split[0])),
                                                  np.asarray(eval_split[1]))
    best_c, scores = choose_c(fit, scaled, evaluation, c_values)
    y_test = np.asarray(test[1])
    predictions = fit(best_c, *scaled).predict(scaler.transform(np.asarray(test[0])))
    return {"accuracy": metrics.np_accuracy(y_test, predictions), "macro_f1": metrics.np_macro_f1(y_test, predictions), "C": best_c,
            "eval_accuracy_by_c": {str(c): v for c, v in scores.items()}}


# ----------------------------------------------------------------------------- ranking


def evaluate_ranking(score_fn, sequences: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                     vocab_size: int, num_reserved: int, num_candidates: int = 100, seed: int = 0,
                     batch_size: int = 256) -> Dict[str, float]:
    """HR@10, NDCG@10, MRR@5 (full and ``sampled_``) over all (user, target) pairs.

    ``score_fn(list of sequences) -> [n, vocab_size]`` scores; targets below ``num_reserved``
    are padding and skipped.
    """
    rng = np.random.default_rng(seed)
    totals = {f"{prefix}{kind}@{k}": 0.0 for prefix in ("", "sampled_") for kind, k in RANKING_METRICS}
    count = 0
    for start in range(0, len(sequences), batch_size):
        chunk = list(sequences[start:start + batch_size])
        scores = np.asarray(score_fn(chunk), np.float64)
        rows, flat = [], []
        for row, user_targets in enumerate(targets[start:start + batch_size]):
            for t in user_targets:
                if t >= num_reserved:
                    rows.append(row)
                    flat.append(int(t))
        if not flat:
            continue
        pair_scores = scores[np.asarray(rows)]
        flat = np.asarray(flat, np.int64)
        full = metrics.np_full_ranks(pair_scores, flat, num_reserved)
        negatives = metrics.np_sample_negatives(rng, flat, vocab_size, num_candidates - 1, num_reserved)
        sampled = metrics.np_sampled_ranks(pair_scores, flat, negatives)
        for kind, k in RANKING_METRICS:
            totals[f"{kind}@{k}"] += float(np.sum(metrics.np_ranking_values(full, kind, k)))
            totals[f"sampled_{kind}@{k}"] += float(np.sum(metrics.np_ranking_values(sampled, kind, k)))
        count += len(flat)
    if count == 0:
        raise ValueError("no (user, target) pair to evaluate")
    result = {name: value / count for name, value in totals.items()}
    result["pairs"] = count
    return result


class Popularity:
    """Scores each target id by its count among the training (user, target) pairs."""

    def __init__(self, vocab_size: int, num_reserved: int):
        self.vocab_size, self.num_reserved = int(vocab_size), int(num_reserved)
        self.counts = np.zeros(self.vocab_size, np.float64)

    def fit(self, targets: Sequence[Sequence[int]]) -> "Popularity":
        """Counts the training targets; returns self."""
        for user_targets in targets:
            for t in user_targets:
                if t >= self.num_reserved:
                    self.counts[int(t)] += 1.0
        return self

    def scores(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """[n, vocab_size]: the same popularity row for every user."""
        return np.tile(self.counts, (len(sequences), 1))


class ItemKNN:
    """Source-item -> target-item co-occurrence kNN (cosine of co-occurrence counts).

    ``k``: neighbours kept per target item (None: all). A small popularity prior (weight
    ``popularity_weight`` on the normalised counts) breaks ties for users whose items never
    co-occur with a target item.
    """

    def __init__(self, item_vocab_size: int, target_vocab_size: int, num_reserved_targets: int,
                 k: Optional[int] = 100, popularity_weight: float = 1e-6):
        self.item_vocab_size, self.target_vocab_size = int(item_vocab_size), int(target_vocab_size)
        self.num_reserved = int(num_reserved_targets)
        self.k = k
        self.popularity_weight = float(popularity_weight)
        self.similarity = None
        self.popularity = None

    def fit(self, sequences: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> "ItemKNN":
        """Builds the [item_vocab, target_vocab] similarity from training users; returns self."""
        users = bag_of_items(sequences, self.item_vocab_size, normalise=False)
        target_lists = [[t for t in ts if t >= self.num_reserved] for ts in targets]
        user_targets = bag_of_items(target_lists, self.target_vocab_size, normalise=False)
        co = np.asarray((users.T @ user_targets).todense(), np.float64)
        item_counts = np.asarray(users.sum(axis=0)).ravel()
        target_counts = np.asarray(user_targets.sum(axis=0)).ravel()
        denominator = np.sqrt(np.outer(item_counts, target_counts))
        similarity = np.divide(co, denominator, out=np.zeros_like(co), where=denominator > 0)
        if self.k is not None and self.k < similarity.shape[0]:
            # Keep each target item's k most similar source items.
            cutoff = -np.partition(-similarity, self.k - 1, axis=0)[self.k - 1]
            similarity = np.where(similarity >= cutoff[None, :], similarity, 0.0)
        similarity[:, :self.num_reserved] = 0.0
        self.similarity = similarity
        self.popularity = target_counts / max(1.0, float(target_counts.max()))
        return self

    def scores(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """[n, target_vocab_size] scores of every target id for each user."""
        if self.similarity is None:
            raise RuntimeError("ItemKNN.scores before fit")
        users = bag_of_items(sequences, self.item_vocab_size, normalise=False)
        return np.asarray(users @ self.similarity) + self.popularity_weight * self.popularity[None, :]


# ----------------------------------------------------------------------------- whole tasks


def classification_baselines(train, test, vocab_size: int, eval_split=None, context: Optional[int] = None,
                             c_values: Sequence[float] = C_VALUES, seed: int = 0) -> Dict[str, Dict]:
    """On (sequences, labels) pairs of whole histories: {"majority": ..., "logreg_all": logistic
    regression on the bag of ALL a user's items, "logreg_last": on the bag of the last ``context``
    items (only when ``context`` is given)}; C chosen on ``eval_split`` for each."""
    results = {"majority": majority_class(train[1], test[1]),
               "logreg_all": logistic_regression(train, test, vocab_size, eval_split=eval_split, c_values=c_values,
                                                 seed=seed)}
    if context:
        def cut(pair):
            return None if pair is None else (last_items(pair[0], context), pair[1])

        results["logreg_last"] = logistic_regression(cut(train), cut(test), vocab_size, eval_split=cut(eval_split),
                                                     c_values=c_values, seed=seed)
        results["logreg_last"]["context"] = int(context)
    return results


def cold_start_baselines(train, test, item_vocab_size: int, target_vocab_size: int, num_reserved_targets: int,
                         eval_split=None, k_values: Sequence[Optional[int]] = (20, 100, None),
                         seed: int = 0) -> Dict[str, Dict]:
    """{"popularity": {...}, "item_knn": {...}} on (sequences, target lists) pairs.

    The kNN's ``k`` is chosen by eval HR@10 when ``eval_split`` is given (else the first value).
    """
    popularity = Popularity(target_vocab_size, num_reserved_targets).fit(train[1])
    results = {"popularity": evaluate_ranking(popularity.scores, test[0], test[1], target_vocab_size,
                                              num_reserved_targets, seed=seed)}
    best_k = k_values[0]
    if eval_split is not None and len(k_values) > 1:
        scores = {}
        for k in k_values:
            knn = ItemKNN(item_vocab_size, target_vocab_size, num_reserved_targets, k=k).fit(*train)
            scores[k] = evaluate_ranking(knn.scores, eval_split[0], eval_split[1], target_vocab_size,
                                         num_reserved_targets, seed=seed)["hr@10"]
        best_k = max(k_values, key=lambda k: scores[k])
    knn = ItemKNN(item_vocab_size, target_vocab_size, num_reserved_targets, k=best_k).fit(*train)
    results["item_knn"] = evaluate_ranking(knn.scores, test[0], test[1], target_vocab_size, num_reserved_targets,
                                           seed=seed)
    results["item_knn"]["k"] = best_k
    return results
