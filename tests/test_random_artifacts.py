"""Tests of peterrec.serving.random_artifacts: random-weight artifacts in the real formats."""

import numpy as np

import peterrec  # noqa: F401
from peterrec.serving import random_artifacts


def test_left_padded_ids_follow_the_trainer_layout():
    vocabulary = random_artifacts.item_vocabulary(10)
    rows = [["item1", "", "zzz"], ["item%d" % n for n in range(6)], ["<pad>"]]
    ids = random_artifacts.left_padded_ids(vocabulary, rows, max_len=4)
    assert ids.dtype == np.int32 and ids.shape == (3, 4)
    assert ids[0].tolist() == [0, 0, vocabulary.lookup("item1"), 3]
    assert ids[1].tolist() == [vocabulary.lookup("item%d" % n) for n in range(2, 6)]
    assert ids[2].tolist() == [0, 0, 0, 3]


def test_random_rows_draw_from_the_vocabulary():
    vocabulary = random_artifacts.item_vocabulary(10)
    rows = random_artifacts.random_item_rows(vocabulary, 20, min_len=2, max_len=5, seed=1, unknown_rate=0.3)
    assert len(rows) == 20 and all(2 <= len(row) <= 5 for row in rows)
    assert any(item not in vocabulary for row in rows for item in row)
    assert rows == random_artifacts.random_item_rows(vocabulary, 20, min_len=2, max_len=5, seed=1, unknown_rate=0.3)


def test_written_artifacts_load_onto_their_backbone(tmp_path):
    from peterrec.trainer import artifacts

    made = random_artifacts.write_random_artifacts(
        str(tmp_path), [random_artifacts.TaskSpec("genre", "classification", "peterrec-serial", num_classes=3,
                                                   bottleneck=2)],
        num_items=12, embedding_dim=4, dilations=(1, 2))
    backbone, _, vocabulary = artifacts.load_backbone(made.backbone_dir)
    model, metadata = artifacts.load_patch_artifact(made.task_dirs["genre"], backbone, vocabulary)
    assert metadata.vocabulary().tokens == ("class0", "class1", "class2")
    ids = random_artifacts.left_padded_ids(vocabulary, [["item1", "item2"]], max_len=3)
    np.testing.assert_allclose(model(ids).numpy(), made.task_models["genre"](ids).numpy(), atol=1e-6)
    # the patch is not the identity: the random weights moved the zero-initialised up-projections
    plain = backbone(ids).numpy()
    patched = model.backbone.encode(backbone.embed(ids), ids != 0, adapters=model.patches.block_patches).numpy()
    assert not np.allclose(patched, plain)
