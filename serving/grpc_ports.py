"""The gRPC port, bound and answering before TensorFlow loads.

Importing TensorFlow (which the TF Serving messages need) takes most of a server's start-up,
so ``peterrec serve`` binds its gRPC port first with ``EarlyGrpc``: until the model server
adds its services, every call answers UNAVAILABLE with ``STARTING_MESSAGE`` (clients retry
UNAVAILABLE); afterwards the same port serves PredictionService and ModelService. This
module imports grpc only, never TensorFlow.
"""

import threading
from concurrent import futures
from typing import Callable, Optional, Tuple

import grpc

from peterrec.serving.grpc_payloads import PayloadGuard

STARTING_MESSAGE = "the server is starting (loading TensorFlow and the model manager); retry shortly"


def host_port(host: str, port: int) -> str:
    """``host:port``, with brackets around IPv6 hosts."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def new_grpc_server(host: str, port: int, max_workers: int, max_message_bytes: int) -> Tuple[grpc.Server, int]:
    """A not yet started ``grpc.Server`` bound to ``host:port`` (0 picks a free port), no services.

    Returns ``(server, bound_port)``; raises OSError when the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="peterrec-grpc"),
        interceptors=[PayloadGuard()],  # undecodable payloads: one rate-limited line, no traceback
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # never share a port with another server
        ],
    )
    address = host_port(host, port)
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as error:
        raise OSError(f"cannot bind gRPC to {address}: {error}") from error
    if not bound:
        raise OSError(f"cannot bind gRPC to {address}")
    return server, bound


class _StartingHandler(grpc.GenericRpcHandler):
    """Takes every call while the server starts (UNAVAILABLE); then steps aside for the services.

    grpc asks generic handlers in the order they were added, so once ``ready()`` this one
    answers None and the services added after it take the calls.
    """

    def __init__(self):
        self._ready = threading.Event()
        # No deserializer: the request stays raw bytes, so any method of any service is refused alike.
        self._refusal = grpc.unary_unary_rpc_method_handler(self._refuse)

    def ready(self) -> None:
        """From now on the services added after this handler answer."""
        self._ready.set()

    def service(self, handler_call_details):
        """The refusal while starting, None (let the next handler answer) once ready."""
        return None if self._ready.is_set() else self._refusal

    @staticmethod
    def _refuse(request, context):
        context.abort(grpc.StatusCode.UNAVAILABLE, STARTING_MESSAGE)


class EarlyGrpc:
    """A started gRPC server on ``host:port`` answering UNAVAILABLE until ``open()`` adds the services.

    ``Server(..., early_grpc=...)`` adopts it: it serves on this port and stops it on ``stop()``.
    """

    def __init__(self, host: str, port: int, max_workers: int = 64, max_message_bytes: int = 32 << 20):
        self.host = host
        self.server, self.port = new_grpc_server(host, port, max_workers, max_message_bytes)
        self._starting = _StartingHandler()
        self.server.add_generic_rpc_handlers((self._starting,))
        self.server.start()

    def open(self, add_services: Callable[[grpc.Server], None]) -> grpc.Server:
        """Adds the services (``add_services(server)``), then lets them answer; returns the server."""
        add_services(self.server)
        self._starting.ready()
        return self.server

    def stop(self, grace: Optional[float] = None) -> None:
        """Stops the server (in-flight calls get ``grace`` seconds)."""
        self.server.stop(grace).wait()
