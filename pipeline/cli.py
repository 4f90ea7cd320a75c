"""``peterrec`` subcommands of the pipeline room: ``demo``, ``run``, ``compile``, ``tensorboard``.

Only argparse is imported here; TFX, TensorFlow and Beam load inside the handlers.

Examples::

    peterrec demo --output demo-output            # the embedded default, end to end, then serve it
    peterrec run --config my_config.yaml --pipeline-root runs/mine
    peterrec run --config my_config.json --beam-arg=--direct_num_workers=4
    peterrec compile --config my_config.json --output pipeline.json \\
        --pipeline-root gs://BUCKET/peterrec --image REGISTRY/peterrec-pipeline:1 \\
        --beam-runner flink --flink-master flink-jobmanager:8081 --environment-type EXTERNAL \\
        --environment-config localhost:50000
    peterrec tensorboard --logdir runs/mine          # every training run of the pipeline
"""

import argparse

BEAM_RUNNERS = ("direct", "flink", "spark", "dataflow")


def _config(args):
    from peterrec.pipeline import config as config_lib

    return config_lib.load_config(args.config) if args.config else config_lib.load_default_config()


def _quiet_logs() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    # Multi-processing DirectRunner workers relay their start-up warnings about options they
    # ignore ("Discarding unparseable args") through the job service: noise for a user.
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def _fail(error: Exception) -> int:
    import sys

    print(f"error: {error}", file=sys.stderr)
    return 1


def _demo(args) -> int:
    import time

    started = time.perf_counter()  # before TensorFlow, TFX and Beam load: the wall time a user waits
    _quiet_logs()
    from peterrec.pipeline import config as config_lib
    from peterrec.pipeline import demo

    try:
        config = _config(args)
        beam_args = list(args.beam_arg) if args.beam_arg else list(demo.DEMO_BEAM_ARGS)
        demo.run_demo(args.output, config, beam_pipeline_args=beam_args)
    except (config_lib.ConfigError, demo.DemoError) as error:
        return _fail(error)
    print(f"== wall time of `peterrec demo`, imports included: {time.perf_counter() - started:.1f} s")
    return 0


def _run(args) -> int:
    _quiet_logs()
    import os

    from peterrec.pipeline import config as config_lib
    from peterrec.pipeline import local_runner

    try:
        config = _config(args)
    except config_lib.ConfigError as error:
        return _fail(error)
    root = args.pipeline_root or os.path.join("runs", config.pipeline_name)
    result = local_runner.run(config, root, beam_pipeline_args=args.beam_arg,
                              enable_cache=False if args.no_cache else None, model_base=args.model_base)
    if result.pushed_version is not None:
        print(f"serve it: peterrec serve --model-config {result.model_config_path}")
    return 0


def _compile(args) -> int:
    _quiet_logs()
    from peterrec.pipeline import config as config_lib
    from peterrec.pipeline import kubeflow_runner

    try:
        config = _config(args)
        beam = kubeflow_runner.beam_args(
            args.beam_runner, flink_master=args.flink_master, spark_master_url=args.spark_master_url,
            project=args.project, region=args.region, temp_location=args.temp_location,
            environment_type=args.environment_type, environment_config=args.environment_config,
            parallelism=args.parallelism, sdk_container_image=args.sdk_container_image or args.image,
            extra=args.beam_arg)
        path = kubeflow_runner.compile_pipeline(config, args.output, pipeline_root=args.pipeline_root,
                                                image=args.image, beam_pipeline_args=beam,
                                                model_base=args.model_base)
    except (config_lib.ConfigError, kubeflow_runner.CompileError) as error:
        return _fail(error)
    print(f"compiled {config.pipeline_name} ({len(config.tasks)} tasks) to {path}")
    print(f"  image {args.image}, pipeline root {args.pipeline_root}, Beam: {' '.join(beam)}")
    if config.data.is_synthetic:
        print("  note: this config uses synthetic data; generate it with `peterrec synth --output DIR`, copy DIR "
              "to the data_dir the config names (default PIPELINE_ROOT/data) and run there")
    return 0


def _tensorboard(args) -> int:
    from peterrec.pipeline import tensorboard

    runs = tensorboard.event_dirs(args.logdir)
    print(f"TensorBoard on {args.logdir}: {len(runs)} run folder(s) with event files")
    return tensorboard.serve_forever(args.logdir, port=args.port, host=args.host)


def register(subparsers) -> None:
    """Adds ``demo``, ``run``, ``compile`` and ``tensorboard`` to the ``peterrec`` command."""
    demo = subparsers.add_parser(
        "demo", help="the main job: synthetic data -> local pipeline -> server -> one request per task",
        description="Generates the embedded synthetic data set, runs the local TFX pipeline end to end "
                    "(progress per component), starts the server on the pushed model, sends one request per "
                    "task through the client and prints the answers and the wall time.")
    demo.add_argument("--output", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--config", default=None, help="a config file (default: the embedded default)")
    demo.add_argument("--beam-arg", action="append", default=[], metavar="--FLAG=VALUE",
                      help="Beam option, repeatable (default: the in-memory DirectRunner, fastest on tiny data)")
    demo.set_defaults(handler=_demo)

    run = subparsers.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite metadata)")
    run.add_argument("--config", default=None, help="the pipeline config, JSON or YAML (default: the embedded one)")
    run.add_argument("--pipeline-root", default=None,
                     help="artifacts and metadata.sqlite go here (default runs/PIPELINE_NAME)")
    run.add_argument("--model-base", default=None,
                     help="TF Serving model base to push to (default PIPELINE_ROOT/serving/MODEL_NAME)")
    run.add_argument("--beam-arg", action="append", default=[], metavar="--FLAG=VALUE",
                     help="Beam option, repeatable, e.g. --beam-arg=--direct_num_workers=4 "
                          "(default: DirectRunner, multi-processing on every core)")
    run.add_argument("--no-cache", action="store_true", help="run every component even if its inputs are unchanged")
    run.set_defaults(handler=_run)

    comp = subparsers.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines v2 / Vertex AI")
    comp.add_argument("--config", default=None, help="the pipeline config (default: the embedded one)")
    comp.add_argument("--output", default="pipeline.json", help="the compiled PipelineJob JSON (pipeline.json)")
    comp.add_argument("--pipeline-root", default="gs://YOUR_BUCKET/peterrec",
                      help="where the cluster writes artifacts (a gs:// or other shared path)")
    comp.add_argument("--model-base", default=None,
                      help="TF Serving model base (default PIPELINE_ROOT/serving/MODEL_NAME; "
                           "the push_destination runtime parameter overrides it per run)")
    comp.add_argument("--image", default="peterrec-pipeline:latest", help="the pipeline image (deploy/Dockerfile)")
    comp.add_argument("--beam-runner", default="direct", choices=BEAM_RUNNERS,
                      help="where Beam components run (direct: inside the pod, multi-processing)")
    comp.add_argument("--flink-master", default=None, help="Flink: the JobManager HOST:PORT")
    comp.add_argument("--spark-master-url", default=None, help="Spark: spark://HOST:PORT")
    comp.add_argument("--environment-type", default=None, help="Flink/Spark SDK harness: DOCKER, EXTERNAL, PROCESS")
    comp.add_argument("--environment-config", default=None, help="Flink/Spark: the SDK harness image or address")
    comp.add_argument("--parallelism", type=int, default=None, help="Flink: default parallelism")
    comp.add_argument("--project", default=None, help="Dataflow: the Google Cloud project")
    comp.add_argument("--region", default=None, help="Dataflow: the region")
    comp.add_argument("--temp-location", default=None, help="Dataflow: gs:// folder for temporary files")
    comp.add_argument("--sdk-container-image", default=None,
                      help="Dataflow: worker image (default: --image, which has peterrec installed)")
    comp.add_argument("--beam-arg", action="append", default=[], metavar="--FLAG=VALUE",
                      help="any other Beam option, passed through unchanged, repeatable")
    comp.set_defaults(handler=_compile)

    board = subparsers.add_parser("tensorboard", help="TensorBoard over the training runs of a pipeline root")
    board.add_argument("--logdir", required=True,
                       help="a pipeline root (every Trainer run) or one run's logs folder")
    board.add_argument("--port", type=int, default=6006, help="port (6006)")
    board.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    board.set_defaults(handler=_tensorboard)
