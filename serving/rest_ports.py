"""The REST port, bound and answering before TensorFlow loads.

``peterrec serve`` binds its REST port with ``EarlyRest`` before importing TensorFlow: until
the model server adopts it (``RestServer(..., early=...)``), every request answers 503 with
``{"error": STARTING_MESSAGE}`` and closes its connection; then the same socket serves TF
Serving's REST API. Also the HTTP server classes ``rest_server`` uses. No TensorFlow here.
"""

import errno
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from peterrec.serving.grpc_ports import STARTING_MESSAGE, host_port

LOG = logging.getLogger("peterrec.serving")


class HttpServer(ThreadingHTTPServer):
    """The threading HTTP server of the REST API (IPv4)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        """Logs a failed connection at debug level (clients hang up; that is no server error)."""
        LOG.debug("REST connection from %s failed", client_address, exc_info=True)


class HttpServer6(HttpServer):
    """The REST API's HTTP server on an IPv6 address."""

    address_family = socket.AF_INET6


class DualStackHttpServer(HttpServer6):
    """One IPv6 socket that takes IPv4 connections too (IPV6_V6ONLY off), as gRPC listens."""

    def server_bind(self):
        """Binds with IPV6_V6ONLY off."""
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")
# A machine without IPv6 answers these when a dual-stack socket is asked for: use IPv4 then.
_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


def _bind_any(host: str, port: int, handler) -> HttpServer:
    if host in WILDCARD_HOSTS and socket.has_ipv6:
        try:
            return DualStackHttpServer(("::", port), handler)
        except OSError as error:
            if error.errno not in _NO_IPV6:
                raise
            LOG.info("IPv6 is unavailable (%s); REST listens on IPv4 only", error)
        return HttpServer(("0.0.0.0", port), handler)
    if ":" in host:
        return HttpServer6((host.strip("[]"), port), handler)
    return HttpServer((host, port), handler)


def bind(host: str, port: int, handler) -> HttpServer:
    """The HTTP server bound to ``host:port``; a wildcard host listens on IPv4 and IPv6 both.

    Raises OSError naming the address when it cannot be bound.
    """
    try:
        return _bind_any(host, port, handler)
    except OSError as error:
        raise OSError(f"cannot bind REST to {host_port(host, port)}: {error.strerror or error}") from error


class _StartingHandler(BaseHTTPRequestHandler):
    """Answers every request 503 (the server is starting) and closes the connection, so that the
    client's next request reaches the real handler once the server is up."""

    protocol_version = "HTTP/1.1"
    server_version = "peterrec-serving"

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        LOG.debug("rest %s - %s", self.address_string(), format % args)

    def _starting(self):
        payload = json.dumps({"error": STARTING_MESSAGE}).encode("utf-8")
        self.close_connection = True
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _starting  # noqa: N815


class EarlyRest:
    """A REST port on ``host:port`` answering 503 until ``RestServer(..., early=...)`` adopts it."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.httpd = bind(host, port, _StartingHandler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="peterrec-rest", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stops answering and closes the socket (when no RestServer adopted it)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
