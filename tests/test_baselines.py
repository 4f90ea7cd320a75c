"""Fast checks of the reference baselines (benchmarks/baselines.py) on tiny generated data."""

import importlib.util
import os

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "baselines.py")
_spec = importlib.util.spec_from_file_location("peterrec_benchmark_baselines", _PATH)
baselines = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(baselines)

NUM_RESERVED_ITEMS = 4
NUM_RESERVED_TARGETS = 1


def _profile_users(n_users: int, seed: int):
    """Users of two classes; class c prefers items of its own half of the catalogue."""
    rng = np.random.default_rng(seed)
    items = np.arange(NUM_RESERVED_ITEMS, NUM_RESERVED_ITEMS + 40)
    sequences, labels = [], []
    for _ in range(n_users):
        label = int(rng.integers(0, 2))
        own = items[:20] if label == 0 else items[20:]
        picks = np.where(rng.random(8) < 0.8, rng.choice(own, 8), rng.choice(items, 8))
        sequences.append([int(i) for i in picks])
        labels.append(label)
    return sequences, labels


def _two_domain_users(n_users: int, seed: int):
    """Source items 4..23 and target ids 1..20: taste group g (0..3) likes source items
    4+5g..8+5g and target ids 1+5g..5+5g, so co-occurrence predicts the target items."""
    rng = np.random.default_rng(seed)
    sequences, targets = [], []
    for _ in range(n_users):
        group = int(rng.integers(0, 4))
        source = NUM_RESERVED_ITEMS + 5 * group + rng.integers(0, 5, size=6)
        target = NUM_RESERVED_TARGETS + 5 * group + rng.integers(0, 5, size=2)
        sequences.append([int(i) for i in source])
        targets.append([int(t) for t in target])
    return sequences, targets


def test_majority_class_predicts_the_most_frequent_training_label():
    result = baselines.majority_class([1, 1, 0, 2, 1], [1, 0, 0, 1])
    assert result["class"] == 1
    assert result["accuracy"] == pytest.approx(0.5)
    # F1 of class 1 = 2*2/(2*2+2+0) = 2/3; class 0 never predicted -> 0; mean over {0, 1}.
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_bag_of_items_is_binary_and_row_normalised():
    matrix = baselines.bag_of_items([[4, 4, 5], [6]], vocab_size=8).toarray()
    assert matrix.shape == (2, 8)
    np.testing.assert_allclose(matrix[0, [4, 5]], [1 / np.sqrt(2)] * 2)
    np.testing.assert_allclose(matrix[1, 6], 1.0)
    raw = baselines.bag_of_items([[4, 4, 5]], vocab_size=8, normalise=False).toarray()
    assert raw[0, 4] == 1.0 and raw.sum() == 2.0


def test_logistic_regression_learns_a_profile_that_majority_cannot():
    train, test, evaluation = _profile_users(300, 0), _profile_users(200, 1), _profile_users(100, 2)
    result = baselines.classification_baselines(train, test, vocab_size=44, eval_split=evaluation)
    assert result["logreg_all"]["accuracy"] > 0.85
    assert result["majority"]["accuracy"] < 0.65
    assert result["logreg_all"]["C"] in baselines.C_VALUES
    assert "logreg_last" not in result  # only with a context


def _early_signal_users(n_users: int, seed: int, length: int = 12):
    """The class shows only in a user's first 3 items; the rest are shared noise."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for _ in range(n_users):
        label = int(rng.integers(0, 2))
        early = NUM_RESERVED_ITEMS + 10 * label + rng.integers(0, 10, size=3)
        late = NUM_RESERVED_ITEMS + 20 + rng.integers(0, 20, size=length - 3)
        sequences.append([int(i) for i in np.concatenate([early, late])])
        labels.append(label)
    return sequences, labels


def test_the_last_items_bag_reads_only_the_last_items():
    assert baselines.last_items([[1, 2, 3, 4], [5]], 2) == [[3, 4], [5]]
    assert baselines.last_items([[1, 2, 3]], None) == [[1, 2, 3]]
    train, test, evaluation = _early_signal_users(300, 0), _early_signal_users(200, 1), _early_signal_users(100, 2)
    result = baselines.classification_baselines(train, test, vocab_size=44, eval_split=evaluation, context=9)
    assert result["logreg_all"]["accuracy"] > 0.9  # the whole history holds the signal
    assert result["logreg_last"]["accuracy"] < 0.7  # the last 9 items do not
    assert result["logreg_last"]["context"] == 9


def test_c_is_chosen_on_the_eval_users_never_on_the_test_users():
    train, test, evaluation = _profile_users(200, 0), _profile_users(150, 1), _profile_users(150, 2)
    c_values = (1e-4, 100.0)  # C = 1e-4 predicts one class for everyone; C = 100 learns the profile
    clean = baselines.logistic_regression(train, test, 44, eval_split=evaluation, c_values=c_values)
    assert clean["C"] == 100.0
    # The choice is the arg-max of the eval accuracies it reports ...
    scores = {float(c): v for c, v in clean["eval_accuracy_by_c"].items()}
    assert clean["C"] == max(scores, key=lambda c: (scores[c], -c))
    # ... does not move when only the test labels change ...
    scrambled = (test[0], list(1 - np.asarray(test[1])))
    assert baselines.logistic_regression(train, scrambled, 44, eval_split=evaluation, c_values=c_values)["C"] == 100.0
    # ... and follows the eval users: with eval labels flipped, learning the profile scores worst there.
    flipped = (evaluation[0], list(1 - np.asarray(evaluation[1])))
    moved = baselines.logistic_regression(train, test, 44, eval_split=flipped, c_values=c_values)
    assert moved["C"] == 1e-4
    assert moved["accuracy"] < clean["accuracy"]  # measured on the same test users


def test_linear_probe_standardises_and_picks_c_on_eval():
    rng = np.random.default_rng(0)

    def users(n):
        labels = rng.integers(0, 2, n)
        features = rng.normal(size=(n, 6)) * 10.0 + 1000.0
        features[:, 0] += 40.0 * labels  # one informative feature on a large offset and scale
        return features, labels

    train, test, evaluation = users(300), users(200), users(100)
    result = baselines.linear_probe(train, test, eval_split=evaluation, c_values=(1e-5, 1.0))
    assert result["C"] == 1.0 and result["accuracy"] > 0.9
    flipped = (evaluation[0], 1 - evaluation[1])
    assert baselines.linear_probe(train, test, eval_split=flipped, c_values=(1e-5, 1.0))["C"] == 1e-5


def test_evaluate_ranking_skips_padding_and_counts_pairs():
    vocab = 6  # reserved id 0, real ids 1..5

    def perfect_for_first(sequences):
        scores = np.zeros((len(sequences), vocab))
        scores[:, 3] = 1.0
        return scores

    result = baselines.evaluate_ranking(perfect_for_first, [[4], [5]], [[3, 0], [2]], vocab, 1)
    assert result["pairs"] == 2
    # Target 3 is ranked 1st; target 2 ties with ids 1, 2, 4, 5 below id 3 -> rank 5.
    assert result["hr@10"] == pytest.approx(1.0)
    assert result["mrr@5"] == pytest.approx((1.0 + 1 / 5) / 2)


def test_popularity_scores_training_counts():
    model = baselines.Popularity(5, 1).fit([[1, 2, 2], [2, 0]])
    np.testing.assert_array_equal(model.counts, [0, 1, 3, 0, 0])
    np.testing.assert_array_equal(model.scores([[7], [8]])[1], [0, 1, 3, 0, 0])


def test_item_knn_beats_popularity_when_tastes_carry_over():
    train, test = _two_domain_users(400, 0), _two_domain_users(100, 1)
    result = baselines.cold_start_baselines(train, test, item_vocab_size=24, target_vocab_size=21,
                                            num_reserved_targets=NUM_RESERVED_TARGETS,
                                            eval_split=_two_domain_users(100, 2), k_values=(3, None))
    knn, popularity = result["item_knn"], result["popularity"]
    # Each group owns 5 of 20 targets, so kNN puts all of a user's targets in its top 5.
    assert knn["hr@10"] == pytest.approx(1.0)
    assert knn["mrr@5"] > popularity["mrr@5"] + 0.2
    # 99 negatives drawn with replacement from 19 ids repeat the user's other targets: sampled
    # ranks need not be better than full ranks here, only valid.
    assert 0.0 < knn["sampled_mrr@5"] <= 1.0
    assert set(knn) >= {"hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_ndcg@10", "sampled_mrr@5"}


def test_item_knn_keeps_k_neighbours_per_target():
    sequences, targets = _two_domain_users(200, 4)
    knn = baselines.ItemKNN(24, 21, NUM_RESERVED_TARGETS, k=2).fit(sequences, targets)
    assert np.all(np.count_nonzero(knn.similarity, axis=0) <= 2 + 3)  # k plus ties at the cut-off
    assert np.all(knn.similarity[:, 0] == 0.0)
    with pytest.raises(RuntimeError):
        baselines.ItemKNN(24, 21, 1).scores([[4]])
