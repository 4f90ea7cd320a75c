"""Configuration dataclasses of the model: backbone, adapters (patches / IAK) and tasks.

Every config has ``to_dict()``/``from_dict()`` (JSON-friendly) and ``validate()``, which raises
``ValueError`` with a clear message. No TensorFlow here, so configs load fast anywhere.

Dilations: ``BackboneConfig.dilations`` lists the dilation of every *conv layer*, two per
residual block, in order. A block of dilation r holds convs of dilation r and 2r (NextItNet's
"[1, 4] per block" notation, docs/method.md section 2). The default ``DEFAULT_DILATIONS`` is four blocks
with conv dilations (1, 2), (4, 8), (16, 32), (64, 128): a receptive field of 511 positions with
kernel 3, so the default context of 200 items (and up to 500) is seen whole by the last position,
at the cost of the paper's (1, 2, 4, 8) x 2, which sees 61.
"""

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from peterrec import typed_config

STRATEGIES = (
    "peterrec-serial",
    "peterrec-parallel",
    "iak",
    "fine-all",
    "fine-cls",
    "fine-last",
    "peter-zero",
    "peterrec+items",
)
# Strategies that graft adapters into a frozen backbone.
ADAPTER_STRATEGIES = ("peterrec-serial", "peterrec-parallel", "iak", "peter-zero", "peterrec+items")
# Strategies that add a task-owned item table beside the read-out (peterrec.trainer.item_knowledge).
ITEM_KNOWLEDGE_STRATEGIES = ("peterrec+items",)
ITEM_POOLINGS = ("mean", "sqrt")
TASK_KINDS = ("classification", "cold_start")
READOUTS = ("tcl", "mean", "tcl+mean")
ADAPTER_KINDS = ("patch", "iak")
PLACEMENTS = ("serial", "parallel")
# What an adapter strategy fixes about its adapters. An AdapterConfig field left unset (None)
# takes the strategy's value, else the default below; a value that contradicts the strategy is
# an error, never silently replaced.
STRATEGY_ADAPTER_FIELDS = {
    "peterrec-serial": {"kind": "patch", "placement": "serial"},
    "peterrec+items": {"kind": "patch", "placement": "serial"},
    "peterrec-parallel": {"kind": "patch", "placement": "parallel"},
    "iak": {"kind": "iak"},
    "peter-zero": {},
}
DEFAULT_ADAPTER_KIND = "patch"
DEFAULT_PLACEMENT = "serial"
# Cold-start training softmax: "full" over all targets; "sampled": the batch's other targets as
# negatives, log-Q corrected (TFRS Retrieval; it replaced a unigram sampler: ColdStartHead).
SOFTMAX_KINDS = ("full", "sampled")
DEFAULT_DILATIONS = (1, 2, 4, 8, 16, 32, 64, 128)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def dataclass_from_dict(cls, data: Mapping[str, Any], path: str = ""):
    """Builds a dataclass from plain data (parsed JSON), checking each key is a field and each
    value has its field's type (``peterrec.typed_config``; errors name the field's path, e.g.
    ``adapter.bottleneck: expected an integer, got '16'``). Range checks stay in ``validate``."""
    data = typed_config.check_object(data, typed_config.fields_of(cls), path or cls.__name__,
                                     required=typed_config.required_of(cls))
    return cls(**data)


@dataclasses.dataclass
class BackboneConfig:
    """Hyper-parameters of the NextItNet (causal) / GRec-encoder (non-causal) backbone.

    vocab_size: number of item ids including the reserved ids (components.ids).
    embedding_dim: width d of the item embeddings and of every conv layer.
    dilations: dilation of each conv layer, two per residual block (see module docstring).
    kernel_size: width of every dilated conv.
    causal: True for NextItNet (left padding, next-item pretraining); False for the GRec
        encoder (symmetric padding, cloze pretraining).
    layer_norm_epsilon: LayerNorm epsilon (1e-8 in the authors' code).
    dropout: dropout rate after each ReLU in the blocks (0 disables).
    """

    vocab_size: int
    embedding_dim: int = 64
    dilations: Tuple[int, ...] = DEFAULT_DILATIONS
    kernel_size: int = 3
    causal: bool = True
    layer_norm_epsilon: float = 1e-8
    dropout: float = 0.0

    def __post_init__(self):
        self.dilations = tuple(int(d) for d in self.dilations)

    @property
    def num_blocks(self) -> int:
        """Number of residual blocks (two conv layers each)."""
        return len(self.dilations) // 2

    @property
    def block_dilations(self) -> Tuple[Tuple[int, int], ...]:
        """The (first conv, second conv) dilations of each block."""
        return tuple((self.dilations[2 * i], self.dilations[2 * i + 1]) for i in range(self.num_blocks))

    def receptive_field(self) -> int:
        """Number of input positions one output position can see (one side, causal)."""
        return 1 + (self.kernel_size - 1) * sum(self.dilations)

    def validate(self) -> "BackboneConfig":
        """Raises ValueError if a value is out of range; returns self."""
        from peterrec.components import ids

        _check(int(self.vocab_size) > ids.NUM_RESERVED,
               f"vocab_size must exceed the {ids.NUM_RESERVED} reserved ids, got {self.vocab_size}")
        _check(int(self.embedding_dim) > 0, f"embedding_dim must be positive, got {self.embedding_dim}")
        _check(len(self.dilations) >= 2 and len(self.dilations) % 2 == 0,
               f"dilations lists two conv dilations per block, so its length must be even and >= 2; "
               f"got {self.dilations}")
        _check(all(d >= 1 for d in self.dilations), f"dilations must be >= 1, got {self.dilations}")
        _check(int(self.kernel_size) >= 1, f"kernel_size must be >= 1, got {self.kernel_size}")
        _check(self.causal or self.kernel_size % 2 == 1,
               f"a non-causal backbone needs an odd kernel_size (symmetric padding), got {self.kernel_size}")
        _check(float(self.layer_norm_epsilon) > 0, "layer_norm_epsilon must be positive")
        _check(0.0 <= float(self.dropout) < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (dilations as a list)."""
        data = dataclasses.asdict(self)
        data["dilations"] = list(self.dilations)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BackboneConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        return dataclass_from_dict(cls, data).validate()


@dataclasses.dataclass
class AdapterConfig:
    """One task's adapters: a PeterRec model patch or an IAK adapter, and where it goes.

    kind: "patch" (docs/method.md section 3) or "iak" (section 6); None = the strategy's kind
        (``STRATEGY_ADAPTER_FIELDS``), else "patch".
    placement: "serial" (after each conv) or "parallel" (beside each conv); None = the
        strategy's placement, else "serial".
    bottleneck: hidden size of the adapter (the patch's bottleneck, IAK's latent size).
    iak_beta: weight of IAK's KL term after warm-up.
    iak_warmup_steps: training steps over which beta grows linearly from 0 to iak_beta.
    """

    kind: Optional[str] = None
    placement: Optional[str] = None
    bottleneck: int = 16
    iak_beta: float = 1e-3
    iak_warmup_steps: int = 500

    def validate(self) -> "AdapterConfig":
        """Raises ValueError if a value is out of range; returns self."""
        _check(self.kind is None or self.kind in ADAPTER_KINDS,
               f"adapter kind must be one of {ADAPTER_KINDS} (or unset), got {self.kind!r}")
        _check(self.placement is None or self.placement in PLACEMENTS,
               f"placement must be one of {PLACEMENTS} (or unset), got {self.placement!r}")
        _check(int(self.bottleneck) >= 1, f"bottleneck must be >= 1, got {self.bottleneck}")
        _check(float(self.iak_beta) >= 0, f"iak_beta must be >= 0, got {self.iak_beta}")
        _check(int(self.iak_warmup_steps) >= 0, f"iak_warmup_steps must be >= 0, got {self.iak_warmup_steps}")
        return self

    def with_defaults(self) -> "AdapterConfig":
        """A copy with unset fields given their defaults; set fields are kept as they are."""
        return dataclasses.replace(self, kind=self.kind or DEFAULT_ADAPTER_KIND,
                                   placement=self.placement or DEFAULT_PLACEMENT).validate()

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AdapterConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        return dataclass_from_dict(cls, data).validate()


@dataclasses.dataclass
class TaskConfig:
    """One downstream task and how it is fine-tuned.

    name: task name (also the serving signature name).
    kind: "classification" (user attribute) or "cold_start" (target-domain items).
    num_outputs: number of classes, or size of the target-item vocabulary incl. reserved ids.
    strategy: one of STRATEGIES.
    readout: user vector: "tcl" (hidden state at an appended task token), "mean" (mean over the
        real positions), "tcl+mean" (both, concatenated).
    readout_norm: pass each read part through a task-owned LayerNorm before the head.
    adapter: the adapter config. An adapter strategy fixes some of its fields
        (``STRATEGY_ADAPTER_FIELDS``): leave them unset; a contradicting value is an error.
    train_layer_norm: patch strategies also train a task-owned copy of each block's second
        LayerNorm (docs/method.md section 3); the shared backbone is never modified.
    fine_last_convs: number of last conv layers trained by "fine-last" (1 or 2).
    head_hidden_units: optional hidden ReLU layer in the classification head (0 = linear).
    head_embedding_dim: cold start: width of the target-item table; 0 = the user-vector width,
        else the user vector is projected to it first (a smaller task for large vocabularies).
    softmax: cold-start loss: "full" softmax over all target items or "sampled".
    item_rank: "peterrec+items": rank r of the task-owned item table [vocab_size, r] read beside
        the patched read-out (``peterrec.trainer.item_knowledge``); unused by other strategies.
    item_pooling: "peterrec+items": how the table's rows of the user's items are pooled,
        "mean" (over the real positions) or "sqrt" (their sum over sqrt(number of real items)).
    """

    name: str
    kind: str = "classification"
    num_outputs: int = 2
    strategy: str = "peterrec-serial"
    readout: str = "tcl+mean"
    readout_norm: bool = True
    adapter: AdapterConfig = dataclasses.field(default_factory=AdapterConfig)
    train_layer_norm: bool = True
    fine_last_convs: int = 2
    head_hidden_units: int = 0
    head_embedding_dim: int = 0
    softmax: str = "full"
    item_rank: int = 8
    item_pooling: str = "mean"

    def __post_init__(self):
        if isinstance(self.adapter, Mapping):
            self.adapter = AdapterConfig.from_dict(self.adapter)

    def effective_adapter(self) -> AdapterConfig:
        """The adapter config the strategy uses: unset fields take the strategy's values
        (``STRATEGY_ADAPTER_FIELDS``), then the defaults. Nothing set is ever replaced: a
        contradiction is rejected by ``validate``."""
        implied = STRATEGY_ADAPTER_FIELDS.get(self.strategy, {})
        unset = {name: value for name, value in implied.items() if getattr(self.adapter, name) is None}
        return dataclasses.replace(self.adapter, **unset).with_defaults()

    @property
    def uses_adapters(self) -> bool:
        """True if the strategy grafts adapters into a frozen backbone."""
        return self.strategy in ADAPTER_STRATEGIES

    @property
    def uses_item_knowledge(self) -> bool:
        """True if the strategy adds a task-owned item table (``item_rank`` wide) to the read-out."""
        return self.strategy in ITEM_KNOWLEDGE_STRATEGIES

    def validate(self) -> "TaskConfig":
        """Raises ValueError if a value is out of range; returns self."""
        _check(bool(self.name) and isinstance(self.name, str), "task name must be a non-empty string")
        _check(self.kind in TASK_KINDS, f"task kind must be one of {TASK_KINDS}, got {self.kind!r}")
        _check(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        _check(self.readout in READOUTS, f"readout must be one of {READOUTS}, got {self.readout!r}")
        # Two classes at least; a target vocabulary holds its padding id and one item at least.
        _check(int(self.num_outputs) >= 2, f"num_outputs must be >= 2, got {self.num_outputs}")
        _check(self.fine_last_convs in (1, 2), f"fine_last_convs must be 1 or 2, got {self.fine_last_convs}")
        _check(int(self.head_hidden_units) >= 0, "head_hidden_units must be >= 0")
        _check(int(self.head_embedding_dim) >= 0, "head_embedding_dim must be >= 0")
        _check(self.softmax in SOFTMAX_KINDS, f"softmax must be one of {SOFTMAX_KINDS}, got {self.softmax!r}")
        _check(int(self.item_rank) >= 1, f"item_rank must be >= 1, got {self.item_rank}")
        _check(self.item_pooling in ITEM_POOLINGS,
               f"item_pooling must be one of {ITEM_POOLINGS}, got {self.item_pooling!r}")
        self.adapter.validate()
        for name, implied in STRATEGY_ADAPTER_FIELDS.get(self.strategy, {}).items():
            value = getattr(self.adapter, name)
            _check(value is None or value == implied,
                   f"adapter.{name} is {value!r} but strategy {self.strategy!r} uses {implied!r}: leave "
                   f"adapter.{name} unset or choose the strategy that uses {value!r}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict (the adapter config nested)."""
        data = dataclasses.asdict(self)
        data["adapter"] = self.adapter.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TaskConfig":
        """Inverse of ``to_dict``; unknown keys raise ValueError."""
        return dataclass_from_dict(cls, data).validate()
