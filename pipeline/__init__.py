"""The TFX pipeline of peterrec: ingestion, validation, pretraining, per-task fine-tuning,
evaluation against a baseline, assembly of one multi-task serving model, push.

- ``peterrec.pipeline.config``: the one validated config file (JSON or YAML), its section
  types in ``config_schema`` and the generic type checker in ``typed``;
- ``peterrec.pipeline.components``: one folder per component (``component.py`` +
  ``executor.py``): TaskEvaluator, ServingModelAssembler, the serving Pusher, the strict
  ExampleValidator, the PeterRec Trainer and the local StatisticsGen;
- ``peterrec.pipeline.pipeline``: ``create_pipeline(config, pipeline_root, ...)``;
- ``peterrec.pipeline.local_runner`` / ``kubeflow_runner``: run it locally or compile it;
- ``peterrec.pipeline.cli``: ``peterrec run | compile | tensorboard | demo``.

Nothing here is imported by the other rooms.
"""
