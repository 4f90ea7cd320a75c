"""``PeterRecTrainerExecutor``: TFX's GenericExecutor plus the vocabulary folders."""

from tfx.components.trainer import executor as trainer_executor

from peterrec.pipeline.components.common import ITEM_VOCABULARY_KEY, TASK_VOCABULARY_KEY, single


class PeterRecTrainerExecutor(trainer_executor.GenericExecutor):
    """TFX's GenericExecutor that also hands the vocabulary folders to the run_fn.

    ``fn_args.custom_config["item_vocabulary"]`` / ``["task_vocabulary"]`` are the uris of the
    Vocabulary artifacts (folders holding ``vocabulary.json``) when those inputs are given:
    a standard Trainer has no way to pass artifacts other than its own inputs to ``run_fn``.
    """

    def _GetFnArgs(self, input_dict, output_dict, exec_properties):  # pylint: disable=invalid-name
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        custom = dict(fn_args.custom_config or {})
        for key in (ITEM_VOCABULARY_KEY, TASK_VOCABULARY_KEY):
            if input_dict.get(key):
                custom[key] = single(input_dict[key], key).uri
        fn_args.custom_config = custom
        return fn_args
