"""Time to first answer of ``peterrec serve`` (issue 14, part 5), printed as one table.

    .venv/bin/python benchmarks/serving_startup.py                  # a toy model, 3 starts
    .venv/bin/python benchmarks/serving_startup.py --model-base-path models/peterrec --runs 5

Each run starts ``peterrec serve`` (gRPC only, no polling) and sends raw ``GetModelStatus``
requests to its port from this process every 50 ms. "first answer": seconds from the process
start to the first answered request (UNAVAILABLE "the server is starting", LOADING or
AVAILABLE all count: only a refused connection does not); "available": to the first answer
that shows the version AVAILABLE. This process imports grpc only (the request is written by
hand), so it takes no CPU from the server's own start-up beyond the polling.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import grpc

# GetModelStatusRequest{model_spec{name: NAME}} and ModelVersionStatus.state == AVAILABLE (30).
AVAILABLE = b"\x10\x1e"


def status_request(name: str) -> bytes:
    """A serialized GetModelStatusRequest for model ``name`` (field 1, then ModelSpec.name, field 1)."""
    spec = b"\x0a" + bytes([len(name)]) + name.encode()
    return b"\x0a" + bytes([len(spec)]) + spec


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_start(base_path: str, name: str, timeout: float = 300.0) -> dict:
    """Starts ``peterrec serve`` once; seconds to its first answer and to AVAILABLE."""
    port = free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "peterrec"), "serve", "--model-base-path", base_path,
               "--model-name", name, "--port", str(port), "--rest-port", "-1", "--poll-seconds", "0"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    figures = {"first_answer_s": None, "available_s": None}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/tensorflow.serving.ModelService/GetModelStatus")
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - started < timeout and figures["available_s"] is None:
                try:
                    answer = call(status_request(name), timeout=1.0)
                except grpc.RpcError as error:
                    answered = error.code() != grpc.StatusCode.UNAVAILABLE or "starting" in (error.details() or "")
                    answer = None
                else:
                    answered = True
                now = time.perf_counter() - started
                if answered and figures["first_answer_s"] is None:
                    figures["first_answer_s"] = now
                if answer is not None and AVAILABLE in answer:
                    figures["available_s"] = now
                time.sleep(0.05)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return figures


def main(argv=None) -> int:
    """Runs the starts and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-base-path", default=None, help="a model base path (default: export a toy model)")
    parser.add_argument("--model-name", default="peterrec", help="its served name (default peterrec)")
    parser.add_argument("--runs", type=int, default=3, help="starts to time (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="peterrec-startup-") as work:
        base = args.model_base_path
        if base is None:
            base = os.path.join(work, "peterrec")
            subprocess.run([sys.executable, "-c", "import sys; from peterrec.serving import testing; "
                            "testing.export_toy_model(sys.argv[1], 1)", base], check=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1"))
        runs = [one_start(base, args.model_name) for _ in range(args.runs)]
    def seconds(value):
        return "no answer" if value is None else f"{value:.1f}"

    print("| run | first answer (s) | AVAILABLE (s) |\n|---|---|---|")
    for number, run in enumerate(runs, 1):
        print(f"| {number} | {seconds(run['first_answer_s'])} | {seconds(run['available_s'])} |")
    for key in ("first_answer_s", "available_s"):
        values = [run[key] for run in runs if run[key] is not None]
        print(f"median {key}: {seconds(statistics.median(values) if values else None)} ({len(values)} of {len(runs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
