"""``peterrec pretrain`` and ``peterrec finetune``: the training loops from the command line.

Only argparse is imported here; TensorFlow and the trainer load inside the handlers, so
``peterrec --help`` stays fast. Each command prints the final metrics as JSON on stdout
(progress goes to stdout before it) and exits 0, or prints ``error: ...`` to stderr and exits 1
on bad input (missing files, vocabulary mismatches, invalid settings).

    peterrec pretrain --examples EX --vocabulary VOCAB --output RUN [--epochs 10 --dim 64
        --dilations 1,2,4,8,16,32,64,128 --objective next_item|cloze --softmax full|sampled ...]
    peterrec finetune --backbone RUN/export --examples TASK_EX --task-name gender
        --kind classification --strategy peterrec-serial --output FT [--task-vocabulary DIR ...]
"""

import argparse
import json
import sys

STRATEGY_CHOICES = ("peterrec-serial", "peterrec-parallel", "iak", "fine-all", "fine-cls", "fine-last",
                    "peter-zero", "peterrec+items")


def _dilations(text: str):
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"dilations must be comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("dilations must list at least one value")
    return values


def _add_loop_arguments(parser, defaults) -> None:
    """The training-loop flags; ``defaults`` is the config class, whose defaults the flags show."""
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help=f"training epochs (default {defaults.epochs})")
    parser.add_argument("--batch-size", type=int, default=64, help="sequences per batch (default 64)")
    parser.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=defaults.learning_rate,
                        help=f"Adam learning rate (default {defaults.learning_rate:g})")
    parser.add_argument("--max-len", type=int, default=defaults.max_len,
                        help=f"context: most recent items the model reads per sequence (default {defaults.max_len})")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--patience", type=int, default=defaults.early_stopping_patience,
                        help="early stopping: epochs without improvement of --monitor "
                             f"(0: off; default {defaults.early_stopping_patience})")
    parser.add_argument("--monitor", default=None, help="eval metric for early stopping and the best epoch")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="training steps per epoch (default: one pass)")
    parser.add_argument("--checkpoint-every-steps", type=int, default=defaults.checkpoint_every_steps,
                        help="also checkpoint every N steps within an epoch, so a killed run loses at most N "
                             f"steps (0: only per epoch; default {defaults.checkpoint_every_steps})")
    parser.add_argument("--deterministic", action="store_true",
                        help="deterministic ops (tf.config.experimental.enable_op_determinism): an interrupted "
                             "and resumed run ends with the same weights as an uninterrupted one")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress output")


def _config_defaults(command: str):
    """The defaults of a loop's config, read without importing TensorFlow (the configs are plain)."""
    import dataclasses
    import types

    if command == "pretrain":
        from peterrec.trainer.pretrain import PretrainConfig as config_class
    else:
        from peterrec.trainer.finetune import FinetuneConfig as config_class
    return types.SimpleNamespace(**{f.name: f.default for f in dataclasses.fields(config_class)
                                    if f.default is not dataclasses.MISSING})


def register(subparsers) -> None:
    """Adds ``pretrain`` and ``finetune`` to the ``peterrec`` parser."""
    pretrain = subparsers.add_parser(
        "pretrain", help="pretrain a NextItNet / GRec backbone on behaviour sequences",
        description="Pretrain the backbone (next-item or cloze objective), with a checkpoint per epoch "
        "and every --checkpoint-every-steps steps (rerun the same command to resume), TensorBoard logs under OUTPUT/logs and the backbone export "
        "under OUTPUT/export.")
    pretrain.add_argument("--examples", required=True, help="Examples folder (Split-train/, Split-eval/)")
    pretrain.add_argument("--vocabulary", required=True, help="item vocabulary folder (or vocabulary.json)")
    pretrain.add_argument("--output", required=True, help="run folder (checkpoints, logs, export, metrics.json)")
    pretrain.add_argument("--export", default=None, help="where to write the backbone export (default OUTPUT/export)")
    pretrain.add_argument("--dim", type=int, default=64, help="embedding and conv width d (default 64)")
    pretrain.add_argument("--dilations", type=_dilations, default=None,
                          help="conv dilations, two per residual block (default 1,2,4,8,16,32,64,128: a "
                               "receptive field of 511 items with kernel 3)")
    pretrain.add_argument("--kernel-size", type=int, default=3, help="conv kernel width (default 3)")
    pretrain.add_argument("--dropout", type=float, default=0.0, help="dropout in the blocks (default 0)")
    pretrain.add_argument("--objective", choices=("next_item", "cloze"), default="next_item",
                          help="next_item (causal NextItNet) or cloze (non-causal GRec encoder)")
    pretrain.add_argument("--softmax", choices=("full", "sampled"), default="full", help="softmax (default full)")
    pretrain.add_argument("--num-sampled", type=int, default=None,
                          help="negatives per step for the sampled softmax (default 20%% of the items)")
    pretrain.add_argument("--mask-rate", type=float, default=0.3, help="cloze: share of masked positions")
    pretrain.add_argument("--evaluation", choices=("leave_one_out", "users"), default="leave_one_out",
                          help="leave_one_out (default): every split's users train on their history less the last "
                               "two items, the one before last validates, the last tests; users: the eval split's "
                               "users are held out whole")
    _add_loop_arguments(pretrain, _config_defaults("pretrain"))
    pretrain.set_defaults(handler=_pretrain)

    finetune = subparsers.add_parser(
        "finetune", help="fine-tune one task on a backbone export with patches (or a baseline strategy)",
        description="Fine-tune one downstream task on a pretrained backbone export and write its patch "
        "artifact (OUTPUT/patch) and metrics (OUTPUT/metrics.json). Rerun the same command to resume.")
    finetune.add_argument("--backbone", required=True, help="backbone export folder (from peterrec pretrain)")
    finetune.add_argument("--examples", required=True, help="task Examples folder (Split-train/, -eval/, -test/)")
    finetune.add_argument("--task-name", required=True, help="task name (also its serving signature)")
    finetune.add_argument("--kind", choices=("classification", "cold_start"), required=True, help="task kind")
    finetune.add_argument("--strategy", choices=STRATEGY_CHOICES, default="peterrec-serial",
                          help="fine-tuning strategy (default peterrec-serial)")
    finetune.add_argument("--output", required=True, help="run folder (checkpoints, logs, patch, metrics.json)")
    finetune.add_argument("--patch-dir", default=None, help="where to write the patch artifact (default OUTPUT/patch)")
    finetune.add_argument("--task-vocabulary", default=None,
                          help="label (classification) or target (cold-start) vocabulary folder; sets --num-outputs")
    finetune.add_argument("--item-vocabulary", default=None,
                          help="item vocabulary the task examples were built with (checked against the backbone)")
    finetune.add_argument("--num-outputs", type=int, default=2,
                          help="classes or target items incl. reserved ids (default 2; from --task-vocabulary)")
    finetune.add_argument("--readout", choices=("tcl", "mean", "tcl+mean"), default="tcl+mean",
                          help="user vector: [TCL] position, mean over items, or both (default tcl+mean)")
    finetune.add_argument("--readout-norm", action=argparse.BooleanOptionalAction, default=True,
                          help="a task-owned LayerNorm on each read-out part before the head (default on)")
    finetune.add_argument("--head-embedding-dim", type=int, default=0,
                          help="cold start: width of the target-item table (default 0 = user-vector width)")
    finetune.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine",
                          help="learning-rate schedule over the epochs (default cosine)")
    finetune.add_argument("--bottleneck", type=int, default=16, help="patch / IAK bottleneck size (default 16)")
    finetune.add_argument("--item-rank", type=int, default=8,
                          help="peterrec+items: rank of the task-owned item table [vocab, rank] read beside "
                               "the patched read-out (default 8)")
    finetune.add_argument("--placement", choices=("serial", "parallel"), default=None,
                          help="adapter placement for iak / peter-zero (default serial); peterrec-* strategies "
                               "fix it, and a contradicting value is an error")
    finetune.add_argument("--no-layer-norm", action="store_true",
                          help="do not train task copies of each block's second LayerNorm")
    finetune.add_argument("--fine-last-convs", type=int, choices=(1, 2), default=2,
                          help="fine-last: how many last conv layers train (default 2)")
    finetune.add_argument("--head-hidden-units", type=int, default=0, help="hidden ReLU units in the class head")
    finetune.add_argument("--softmax", choices=("full", "sampled"), default="full", help="cold-start softmax")
    _add_loop_arguments(finetune, _config_defaults("finetune"))
    finetune.set_defaults(handler=_finetune)


def _loop_fields(args) -> dict:
    fields = {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "max_len": args.max_len, "seed": args.seed, "early_stopping_patience": args.patience,
              "steps_per_epoch": args.steps_per_epoch, "checkpoint_every_steps": args.checkpoint_every_steps,
              "deterministic": args.deterministic, "verbose": 0 if args.quiet else 2}
    if args.monitor:
        fields["monitor"] = args.monitor
    return fields


def _report(metrics) -> int:
    print(json.dumps(metrics, indent=2, sort_keys=True, default=str))
    return 0


def _fail(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


def pretrain_config_from_args(args):
    """The PretrainConfig that ``peterrec pretrain`` runs with these arguments."""
    from peterrec.trainer.config import DEFAULT_DILATIONS, BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig

    backbone = BackboneConfig(vocab_size=0, embedding_dim=args.dim, dilations=args.dilations or DEFAULT_DILATIONS,
                              kernel_size=args.kernel_size, causal=args.objective == "next_item",
                              dropout=args.dropout)
    return PretrainConfig(backbone=backbone, objective=args.objective, softmax=args.softmax,
                          num_sampled=args.num_sampled, mask_rate=args.mask_rate, evaluation=args.evaluation,
                          **_loop_fields(args)).validate()


def finetune_config_from_args(args):
    """The FinetuneConfig that ``peterrec finetune`` runs with these arguments."""
    from peterrec.trainer.config import AdapterConfig, TaskConfig
    from peterrec.trainer.finetune import FinetuneConfig

    adapter = AdapterConfig(placement=args.placement, bottleneck=args.bottleneck)
    task = TaskConfig(name=args.task_name, kind=args.kind, num_outputs=args.num_outputs, strategy=args.strategy,
                      readout=args.readout, readout_norm=args.readout_norm, adapter=adapter,
                      train_layer_norm=not args.no_layer_norm, fine_last_convs=args.fine_last_convs,
                      head_hidden_units=args.head_hidden_units, head_embedding_dim=args.head_embedding_dim,
                      softmax=args.softmax, item_rank=args.item_rank)
    return FinetuneConfig(task=task, task_vocabulary=args.task_vocabulary, item_vocabulary=args.item_vocabulary,
                          lr_schedule=args.lr_schedule, **_loop_fields(args)).validate()


def _pretrain(args) -> int:
    try:
        config = pretrain_config_from_args(args)
        from peterrec.trainer.pretrain import pretrain

        return _report(pretrain(args.examples, args.vocabulary, args.output, config, export_dir=args.export))
    except (ValueError, FileNotFoundError) as error:  # vocabulary, data, artifact and config errors
        return _fail(error)


def _finetune(args) -> int:
    try:
        config = finetune_config_from_args(args)
        from peterrec.trainer.finetune import finetune

        return _report(finetune(args.backbone, args.examples, args.output, config, patch_dir=args.patch_dir))
    except (ValueError, FileNotFoundError) as error:
        return _fail(error)
