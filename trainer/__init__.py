"""peterrec.trainer: the NextItNet/GRec backbone, PeterRec patches, IAK adapters, task models,
objectives, metrics and the training loops (pretraining and per-task fine-tuning).

Submodules are imported explicitly (``from peterrec.trainer import backbone``) so that
importing this package stays light and does not load TensorFlow.
"""
