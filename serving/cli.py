"""``peterrec serve`` and ``peterrec predict``: run the model server, query it.

Nothing heavy is imported here; TensorFlow and gRPC load inside the handlers. ``peterrec serve``
binds its gRPC and REST ports before importing TensorFlow (most of its start-up), so they answer
(UNAVAILABLE / 503, "the server is starting") at once, then LOADING / the model's status.
"""


def register(subparsers) -> None:
    """Adds the serving subcommands to the ``peterrec`` parser."""
    serve = subparsers.add_parser(
        "serve",
        help="serve SavedModels over TF Serving's gRPC and REST APIs",
        description="A TF-Serving-compatible model server (gRPC PredictionService/ModelService and the "
        "REST API) for SavedModels that follow peterrec's signature contract.",
    )
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-config", help="models.config (ModelServerConfig text proto)")
    source.add_argument("--model-base-path", help="serve one model from this base path (latest version)")
    serve.add_argument("--model-name", default=None, help="name for --model-base-path (default: its last folder)")
    serve.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one; default 8500)")
    serve.add_argument("--rest-port", type=int, default=8501,
                       help="REST port (0: pick a free one; -1: no REST; default 8501)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--poll-seconds", type=float, default=1.0,
                       help="how often to look for new versions under the base paths (0: never; default 1)")
    serve.add_argument("--config-poll-seconds", type=float, default=0.0,
                       help="re-read --model-config when it changes, this often (0: never)")
    serve.add_argument("--batch-max-size", type=int, default=32, help="rows per batched model call (default 32)")
    serve.add_argument("--batch-timeout-micros", type=int, default=0,
                       help="how long a request may wait for others to fill a batch (default 0: only requests "
                       "that queue while the model is busy are merged)")
    serve.add_argument("--num-batch-threads", type=int, default=4,
                       help="batches of one signature that run at once (default 4)")
    serve.add_argument("--batching-parameters-file",
                       help="TF Serving batching parameters file (overrides the --batch-* flags)")
    serve.add_argument("--no-batching", action="store_true", help="run every request on its own")
    serve.add_argument("--monitoring-config-file", help="TF Serving monitoring config (Prometheus on the REST port)")
    serve.add_argument("--max-rows", type=int, default=1024, help="most rows one request may hold (default 1024)")
    serve.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    serve.set_defaults(handler=_serve)

    predict = subparsers.add_parser(
        "predict",
        help="query a served model (gRPC or REST)",
        description="Ask a served peterrec model for one task: a cold-start task or next_items gives the "
        "top-k items, a classification task its label and probabilities, embed the user vector.",
    )
    predict.add_argument("--target", default="127.0.0.1:8500",
                         help="host:port of the gRPC API, or http://host:port with --rest")
    predict.add_argument("--rest", action="store_true", help="use the REST API")
    predict.add_argument("--model-name", default=None, help="served model name (default: peterrec)")
    predict.add_argument("--task", required=True, help="task (signature) name, or embed / next_items")
    predict.add_argument("--items", action="append", required=True,
                         help="comma-separated item ids, oldest first; repeat for a batch")
    predict.add_argument("--k", type=int, default=10, help="how many items for top-k signatures (default 10)")
    predict.add_argument("--version", type=int, default=None, help="a version number (default: the latest)")
    predict.add_argument("--label", default=None, help="a version label such as stable or canary")
    predict.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer")
    predict.set_defaults(handler=_predict)


def build_server(args, early_grpc=None, early_rest=None):
    """The (not yet started) ``Server`` that ``peterrec serve`` runs for these arguments.

    ``early_grpc`` / ``early_rest``: ports already bound to ``--port`` / ``--rest-port``
    (``grpc_ports.EarlyGrpc``, ``rest_ports.EarlyRest``), which the server adopts.
    """
    import os

    from peterrec.serving import model_config
    from peterrec.serving.batching import BatchingOptions
    from peterrec.serving.server import Server

    batching = None
    if not args.no_batching:
        if args.batching_parameters_file:
            batching = BatchingOptions.from_parameters(model_config.read_batching_parameters(args.batching_parameters_file))
        else:
            batching = BatchingOptions(args.batch_max_size, args.batch_timeout_micros, args.num_batch_threads)
    monitoring = model_config.read_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else None
    if args.model_base_path:
        base_path = os.path.abspath(args.model_base_path)
        name = args.model_name or os.path.basename(base_path.rstrip(os.sep))
        source = {"model_config": [model_config.ModelEntry(name, base_path)]}
    else:
        source = {"model_config_path": args.model_config}
    return Server(
        grpc_port=args.port,
        rest_port=None if args.rest_port < 0 else args.rest_port,
        host=args.host,
        poll_seconds=args.poll_seconds,
        config_poll_seconds=args.config_poll_seconds,
        batching=batching,
        limits=request_limits(args),
        monitoring=monitoring,
        early_grpc=early_grpc,
        early_rest=early_rest,
        **source,
    )


def request_limits(args):
    """The ``RequestLimits`` of these ``peterrec serve`` arguments (imports no TensorFlow)."""
    from peterrec.serving.limits import RequestLimits

    return RequestLimits(max_rows=args.max_rows)


def _serve(args) -> int:
    import logging
    import signal
    import sys
    import threading

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from peterrec.serving.grpc_ports import EarlyGrpc
    from peterrec.serving.rest_ports import EarlyRest

    early_grpc = early_rest = None
    try:
        # Bound before build_server imports TensorFlow: the ports answer UNAVAILABLE / 503 meanwhile.
        early_grpc = EarlyGrpc(args.host, args.port, max_message_bytes=request_limits(args).max_body_bytes)
        early_rest = EarlyRest(args.host, args.rest_port) if args.rest_port >= 0 else None
        server = build_server(args, early_grpc, early_rest)
        server.start(wait=False)  # answer at once (models report LOADING) while they load
    except (OSError, ValueError) as error:
        for early in (early_grpc, early_rest):
            if early is not None:
                early.stop()
        print(f"peterrec serve: {error}", file=sys.stderr)
        return 1
    print(f"gRPC on {server.grpc_target}" + (f", REST on {server.rest_url}" if server.rest_port else ""), flush=True)
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: server.stop())
    server.wait()
    return 0


def _predict(args) -> int:
    import json
    import sys

    from peterrec.serving import signatures
    from peterrec.serving.client import Client
    from peterrec.serving.errors import ServingError

    rows = [[item.strip() for item in text.split(",") if item.strip()] for text in args.items]
    if any(not row for row in rows):
        print("peterrec predict: every --items needs at least one item id", file=sys.stderr)
        return 2
    items = rows if len(rows) > 1 else rows[0]
    client = Client(args.target, rest=args.rest, model_name=args.model_name or signatures.DEFAULT_MODEL_NAME,
                    version=args.version, version_label=args.label, timeout=args.timeout)
    try:
        info = client.metadata()["signatures"].get(args.task)
        if info is None:
            known = sorted(client.metadata()["signatures"])
            print(f"peterrec predict: no signature {args.task!r}; signatures: {known}", file=sys.stderr)
            return 2
        kind = info["kind"]
        if kind in (signatures.KIND_COLD_START, signatures.KIND_NEXT_ITEMS):
            answer = client.recommend(args.task, items, args.k)
        elif kind == signatures.KIND_CLASSIFICATION:
            result = client.classify(args.task, items)
            answer = [r.__dict__ for r in result] if isinstance(result, list) else result.__dict__
        elif kind == signatures.KIND_EMBED:
            answer = client.embed(items).tolist()
        else:
            outputs = client.predict(args.task, {signatures.INPUT_ITEMS: client.items_array(items)[0]})
            answer = {name: value.tolist() for name, value in outputs.items()}
            answer = json.loads(json.dumps(answer, default=lambda v: v.decode("utf-8", "replace")))
    except ServingError as error:
        print(f"peterrec predict: {error}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps({"task": args.task, "kind": kind, "answer": answer}, indent=1))
    return 0
