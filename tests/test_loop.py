"""Tests of peterrec.trainer.loop: run bookkeeping and the errors a user sees."""

import pytest

import peterrec  # noqa: F401
from peterrec.components.vocabulary import Vocabulary, VocabularyMismatchError
from peterrec.trainer import data, loop


def _vocabulary():
    return Vocabulary.from_counts("item", {f"i{n}": 10 - n for n in range(5)})


def _fail_on(values, limit, what):
    import tensorflow as tf

    data.check_ids_below(tf.constant(values), limit, what)


def test_an_item_id_outside_the_vocabulary_blames_the_vocabulary():
    with pytest.raises(VocabularyMismatchError, match=r"do not fit the vocabulary .*item id >= 3"):
        with loop.vocabulary_errors_explained(_vocabulary()):
            _fail_on([1, 5], 3, "item")


@pytest.mark.parametrize("what", ["label", "target item"])
def test_a_task_id_outside_the_outputs_asks_for_the_task_vocabulary(what):
    with pytest.raises(VocabularyMismatchError, match=rf"{what} id >= 2 .*--task-vocabulary DIR"):
        with loop.vocabulary_errors_explained(_vocabulary()):
            _fail_on([0, 4], 2, what)


def test_other_errors_pass_through():
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError, match="something else"):
        with loop.vocabulary_errors_explained(_vocabulary()):
            tf.debugging.assert_less(tf.constant(3), tf.constant(1), message="something else")


def test_a_run_config_that_differs_cannot_be_resumed(tmp_path):
    first = {"kind": "finetune", "task_config": {"name": "age"}, "seed": 1}
    assert loop.check_or_write_run_config(str(tmp_path), first, ["task_config"]) is False
    assert loop.check_or_write_run_config(str(tmp_path), {**first, "seed": 2}, ["task_config"]) is True
    with pytest.raises(loop.RunMismatchError, match="task_config"):
        loop.check_or_write_run_config(str(tmp_path), {**first, "task_config": {"name": "gender"}}, ["task_config"])
