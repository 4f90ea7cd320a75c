"""Leave-one-out next-item evaluation: every user's last item is the test target, the one before
it the validation target, ranked against every item (no sampling).

``LeaveOneOutModel`` is a ``PretrainingModel`` whose ``evaluate`` scores only the last position
of each sequence (``windows.leave_one_out_dataset`` puts the target there): the loss of that one
prediction, and HR@10, NDCG@10 and MRR@10. The positions before it are the user's training
data, so they never enter a validation or test figure. ``evaluate_leave_one_out`` gives the
same figures for a backbone outside a training run (benchmarks, exports).
"""

from typing import Dict, Sequence, Union

import tensorflow as tf
import tf_keras as keras

from peterrec.trainer import metrics as metrics_lib
from peterrec.trainer.objectives import PretrainingModel, _no_autograph


class LeaveOneOutModel(PretrainingModel):
    """Backbone + pretraining objective, evaluated on the last position of each sequence only.

    Training is ``PretrainingModel``'s (every counted position of a window); ``evaluate`` reports
    ``loss`` (full-softmax cross-entropy of the last item, averaged over users), ``hr@k``,
    ``ndcg@k`` and ``mrr@k`` of that item by full ranking.
    """

    def __init__(self, backbone, objective, k: int = 10, **kwargs):
        super().__init__(backbone, objective, k=k, **kwargs)
        self.mrr = metrics_lib.MRR(self.k)

    @property
    def metrics(self):
        return [self.loss_tracker, self.hit_rate, self.ndcg, self.mrr]

    @_no_autograph
    def test_step(self, data):
        item_ids = tf.convert_to_tensor(self._ids(data))
        logits = self.objective.last_item_logits(self.backbone, item_ids, training=False)
        targets = item_ids[:, -1]
        per_user = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        users = tf.shape(targets)[0]
        self.loss_tracker.update_state(tf.math.divide_no_nan(tf.reduce_sum(per_user), tf.cast(users, tf.float32)),
                                       sample_weight=tf.cast(users, tf.float32))
        for metric in (self.hit_rate, self.ndcg, self.mrr):
            metric.update_state(targets, logits)
        return {m.name: m.result() for m in self.metrics}


def evaluate_leave_one_out(backbone, files: Union[str, Sequence[str]], context: int, split: str = "test",
                           batch_size: int = 256, k: int = 10) -> Dict[str, float]:
    """Leave-one-out figures of a (trained) backbone over the users in ``files``:
    ``{"loss", "hr@k", "ndcg@k", "mrr@k", "users"}`` for the ``"test"`` or ``"validation"`` target."""
    from peterrec.trainer import windows
    from peterrec.trainer.objectives import make_objective

    model = LeaveOneOutModel(backbone, make_objective(backbone), k=k)
    model.compile(optimizer=keras.optimizers.Adam())
    dataset = windows.leave_one_out_dataset(files, batch_size, context, split, vocab_size=backbone.vocab_size)
    users = 0
    for batch in dataset:
        model.test_on_batch(batch, reset_metrics=False)
        users += int(batch["item_ids"].shape[0])
    results = {m.name: float(m.result().numpy()) for m in model.metrics}
    results["users"] = users
    return results

