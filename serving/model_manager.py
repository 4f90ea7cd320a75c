"""Keeps the served SavedModel versions in step with the disk, and finds them for requests.

``ModelManager(config)`` serves the models of a ``ModelServerConfig``. Each poll lists
every model's base path (numeric sub-directories holding ``saved_model.pb``), loads the
versions its policy wants that are not loaded yet (replaying their warm-up requests),
and only then unloads the versions the policy no longer wants. A version leaves the
request path the moment it is unloaded, but requests already holding it finish on it:
nothing in flight fails. If a wanted version fails to load, the versions already
serving stay (availability first) and the load is retried on later polls.

Publish a version atomically (write it aside, then rename it to ``<base>/<N>``): a
half-written directory may be seen by a poll.

Version states follow TF Serving's ``ModelVersionStatus``: START, LOADING, AVAILABLE,
UNLOADING, END (END with an error status after a failed load).
"""

import dataclasses
import logging
import threading
from typing import Callable, Dict, List, Optional

from peterrec.serving import errors, memory, model_config
from peterrec.serving.servable import ServableVersion, list_versions, load_servable, saved_model_stamp

LOG = logging.getLogger("peterrec.serving")

START = "START"
LOADING = "LOADING"
AVAILABLE = "AVAILABLE"
UNLOADING = "UNLOADING"
END = "END"


@dataclasses.dataclass
class VersionStatus:
    """What GetModelStatus reports for one version."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


@dataclasses.dataclass
class _Record:
    status: VersionStatus
    attempts: int = 0
    stamp: Optional[float] = None  # mtime of saved_model.pb when the last load failed


class _Model:
    def __init__(self, entry: model_config.ModelEntry):
        self.entry = entry  # as configured; its labels are the ones last asked for
        self.labels: Dict[str, int] = {}  # the labels in force (requests resolve these)
        self.records: Dict[int, _Record] = {}
        self.available: Dict[int, ServableVersion] = {}


def _is_empty_config(config) -> bool:
    """Whether ``config`` is a ModelServerConfig with none of its ``config`` choices set."""
    which = getattr(config, "WhichOneof", None)
    return which is not None and which("config") is None


def _entries_of(config) -> List[model_config.ModelEntry]:
    """The entries of a ModelServerConfig; INVALID_ARGUMENT when it is bad."""
    if _is_empty_config(config):
        return []
    try:
        return model_config.entries_of(config)
    except model_config.ModelConfigError as error:
        raise errors.invalid_argument(f"bad model config: {error}") from error


class ModelManager:
    """Serves the models of a ``ModelServerConfig`` and keeps them in step with the disk.

    ``poll_seconds`` > 0 starts a thread that polls every base path; 0 polls only on
    ``start()``, ``poll_once()`` and ``reload_config()``.
    """

    def __init__(
        self,
        config=None,
        poll_seconds: float = 1.0,
        warmup: bool = True,
        max_load_retries: int = 5,
    ):
        self.poll_seconds = poll_seconds
        self.warmup = warmup
        self.max_load_retries = max_load_retries
        self._models: Dict[str, _Model] = {}
        self._lock = threading.Lock()  # guards _models, records and available maps
        self._poll_lock = threading.Lock()  # one poll or reload at a time
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._unload_listeners: List[Callable[[str, int], None]] = []
        self._config = config
        self._first_load_done = threading.Event()  # cleared while start() loads the configured models
        self._first_load_done.set()

    # ---- lifecycle ------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        """Loads the configured models, then polls every ``poll_seconds``.

        ``wait=True`` loads them before returning. ``wait=False`` only registers them (a bad
        config raises here), then loads in a background thread: meanwhile their status shows
        the versions loading and requests get UNAVAILABLE; ``wait_until_loaded`` blocks until
        that first load is done. Label problems of the first load are logged, not raised.
        """
        if self._thread is not None:
            return
        self._stop.clear()
        if self._config is not None:
            with self._lock:
                for entry in _entries_of(self._config):
                    self._models.setdefault(entry.name, _Model(entry))
        polling = bool(self.poll_seconds and self.poll_seconds > 0)
        self._first_load_done.clear()
        if wait:
            self._first_load()
            if not polling:
                return
        self._thread = threading.Thread(target=self._background, args=(not wait, polling),
                                        name="peterrec-model-poll", daemon=True)
        self._thread.start()

    def _first_load(self) -> None:
        try:
            if self._config is not None:
                self.reload_config(self._config, check_labels=False)
                for problem in self.label_problems():
                    LOG.warning("%s", problem)
        finally:
            self._first_load_done.set()

    def _background(self, load: bool, poll: bool) -> None:
        if load:
            try:
                self._first_load()
            except Exception:  # noqa: BLE001 - the server keeps answering; the log says why
                LOG.exception("loading the configured models failed")
        if poll:
            self._poll_loop()

    def wait_until_loaded(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the models configured at ``start()`` have been loaded (or failed to); True when done."""
        return self._first_load_done.wait(timeout)

    def stop(self) -> None:
        """Stops polling (loaded versions stay until the manager is dropped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def add_unload_listener(self, listener: Callable[[str, int], None]) -> None:
        """Calls ``listener(model_name, version)`` whenever a version is unloaded."""
        self._unload_listeners.append(listener)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                LOG.exception("model poll failed")

    # ---- config ---------------------------------------------------------------------
    def reload_config(self, config, check_labels: bool = True) -> None:
        """Serves exactly the models of ``config`` (a ``ModelServerConfig``).

        New models are loaded before this returns; removed models are unloaded; changed
        policies apply at once. Raises INVALID_ARGUMENT for a bad config. Version labels
        apply all together or not at all, as in TF Serving: with ``check_labels``, when a
        label points at a version that is not available once the versions are in step,
        this raises FAILED_PRECONDITION and the labels in force before stay (the rest of
        the config applies). Without it (the first load) the labels apply regardless.

        An empty ``ModelServerConfig`` (no ``config`` set at all) changes nothing, as in TF
        Serving; an empty ``model_config_list`` does unload every model.
        """
        if _is_empty_config(config):
            LOG.info("taking no action for an empty model server config")
            return
        entries = _entries_of(config)
        with self._poll_lock:
            removed = []
            with self._lock:
                wanted = {entry.name: entry for entry in entries}
                for name in list(self._models):
                    current = self._models[name]
                    new = wanted.get(name)
                    if new is None or new.base_path != current.entry.base_path:
                        removed.append(self._models.pop(name))
                for name, entry in wanted.items():
                    if name in self._models:
                        self._models[name].entry = entry
                    else:
                        self._models[name] = _Model(entry)
                models = list(self._models.values())
                self._config = config
            for model in models:
                self._sync(model)
            for model in removed:
                for version in sorted(model.available):
                    self._unload(model, version)
            problems = self.label_problems()
            if check_labels and problems:
                raise errors.ServingError(errors.FAILED_PRECONDITION,
                                          "; ".join(problems) + "; the labels in force before stay")
            with self._lock:
                for model in self._models.values():
                    model.labels = dict(model.entry.labels)

    def label_problems(self) -> List[str]:
        """Configured version labels that point at versions that are not available."""
        problems = []
        with self._lock:
            for name, model in sorted(self._models.items()):
                for label, version in sorted(model.entry.labels.items()):
                    if version not in model.available:
                        problems.append(
                            f"label {label!r} of model {name!r} points at version {version}, which is not available"
                        )
        return problems

    @property
    def config(self):
        """The ``ModelServerConfig`` being served."""
        return self._config

    # ---- polling --------------------------------------------------------------------
    def poll_once(self) -> None:
        """Brings every model in step with its base path (load new versions, then unload old)."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for model in models:
                self._sync(model)

    def _sync(self, model: _Model) -> None:
        entry = model.entry
        try:
            on_disk = list_versions(entry.base_path)
        except OSError as error:
            LOG.warning("cannot list base path %s of model %s: %s", entry.base_path, entry.name, error)
            return
        if not on_disk:
            LOG.warning("no versions of model %s under %s", entry.name, entry.base_path)
        wanted = entry.wants(on_disk)
        for version in sorted(wanted):
            if version not in model.available and self._should_load(model, version, on_disk[version]):
                self._load(model, version, on_disk[version])
        with self._lock:
            stale = [v for v in model.available if v not in wanted]
            # Availability first: keep old versions while no wanted version is serving.
            any_wanted_serving = any(v in model.available for v in wanted)
        if stale and (any_wanted_serving or not wanted):
            for version in sorted(stale):
                self._unload(model, version)

    def _should_load(self, model: _Model, version: int, path: str) -> bool:
        record = model.records.get(version)
        if record is None or record.status.state != END or record.status.error_code == "OK":
            return True
        stamp = saved_model_stamp(path)
        if stamp != record.stamp:  # rewritten since it failed: try afresh
            record.attempts = 0
            return True
        return record.attempts < self.max_load_retries

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.entry.name
        with self._lock:
            record = model.records.setdefault(version, _Record(VersionStatus(version, START)))
            record.status = VersionStatus(version, LOADING)
        LOG.info("loading model %s version %d from %s", name, version, path)
        try:
            servable = load_servable(name, version, path, warmup=self.warmup)
        except Exception as error:  # noqa: BLE001 - a bad version must not stop the server
            LOG.error("failed to load model %s version %d: %s", name, version, error)
            with self._lock:
                record.attempts += 1
                record.stamp = saved_model_stamp(path)
                record.status = VersionStatus(version, END, errors.UNKNOWN, f"failed to load {path}: {error}")
            return
        with self._lock:
            model.available[version] = servable
            record.status = VersionStatus(version, AVAILABLE)
        LOG.info("model %s version %d is available", name, version)

    def _unload(self, model: _Model, version: int) -> None:
        name = model.entry.name
        with self._lock:
            servable = model.available.pop(version, None)
            record = model.records.setdefault(version, _Record(VersionStatus(version, START)))
            record.status = VersionStatus(version, UNLOADING)
        for listener in self._unload_listeners:
            try:
                listener(name, version)
            except Exception:  # noqa: BLE001
                LOG.exception("unload listener failed")
        del servable  # requests still holding it finish on it
        # glibc keeps what the version freed in its arenas; give it back (serving/memory.py).
        memory.release_freed_memory()
        with self._lock:
            record.status = VersionStatus(version, END)
        LOG.info("model %s version %d is unloaded", name, version)

    # ---- request path ---------------------------------------------------------------
    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise errors.not_found(f"model {name!r} is not served; models: {sorted(self._models)}")
        return model

    def _absent(self, message: str) -> errors.ServingError:
        """NOT_FOUND, or UNAVAILABLE (retry) while the first load is still running."""
        if not self._first_load_done.is_set():
            return errors.ServingError(errors.UNAVAILABLE, f"{message} (the models are still loading; retry)")
        return errors.not_found(message)

    def _version_of_label(self, model: _Model, label: str) -> int:
        if label not in model.labels:
            raise self._absent(
                f"model {model.entry.name!r} has no version label {label!r}; labels: {sorted(model.labels)}"
            )
        return model.labels[label]

    def resolve(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> ServableVersion:
        """The loaded version a request asks for (the highest when neither version nor label is given)."""
        if version is not None and label:
            raise errors.invalid_argument("give a version or a version label, not both")
        with self._lock:
            model = self._model(name)
            if label:
                version = self._version_of_label(model, label)
                servable = model.available.get(version)
                if servable is None:
                    raise self._absent(
                        f"label {label!r} of model {name!r} points at version {version}, which is not loaded; "
                        f"loaded versions: {sorted(model.available)}"
                    )
                return servable
            if version is None:
                if not model.available:
                    raise self._absent(f"model {name!r} has no loaded version yet")
                return model.available[max(model.available)]
            servable = model.available.get(version)
            if servable is None:
                raise self._absent(
                    f"model {name!r} has no loaded version {version}; loaded versions: {sorted(model.available)}"
                )
            return servable

    def status(self, name: str, version: Optional[int] = None, label: Optional[str] = None) -> List[VersionStatus]:
        """GetModelStatus: every version seen (or the one asked for), highest first."""
        if version is not None and label:
            raise errors.invalid_argument("give a version or a version label, not both")
        with self._lock:
            model = self._model(name)
            if label:
                version = self._version_of_label(model, label)
            if version is not None:
                record = model.records.get(version)
                if record is None:
                    raise errors.not_found(f"model {name!r} has no version {version}")
                return [dataclasses.replace(record.status)]
            return [dataclasses.replace(r.status) for _, r in sorted(model.records.items(), reverse=True)]

    def model_names(self) -> List[str]:
        """Names of the models being served."""
        with self._lock:
            return sorted(self._models)

    def available_versions(self, name: str) -> List[int]:
        """Loaded versions of a model, ascending."""
        with self._lock:
            return sorted(self._model(name).available)
