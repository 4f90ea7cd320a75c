"""TF Serving's configuration files: ``models.config``, batching parameters, monitoring.

The same files drive this package's server and the official ``tensorflow_model_server``
(``--model_config_file``, ``--batching_parameters_file``, ``--monitoring_config_file``):

``models.config`` (a ``tensorflow.serving.ModelServerConfig`` text proto)::

    model_config_list {
      config {
        name: "peterrec"
        base_path: "/models/peterrec"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 1 } }   # or all {} / specific { versions: 2 }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }

``ModelEntry`` is the friendly form of one ``config`` block. Batching parameters
(``tensorflow.serving.BatchingParameters``) and the monitoring config
(``tensorflow.serving.MonitoringConfig``) are not shipped in the tensorflow-serving-api
wheel, so their messages are rebuilt here from TF Serving's .proto field names and
numbers, and parsed and printed by protobuf's own text format.
"""

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from google.protobuf import text_format

POLICY_LATEST = "latest"
POLICY_ALL = "all"
POLICY_SPECIFIC = "specific"
POLICIES = (POLICY_LATEST, POLICY_ALL, POLICY_SPECIFIC)
PLATFORM = "tensorflow"

MODELS_CONFIG_FILE = "models.config"
BATCHING_PARAMETERS_FILE = "batching_parameters.txt"
MONITORING_CONFIG_FILE = "monitoring.config"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"


class ModelConfigError(ValueError):
    """A configuration file or entry is malformed."""


def _protos():
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


@dataclasses.dataclass
class ModelEntry:
    """One served model: its name, base path, version policy and version labels.

    ``policy`` is ``latest`` (serve the ``num_versions`` highest versions), ``all``, or
    ``specific`` (serve exactly ``versions``). ``labels`` maps names such as ``stable``
    and ``canary`` to version numbers.
    """

    name: str
    base_path: str
    policy: str = POLICY_LATEST
    num_versions: int = 1
    versions: Tuple[int, ...] = ()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)

    def validate(self) -> "ModelEntry":
        """Raises ModelConfigError when the entry cannot be served; returns itself."""
        if not self.name or "/" in self.name or ":" in self.name:
            raise ModelConfigError(f"model name {self.name!r} must be non-empty without '/' or ':'")
        if not self.base_path:
            raise ModelConfigError(f"model {self.name!r} has no base_path")
        if self.policy not in POLICIES:
            raise ModelConfigError(f"model {self.name!r}: policy {self.policy!r} is not one of {POLICIES}")
        if self.policy == POLICY_LATEST and self.num_versions < 1:
            raise ModelConfigError(f"model {self.name!r}: latest num_versions must be >= 1")
        if self.policy == POLICY_SPECIFIC and not self.versions:
            raise ModelConfigError(f"model {self.name!r}: the specific policy needs at least one version")
        if any(int(v) < 0 for v in self.versions):
            raise ModelConfigError(f"model {self.name!r}: versions must be >= 0, got {list(self.versions)}")
        for label, version in self.labels.items():
            if not label or not all(c.isalnum() or c in "_-" for c in label):
                raise ModelConfigError(f"model {self.name!r}: bad version label {label!r}")
            if int(version) < 0:
                raise ModelConfigError(f"model {self.name!r}: label {label!r} -> negative version {version}")
        return self

    def to_proto(self):
        """This entry as a ``tensorflow.serving.ModelConfig``."""
        self.validate()
        proto = _protos().ModelConfig(name=self.name, base_path=self.base_path, model_platform=PLATFORM)
        policy = proto.model_version_policy
        if self.policy == POLICY_LATEST:
            policy.latest.num_versions = int(self.num_versions)
        elif self.policy == POLICY_ALL:
            policy.all.SetInParent()
        else:
            policy.specific.versions.extend(sorted(int(v) for v in self.versions))
        for label, version in sorted(self.labels.items()):
            proto.version_labels[label] = int(version)
        return proto

    @classmethod
    def from_proto(cls, proto) -> "ModelEntry":
        """Reads a ``tensorflow.serving.ModelConfig`` (TF Serving's defaults applied)."""
        if proto.model_platform not in ("", PLATFORM):
            raise ModelConfigError(
                f"model {proto.name!r}: model_platform {proto.model_platform!r} is not supported (only 'tensorflow')"
            )
        which = proto.model_version_policy.WhichOneof("policy_choice")
        if which in (None, POLICY_LATEST):
            # TF Serving: an unset policy, or num_versions 0, means the latest 1.
            num = proto.model_version_policy.latest.num_versions if which else 0
            entry = cls(proto.name, proto.base_path, POLICY_LATEST, num_versions=num or 1)
        elif which == POLICY_ALL:
            entry = cls(proto.name, proto.base_path, POLICY_ALL)
        else:
            versions = tuple(sorted(int(v) for v in proto.model_version_policy.specific.versions))
            entry = cls(proto.name, proto.base_path, POLICY_SPECIFIC, versions=versions)
        entry.labels = {label: int(version) for label, version in proto.version_labels.items()}
        return entry.validate()

    def wants(self, versions_on_disk: Iterable[int]) -> List[int]:
        """The versions this policy serves among those on disk, highest first."""
        on_disk = sorted(set(versions_on_disk), reverse=True)
        if self.policy == POLICY_LATEST:
            return on_disk[: self.num_versions]
        if self.policy == POLICY_ALL:
            return on_disk
        wanted = set(int(v) for v in self.versions)
        return [v for v in on_disk if v in wanted]


def build_model_server_config(entries: Sequence[ModelEntry]):
    """A ``ModelServerConfig`` with a ``model_config_list`` of these entries."""
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ModelConfigError(f"model names appear more than once: {duplicates}")
    config = _protos().ModelServerConfig()
    config.model_config_list.SetInParent()
    for entry in entries:
        config.model_config_list.config.append(entry.to_proto())
    return config


def entries_of(config) -> List[ModelEntry]:
    """The validated entries of a ``ModelServerConfig`` (only ``model_config_list`` is supported)."""
    if config.WhichOneof("config") == "custom_model_config":
        raise ModelConfigError("custom_model_config is not supported; use model_config_list")
    entries = [ModelEntry.from_proto(proto) for proto in config.model_config_list.config]
    build_model_server_config(entries)  # checks for duplicate names
    return entries


def parse_model_config(text: str):
    """Parses ``models.config`` text into a validated ``ModelServerConfig``."""
    config = _protos().ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelConfigError(f"models.config is not a valid ModelServerConfig text proto: {error}") from error
    entries_of(config)
    return config


def model_config_text(config_or_entries) -> str:
    """``models.config`` text of a ``ModelServerConfig`` or of a list of ``ModelEntry``."""
    config = config_or_entries
    if isinstance(config_or_entries, (list, tuple)):
        config = build_model_server_config(config_or_entries)
    entries_of(config)
    return text_format.MessageToString(config)


def read_model_config(path: str):
    """Reads and validates a ``models.config`` file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ModelConfigError(f"cannot read model config {path}: {error}") from error
    try:
        return parse_model_config(text)
    except ModelConfigError as error:
        raise ModelConfigError(f"{path}: {error}") from error


def _write_atomic(path: str, text: str) -> str:
    from peterrec.serving.crash_safe import write_text_atomic

    return write_text_atomic(path, text)


def write_model_config(path: str, config_or_entries) -> str:
    """Writes ``models.config`` (atomically and durably: a polling server never reads half a file,
    even when the writer is killed; ``peterrec.serving.crash_safe.write_text_atomic``)."""
    return _write_atomic(path, model_config_text(config_or_entries))


# ---- batching parameters and monitoring config ---------------------------------------

_EXTRA_MESSAGES = None


def _extra_messages():
    """Builds BatchingParameters and MonitoringConfig in a private descriptor pool."""
    global _EXTRA_MESSAGES
    if _EXTRA_MESSAGES is not None:
        return _EXTRA_MESSAGES
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    source = descriptor_pb2.FileDescriptorProto(
        name="peterrec/serving/tf_serving_extra.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    # As in tensorflow_serving/servables/tensorflow/session_bundle_config.proto.
    batching = source.message_type.add(name="BatchingParameters")
    for number, name, type_name in (
        (1, "max_batch_size", ".google.protobuf.Int64Value"),
        (2, "batch_timeout_micros", ".google.protobuf.Int64Value"),
        (3, "max_enqueued_batches", ".google.protobuf.Int64Value"),
        (4, "num_batch_threads", ".google.protobuf.Int64Value"),
        (5, "thread_pool_name", ".google.protobuf.StringValue"),
    ):
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                           label=field.LABEL_OPTIONAL, type_name=type_name)
    batching.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64, label=field.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                       label=field.LABEL_OPTIONAL)
    # As in tensorflow_serving/config/monitoring_config.proto.
    prometheus = source.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    monitoring = source.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         label=field.LABEL_OPTIONAL, type_name=".tensorflow.serving.PrometheusConfig")
    pool.Add(source)
    factory = message_factory.MessageFactory(pool)
    _EXTRA_MESSAGES = {
        name: factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }
    return _EXTRA_MESSAGES


def _parse_text(kind: str, text: str, path: str = ""):
    message = _extra_messages()[kind]()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        where = f"{path}: " if path else ""
        raise ModelConfigError(f"{where}not a valid {kind} text proto: {error}") from error
    return message


@dataclasses.dataclass
class BatchingParameters:
    """TF Serving's batching parameters (``--batching_parameters_file``).

    ``max_batch_size`` rows per model call; a batch closes when full or when its first
    request has waited ``batch_timeout_micros`` and a batch thread is free;
    ``num_batch_threads`` batches of one signature run at once; at most
    ``max_enqueued_batches`` batches' worth of rows wait (more are refused with
    UNAVAILABLE); ``pad_variable_length_inputs`` lets rows of different lengths share a
    batch (``items`` is right-padded with ""); ``allowed_batch_sizes`` (increasing, ending
    with ``max_batch_size``) pads each model call up to the smallest size that holds it.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 2
    allowed_batch_sizes: Tuple[int, ...] = ()
    pad_variable_length_inputs: bool = True

    def validate(self) -> "BatchingParameters":
        """Raises ModelConfigError on impossible values; returns itself."""
        if self.max_batch_size < 1:
            raise ModelConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ModelConfigError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        if self.max_enqueued_batches < 1:
            raise ModelConfigError(f"max_enqueued_batches must be >= 1, got {self.max_enqueued_batches}")
        if self.num_batch_threads < 1:
            raise ModelConfigError(f"num_batch_threads must be >= 1, got {self.num_batch_threads}")
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ModelConfigError(
                f"allowed_batch_sizes {sizes} must increase and end with max_batch_size {self.max_batch_size}"
            )
        return self

    def to_text(self) -> str:
        """The text proto TF Serving reads."""
        self.validate()
        message = _extra_messages()["BatchingParameters"]()
        message.max_batch_size.value = self.max_batch_size
        message.batch_timeout_micros.value = self.batch_timeout_micros
        message.max_enqueued_batches.value = self.max_enqueued_batches
        message.num_batch_threads.value = self.num_batch_threads
        message.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        message.pad_variable_length_inputs = self.pad_variable_length_inputs
        return text_format.MessageToString(message)

    @classmethod
    def from_text(cls, text: str, path: str = "") -> "BatchingParameters":
        """Parses the text proto; unset fields keep this class's defaults."""
        message = _parse_text("BatchingParameters", text, path)
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
            if message.HasField(name):
                values[name] = int(getattr(message, name).value)
        values["allowed_batch_sizes"] = tuple(int(v) for v in message.allowed_batch_sizes)
        values["pad_variable_length_inputs"] = bool(message.pad_variable_length_inputs)
        return cls(**values).validate()


def write_batching_parameters(path: str, parameters: Optional[BatchingParameters] = None) -> str:
    """Writes a batching parameters file; returns its path."""
    return _write_atomic(path, (parameters or BatchingParameters()).to_text())


def read_batching_parameters(path: str) -> BatchingParameters:
    """Reads a batching parameters file."""
    with open(path, encoding="utf-8") as handle:
        return BatchingParameters.from_text(handle.read(), path)


@dataclasses.dataclass
class MonitoringConfig:
    """TF Serving's ``--monitoring_config_file``: Prometheus metrics on the REST port."""

    enable: bool = True
    path: str = DEFAULT_METRICS_PATH

    def to_text(self) -> str:
        """The text proto TF Serving reads."""
        if not self.path.startswith("/"):
            raise ModelConfigError(f"metrics path must start with '/', got {self.path!r}")
        message = _extra_messages()["MonitoringConfig"]()
        message.prometheus_config.enable = self.enable
        message.prometheus_config.path = self.path
        return text_format.MessageToString(message)

    @classmethod
    def from_text(cls, text: str, path: str = "") -> "MonitoringConfig":
        """Parses the text proto (TF Serving's default path when none is given)."""
        message = _parse_text("MonitoringConfig", text, path)
        config = cls(bool(message.prometheus_config.enable), message.prometheus_config.path or DEFAULT_METRICS_PATH)
        if not config.path.startswith("/"):
            raise ModelConfigError(f"{path}: metrics path must start with '/', got {config.path!r}")
        return config


def write_monitoring_config(path: str, config: Optional[MonitoringConfig] = None) -> str:
    """Writes a monitoring config file; returns its path."""
    return _write_atomic(path, (config or MonitoringConfig()).to_text())


def read_monitoring_config(path: str) -> MonitoringConfig:
    """Reads a monitoring config file."""
    with open(path, encoding="utf-8") as handle:
        return MonitoringConfig.from_text(handle.read(), path)


def write_serving_files(
    directory: str,
    entries: Sequence[ModelEntry],
    batching: Optional[BatchingParameters] = None,
    monitoring: Optional[MonitoringConfig] = None,
) -> Dict[str, str]:
    """Writes models.config, batching_parameters.txt and monitoring.config into ``directory``.

    Returns ``{"model_config": path, "batching_parameters": path, "monitoring_config": path}``;
    these are the files for ``tensorflow_model_server --model_config_file=...
    --enable_batching --batching_parameters_file=... --monitoring_config_file=...`` and
    for ``peterrec serve``.
    """
    return {
        "model_config": write_model_config(os.path.join(directory, MODELS_CONFIG_FILE), list(entries)),
        "batching_parameters": write_batching_parameters(
            os.path.join(directory, BATCHING_PARAMETERS_FILE), batching
        ),
        "monitoring_config": write_monitoring_config(os.path.join(directory, MONITORING_CONFIG_FILE), monitoring),
    }
