"""TF Serving's REST API over the standard library's ``ThreadingHTTPServer``.

Routes (``NAME``, then optionally ``/versions/N`` or ``/labels/L``):

- ``GET /v1/models/NAME``: model status (``{"model_version_status": [...]}``);
- ``GET /v1/models/NAME/metadata``: ``{"model_spec": ..., "metadata": {"signature_def": ...}}``;
- ``POST /v1/models/NAME:predict``: ``{"signature_name": "genre", "instances": [...]}`` (row
  format, answered with ``{"predictions": [...]}``) or ``{"inputs": ...}`` (columnar,
  answered with ``{"outputs": ...}``). Strings are JSON strings, or ``{"b64": "..."}``
  for bytes; rows of item ids may have different lengths (they are right-padded with
  ``""``, the contract's padding);
- ``POST /v1/models/NAME:classify``: ``{"signature_name": "genre_classify", "examples":
  [{"items": ["a", "b"]}, ...]}`` on a classify signature, each example converted to a
  tf.Example as TF Serving does, answered with ``{"results": [[["label", score], ...], ...]}``;
- ``GET`` the monitoring path (when enabled): Prometheus metrics.

``RestServer(..., early=...)`` adopts a port ``rest_ports.EarlyRest`` bound before TensorFlow loaded.

Errors answer ``{"error": "..."}`` with 400 (bad request, unknown signature), 404 (unknown
model, version, label or path), 405, 411, 413 (body too large), 500 or 503.
"""

import json
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Optional
from urllib.parse import unquote, urlsplit

from peterrec.serving import classify_requests, errors, rest_json, rest_ports, signatures
from peterrec.serving.prediction import Predictor

LOG = logging.getLogger("peterrec.serving")

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>/metadata|:predict|:classify|:regress)?/?$"
)


class HttpError(Exception):
    """An HTTP answer other than 200 that is not a ServingError (405, 411, 413...)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "peterrec-serving"
    timeout = 120  # seconds an idle keep-alive connection may hold a thread

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        LOG.debug("rest %s - %s", self.address_string(), format % args)

    # Every method goes through _dispatch so that nothing escapes as a dropped connection.
    def do_GET(self):  # noqa: N802
        self._dispatch("GET")

    def do_POST(self):  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self):  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self):  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self):  # noqa: N802
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        content_type = "application/json"
        try:
            status, body, *rest = self._route(method)
            if rest:
                content_type = rest[0]
        except errors.ServingError as error:
            status, body = error.http_status, {"error": error.message}
        except HttpError as error:
            status, body = error.status, {"error": error.message}
        except Exception as error:  # noqa: BLE001 - reported to the client, logged here
            LOG.exception("unexpected error in a REST handler")
            status, body = 500, {"error": f"{type(error).__name__}: {error}"}
        self._send(status, body, content_type)

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, unsupported method...) as JSON too."""
        if self.request_version == "HTTP/0.9":  # never answer without a status line
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        if code == HTTPStatus.NOT_IMPLEMENTED:  # a method no route takes (HEAD, OPTIONS...): not a server fault
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed; use GET or POST"
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send(code, {"error": message or explain or phrase})

    def _send(self, status: int, body, content_type: str = "application/json") -> None:
        if isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has headers only
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _read_json(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise HttpError(411, "a POST needs a Content-Length header")
        try:
            size = int(length)
            if size < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True
            raise HttpError(400, f"bad Content-Length {length!r}") from None
        limit = self.server.predictor.limits.max_body_bytes
        if size > limit:
            self.close_connection = True  # the body stays unread: this connection cannot go on
            raise HttpError(413, f"request body of {size} bytes exceeds the limit of {limit} bytes")
        raw = self.rfile.read(size)
        if len(raw) != size:
            self.close_connection = True
            raise HttpError(400, f"request body ended after {len(raw)} of {size} bytes")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise errors.invalid_argument(f"malformed JSON body: {error}") from error
        except RecursionError:
            raise errors.invalid_argument("the JSON body is nested too deeply") from None
        if not isinstance(body, dict):
            raise errors.invalid_argument("the JSON body must be an object")
        return body

    def _route(self, method: str):
        server = self.server
        path = urlsplit(self.path).path
        metrics_path = server.metrics_path
        if metrics_path and path == metrics_path:
            if method != "GET":
                raise HttpError(405, f"{method} is not allowed on {path}")
            return 200, server.predictor.metrics.prometheus_text(), "text/plain; version=0.0.4"
        match = _ROUTE.match(path)
        if match is None:
            if method == "POST":
                self._drain()
            raise HttpError(404, f"no such resource {path!r}; expected /v1/models/NAME[/versions/N|/labels/L]"
                                 "[/metadata|:predict|:classify]")
        name = unquote(match["name"])
        label = unquote(match["label"]) if match["label"] else None
        version = None
        if match["version"] is not None:
            try:
                version = int(match["version"])
            except ValueError:
                if method == "POST":
                    self._drain()
                raise errors.invalid_argument(f"version must be an integer, got {match['version']!r}") from None
        action = match["action"]
        expected = "POST" if action in (":predict", ":classify", ":regress") else "GET"
        if method != expected:
            if method == "POST":
                self._drain()
            raise HttpError(405, f"{method} is not allowed on {path}; use {expected}")
        if action is None:
            return 200, self._status(name, version, label)
        if action == "/metadata":
            return 200, self._metadata(name, version, label)
        body = self._read_json()
        if action == ":predict":
            return 200, self._predict(name, version, label, body)
        if action == ":classify":
            return 200, self._classify(name, version, label, body)
        raise errors.ServingError(errors.UNIMPLEMENTED, "regress is not served: peterrec models do not regress")

    def _drain(self) -> None:
        """Reads and drops a body we will not use, so the connection can carry on."""
        try:
            size = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            size = -1
        if 0 <= size <= self.server.predictor.limits.max_body_bytes:
            self.rfile.read(size)
        else:
            self.close_connection = True

    def _status(self, name, version, label):
        statuses = self.server.manager.status(name, version, label)
        return {
            "model_version_status": [
                {
                    "version": str(status.version),
                    "state": status.state,
                    "status": {"error_code": status.error_code, "error_message": status.error_message},
                }
                for status in statuses
            ]
        }

    def _metadata(self, name, version, label):
        from google.protobuf import json_format

        servable = self.server.predictor.resolve(name, version, label)
        signature_defs = json_format.MessageToDict(servable.signature_def_map(), preserving_proto_field_name=True)
        return {
            "model_spec": {"name": servable.model_name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": signature_defs},
        }

    def _predict(self, name, version, label, body):
        predictor = self.server.predictor
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise errors.invalid_argument('"signature_name" must be a string')
        servable = predictor.resolve(name, version, label)
        runner = predictor.signature(servable, signature_name)
        inputs, rows_format = rest_json.request_inputs(body, runner)
        prediction = predictor.run(servable, runner, inputs)
        return rest_json.response_body(prediction.outputs, rows_format)

    def _classify(self, name, version, label, body):
        predictor = self.server.predictor
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise errors.invalid_argument('"signature_name" must be a string')
        # As TF Serving: each example (with the context's features) becomes a tf.Example.
        serialized = classify_requests.serialized_json_examples(body.get("examples"), body.get("context", {}))
        servable = predictor.resolve(name, version, label)
        _, outputs = predictor.classify(servable, signature_name, serialized)
        classes = rest_json.json_value(outputs[signatures.CLASSIFY_OUTPUT_CLASSES])
        scores = outputs[signatures.CLASSIFY_OUTPUT_SCORES].tolist()
        return {"results": [[[c, p] for c, p in zip(cs, ps)] for cs, ps in zip(classes, scores)]}


class RestServer:
    """TF Serving's REST API on ``host:port`` (0 picks a free port; ``port`` tells which).

    A wildcard host (``0.0.0.0`` or ``::``) listens on IPv4 and IPv6, as the gRPC front end does.
    """

    def __init__(self, predictor: Predictor, manager, host: str = "127.0.0.1", port: int = 8501,
                 metrics_path: Optional[str] = None, early: Optional[rest_ports.EarlyRest] = None):
        self._httpd = early.httpd if early is not None else rest_ports.bind(host, port, _Handler)
        self._httpd.predictor = predictor
        self._httpd.manager = manager
        self._httpd.metrics_path = metrics_path if predictor.metrics is not None else None
        self.host = early.host if early is not None else host
        self.port = self._httpd.server_address[1]
        self._thread: Optional[threading.Thread] = early.thread if early is not None else None
        self._httpd.RequestHandlerClass = _Handler  # an adopted early port: new connections get the API

    def start(self) -> None:
        """Serves in a background thread (an adopted early port serves already)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="peterrec-rest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops accepting connections and closes the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
