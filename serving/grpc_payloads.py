"""Malformed gRPC payloads: one short, rate-limited log line instead of a traceback each.

grpcio logs every request it cannot deserialize as an ERROR with a traceback, so a client
sending garbage could flood the server's log. ``PayloadGuard`` is a server interceptor that
wraps each method's request deserializer: a payload that does not parse is reported through
a ``RateLimitedLog`` (at most one WARNING line per ``interval`` seconds, saying how many
were suppressed since the last line) and answered by grpcio as usual, with INTERNAL
"Exception deserializing request!".
"""

import logging
import threading
import time
from typing import Callable, Optional

import grpc

LOG = logging.getLogger("peterrec.serving")

DEFAULT_INTERVAL_SECONDS = 60.0


class RateLimitedLog:
    """Writes at most one line per ``interval`` seconds and counts the ones it held back."""

    def __init__(self, interval: float = DEFAULT_INTERVAL_SECONDS, logger: logging.Logger = LOG,
                 clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.logger = logger
        self.clock = clock
        self._lock = threading.Lock()
        self._last: Optional[float] = None
        self.suppressed = 0  # held back since the last line written
        self.total = 0

    def report(self, message: str) -> bool:
        """Logs ``message`` unless a line was written less than ``interval`` ago; True when written."""
        with self._lock:
            self.total += 1
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self.suppressed += 1
                return False
            held_back, self.suppressed, self._last = self.suppressed, 0, now
        suffix = f" ({held_back} more since the last such line)" if held_back else ""
        self.logger.warning("%s%s; at most one such line every %g s", message, suffix, self.interval)
        return True


def _guarded(method: str, deserializer, log: RateLimitedLog):
    def deserialize(payload: bytes):
        try:
            return deserializer(payload)
        except Exception as error:  # noqa: BLE001 - any parse failure is the client's fault
            log.report(f"malformed gRPC payload for {method}: {type(error).__name__} ({len(payload)} bytes)")
            return None  # grpcio answers INTERNAL "Exception deserializing request!" without logging

    return deserialize


class PayloadGuard(grpc.ServerInterceptor):
    """A server interceptor that reports undecodable requests through one ``RateLimitedLog``."""

    def __init__(self, log: Optional[RateLimitedLog] = None):
        self.log = log or RateLimitedLog()

    def intercept_service(self, continuation, handler_call_details):
        """The method's handler with its request deserializer guarded."""
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserializer = _guarded(handler_call_details.method, handler.request_deserializer, self.log)
        return handler._replace(request_deserializer=deserializer)
