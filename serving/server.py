"""The model server: one ModelManager, one Batcher, gRPC and REST front ends.

    from peterrec.serving.server import Server

    with Server("models.config", grpc_port=0, rest_port=0) as server:   # 0: pick free ports
        print(server.grpc_target, server.rest_url)
        ...

``Server.start()`` binds the ports first (a busy port fails at once, before any model
loads), starts answering, then loads every configured model; ``start()`` returns once
they are loaded, ``start(wait=False)`` at once (``peterrec serve`` does that: while a
model loads its status shows the version LOADING and requests for it answer UNAVAILABLE;
``wait_until_loaded()`` blocks until the load is done). Then it polls the base paths
every ``poll_seconds`` (new versions load without failing in-flight requests; old ones
unload per policy). It binds 127.0.0.1 unless ``host`` says otherwise; a port of
``None`` leaves that front end off. ``early_grpc`` and ``early_rest`` (``grpc_ports.EarlyGrpc``,
``rest_ports.EarlyRest``: bound and answering UNAVAILABLE / 503 before TensorFlow was
imported) are adopted as the front ends.
"""

import logging
import os
import threading
from typing import Optional

from peterrec.serving import model_config
from peterrec.serving.batching import Batcher, BatchingOptions
from peterrec.serving.metrics import Metrics
from peterrec.serving.model_manager import ModelManager
from peterrec.serving.prediction import Predictor, RequestLimits

LOG = logging.getLogger("peterrec.serving")

DEFAULT_BATCHING = BatchingOptions(max_batch_size=32, batch_timeout_micros=0, num_batch_threads=4)


class Server:
    """A TF-Serving-compatible server for SavedModels that follow the signature contract.

    ``model_config_path`` names a ``models.config`` file (or pass ``model_config``: a
    ``ModelServerConfig`` or a list of ``ModelEntry``). ``batching=None`` turns batching
    off. ``config_poll_seconds`` > 0 re-reads the config file when it changes.
    ``monitoring`` (a ``MonitoringConfig``) exposes Prometheus metrics on the REST port.
    ``early_grpc`` / ``early_rest`` (started ``grpc_ports.EarlyGrpc`` / ``rest_ports.EarlyRest``)
    replace ``grpc_port`` / ``rest_port``: their ports get the APIs.
    """

    def __init__(
        self,
        model_config_path: Optional[str] = None,
        grpc_port: Optional[int] = 8500,
        rest_port: Optional[int] = 8501,
        host: str = "127.0.0.1",
        poll_seconds: float = 1.0,
        batching: Optional[BatchingOptions] = DEFAULT_BATCHING,
        limits: Optional[RequestLimits] = None,
        model_config=None,
        monitoring: Optional[model_config.MonitoringConfig] = None,
        config_poll_seconds: float = 0.0,
        max_workers: int = 64,
        warmup: bool = True,
        early_grpc=None,
        early_rest=None,
    ):
        if (model_config_path is None) == (model_config is None):
            raise ValueError("give exactly one of model_config_path or model_config")
        if grpc_port is None and rest_port is None and early_grpc is None and early_rest is None:
            raise ValueError("turn on at least one of gRPC or REST")
        self.model_config_path = model_config_path
        self._config_arg = model_config
        self.host = host
        self._grpc_port_arg = grpc_port
        self._early_grpc = early_grpc  # a grpc_ports.EarlyGrpc already answering on its port, or None
        self._early_rest = early_rest  # a rest_ports.EarlyRest, likewise
        self._rest_port_arg = rest_port
        self.poll_seconds = poll_seconds
        self.config_poll_seconds = config_poll_seconds
        self.max_workers = max_workers
        self.monitoring = monitoring
        self.warmup = warmup
        self.batcher = Batcher(batching) if batching is not None else None
        self.limits = limits or RequestLimits()
        self.manager: Optional[ModelManager] = None
        self.predictor: Optional[Predictor] = None
        self.metrics: Optional[Metrics] = None
        self.grpc_port: Optional[int] = None
        self.rest_port: Optional[int] = None
        self._grpc = None
        self._rest = None
        self._stopped = threading.Event()
        self._config_thread: Optional[threading.Thread] = None
        self._config_stamp = None

    # ---- addresses --------------------------------------------------------------------
    @property
    def grpc_target(self) -> str:
        """``host:port`` of the gRPC API (for ``Client`` or ``grpc.insecure_channel``)."""
        from peterrec.serving.grpc_ports import host_port

        return host_port(self.host, self.grpc_port)

    @property
    def rest_url(self) -> str:
        """``http://host:port`` of the REST API."""
        from peterrec.serving.grpc_ports import host_port

        return "http://" + host_port(self.host, self.rest_port)

    # ---- lifecycle --------------------------------------------------------------------
    def _read_config(self):
        if self.model_config_path is not None:
            return model_config.read_model_config(self.model_config_path)
        if isinstance(self._config_arg, (list, tuple)):
            return model_config.build_model_server_config(list(self._config_arg))
        return self._config_arg

    def start(self, wait: bool = True) -> "Server":
        """Opens the ports, then loads the models and polls; returns self.

        A port that cannot be bound raises OSError naming it, before any model loads. With
        ``wait`` (the default) this returns once the configured models are loaded (or failed
        to); ``wait=False`` returns as soon as the ports answer.
        """
        config = self._read_config()
        self._config_stamp = self._stamp()
        self.manager = ModelManager(config, poll_seconds=self.poll_seconds, warmup=self.warmup)
        if self.batcher is not None:
            batcher = self.batcher
            self.manager.add_unload_listener(
                lambda name, version: batcher.forget(lambda key: key[0] == name and key[1] == version)
            )
        self.metrics = Metrics(
            self.batcher.stats if self.batcher else None,
            versions=lambda: {name: self.manager.available_versions(name) for name in self.manager.model_names()},
        )
        self.predictor = Predictor(self.manager, self.batcher, self.limits, self.metrics)
        try:
            if self._early_grpc is not None:
                from peterrec.serving.grpc_server import add_services

                self._grpc = self._early_grpc.open(lambda server: add_services(server, self.predictor, self.manager))
                self.grpc_port = self._early_grpc.port
            elif self._grpc_port_arg is not None:
                from peterrec.serving.grpc_server import create_grpc_server

                self._grpc, self.grpc_port = create_grpc_server(
                    self.predictor, self.manager, self.host, self._grpc_port_arg, self.max_workers
                )
                self._grpc.start()
            if self._rest_port_arg is not None or self._early_rest is not None:
                from peterrec.serving.rest_server import RestServer

                metrics_path = self.monitoring.path if self.monitoring and self.monitoring.enable else None
                self._rest = RestServer(self.predictor, self.manager, self.host, self._rest_port_arg, metrics_path,
                                        early=self._early_rest)
                self.rest_port = self._rest.port
                self._rest.start()
            self.manager.start(wait=False)  # a bad config raises here; the models load in the background
        except BaseException:
            self.stop()
            raise
        if self.model_config_path and self.config_poll_seconds > 0:
            self._config_thread = threading.Thread(target=self._watch_config, name="peterrec-config", daemon=True)
            self._config_thread.start()
        LOG.info("serving gRPC on %s, REST on %s", self.grpc_port, self.rest_port)
        if wait:
            self.wait_until_loaded()
        return self

    def wait_until_loaded(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the models configured at ``start()`` are loaded (or failed to); True when done."""
        return self.manager is not None and self.manager.wait_until_loaded(timeout)

    def stop(self, grace: float = 1.0) -> None:
        """Stops the front ends (in-flight calls get ``grace`` seconds) and polling."""
        self._stopped.set()
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        if self._rest is not None:
            self._rest.stop()
            self._rest = None
        if self.manager is not None:
            self.manager.stop()
        if self._config_thread is not None:
            self._config_thread.join(timeout=10)
            self._config_thread = None

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until ``stop()`` (or the timeout); True when stopped."""
        return self._stopped.wait(timeout)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- config file polling --------------------------------------------------------
    def _stamp(self):
        if not self.model_config_path:
            return None
        try:
            stat = os.stat(self.model_config_path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def _watch_config(self) -> None:
        while not self._stopped.wait(self.config_poll_seconds):
            stamp = self._stamp()
            if stamp is None or stamp == self._config_stamp:
                continue
            self._config_stamp = stamp
            try:
                self.manager.reload_config(model_config.read_model_config(self.model_config_path))
                LOG.info("reloaded %s", self.model_config_path)
            except Exception as error:  # noqa: BLE001 - keep serving the last good config
                LOG.error("could not apply %s: %s", self.model_config_path, error)
