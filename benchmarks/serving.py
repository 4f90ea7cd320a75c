"""Serving benchmark (issue 4, item 7), printed as ONE table.

    .venv/bin/python benchmarks/serving.py                     # the full run (about 10 min on 2 cores)
    .venv/bin/python benchmarks/serving.py --tasks 1,3 --requests-scale 0.2   # a quick smoke run

What it measures, on an ML-1M-like backbone with random weights (3,700 items, d=64, 8 residual
blocks; 50 tasks alternating classification (8 classes) and cold start (1,000 target items),
PeterRec serial patches, [TCL] read-out; no training: serving figures do not depend on the values):

(a) p50 / p99 latency and requests/s of gRPC Predict (one sequence of 20-50 items per request) at
    concurrency 1, 8 and 32, against ``peterrec.serving.Server`` holding the shared model with the
    most tasks; loopback only, bounded request counts, client threads in this process.
(b) disk size and resident memory (psutil RSS of the server subprocess after loading and warm-up)
    of ONE server holding 1, 10, 50 tasks as ONE assembled SavedModel on a shared backbone, against
    one server holding the same number of separately fine-tuned full models (each its own
    SavedModel: a backbone copy + the task's read-out and head, the task signature only).
    The shared model also serves ``embed`` and ``next_items`` (its pretraining output layer, 0.95 MB,
    is on disk and in memory), so its figures are on the pessimistic side.
(c) the server's overhead: the same signature called in-process on the loaded SavedModel against
    gRPC (and REST) requests to the server, one at a time, interleaved call by call so that all
    three see the same load from anything else running on the machine.

How the separate models are written: per kind of task, one is exported with
``tf.saved_model.save`` (``peterrec.serving.assembly``); the others copy its graph
(``saved_model.pb`` and assets) and get their own variables checkpoint, written from the same
object graph with their own random backbone and head values: exactly what exporting each would
store, at a fraction of the time. One copy per kind is loaded back and checked against the
in-process function.

Servers run as subprocesses of this script (``--server-process``); the separate models are added
to one server by reloading its config (1 -> 10 -> 50 models), so its RSS after each step is that
of a server holding that many models.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

SERVER_FLAG = "--server-process"
MODEL = "peterrec"


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# =============================================================================== server subprocess
def server_process(config_path: str, batching_path: str) -> int:
    """Runs a Server on ``config_path`` (ports 0, loopback) and follows commands from stdin.

    Prints JSON lines: {"event": "imported"}, {"event": "ready", "grpc", "rest", "load_s"},
    {"event": "reloaded", "load_s"} after ``reload PATH``; ``quit`` stops it.
    """
    import peterrec  # noqa: F401
    import tensorflow  # noqa: F401

    from peterrec.serving import model_config
    from peterrec.serving.batching import BatchingOptions
    from peterrec.serving.server import Server

    def emit(**event):
        print(json.dumps(event), flush=True)

    emit(event="imported")
    batching = BatchingOptions.from_parameters(model_config.read_batching_parameters(batching_path))
    started = time.perf_counter()
    server = Server(config_path, grpc_port=0, rest_port=0, poll_seconds=0, batching=batching).start()
    emit(event="ready", grpc=server.grpc_target, rest=server.rest_url, load_s=time.perf_counter() - started)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "reload":
            started = time.perf_counter()
            server.manager.reload_config(model_config.read_model_config(command[1]))
            emit(event="reloaded", load_s=time.perf_counter() - started)
    server.stop()
    return 0


class ServerHandle:
    """A server subprocess of this script and its resident memory."""

    def __init__(self, config_path: str, batching_path: str, log_path: str, timeout: float = 900):
        import psutil

        self._log_file = open(log_path, "a")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), SERVER_FLAG, config_path,
                                         batching_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log_file, text=True, env=env)
        self.psutil_process = psutil.Process(self.process.pid)
        self.timeout = timeout
        self._wait("imported")
        self.rss_imported = self.rss()
        ready = self._wait("ready")
        self.grpc, self.rest, self.load_s = ready["grpc"], ready["rest"], ready["load_s"]

    def _wait(self, event: str) -> dict:
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the server process ended before {event!r}; see {self._log_file.name}")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == event:
                return message
        raise TimeoutError(f"no {event!r} from the server process in {self.timeout} s")

    def rss(self) -> int:
        """Resident memory of the server process, bytes."""
        return self.psutil_process.memory_info().rss

    def reload(self, config_path: str) -> float:
        """Serves the models of another models.config; returns the seconds it took."""
        self.process.stdin.write(f"reload {config_path}\n")
        self.process.stdin.flush()
        return self._wait("reloaded")["load_s"]

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._log_file.close()


# =============================================================================== building models
def task_specs(count: int, classes: int, targets: int):
    from peterrec.serving.random_artifacts import TaskSpec

    return [TaskSpec(f"t{n}", "classification" if n % 2 == 0 else "cold_start", "peterrec-serial", "tcl",
                     num_classes=classes, num_targets=targets) for n in range(count)]


def export_shared(made, names: List[str], base: str, top_k: int) -> str:
    """The assembled multi-task model of ``names`` (through the export code path); its version dir."""
    from peterrec.serving import assembly

    tasks = [assembly.served_task(made.task_models[n], made.metadata[n], made.task_dirs[n]) for n in names]
    assets = tempfile.mkdtemp(prefix="bench-assets-")
    try:
        module, concrete = assembly.build_serving_module(made.backbone, made.vocabulary, tasks, assets, top_k=top_k)
        _, path = assembly.save_version(module, concrete, base, assembly.task_entries(module, tasks, made.backbone),
                                        assembly.warmup_rows(made.vocabulary))
    finally:
        shutil.rmtree(assets, ignore_errors=True)
    return path


def export_separate(made, specs, root: str, top_k: int, check_rows) -> Dict[str, str]:
    """One full model per task (backbone copy + read-out + head); returns {task: version dir}."""
    import numpy as np
    import tensorflow as tf

    from peterrec.serving import assembly, random_artifacts, signatures, warmup

    paths: Dict[str, str] = {}
    templates = {}
    assets = tempfile.mkdtemp(prefix="bench-assets-")
    try:
        for index, spec in enumerate(specs):
            base = os.path.join(root, f"sep_{spec.name}")
            if spec.kind not in templates:
                backbone = made.backbone.clone(name=f"separate_{spec.kind}")
                own = random_artifacts.TaskSpec("task", spec.kind, "fine-cls", spec.readout, spec.num_classes,
                                                spec.num_targets)
                model, metadata = random_artifacts.build_task(backbone, made.vocabulary, own, seed=index)
                task = assembly.served_task(model, metadata)
                module, concrete = assembly.build_serving_module(
                    backbone, made.vocabulary, [task], os.path.join(assets, spec.kind), top_k=top_k,
                    backbone_signatures=False)
                _, path = assembly.save_version(module, concrete, base, assembly.task_entries(module, [task], backbone),
                                                assembly.warmup_rows(made.vocabulary))
                templates[spec.kind] = dict(module=module, concrete=concrete, path=path, copies=0)
                paths[spec.name] = path
                continue
            template = templates[spec.kind]
            module = template["module"]
            # This task's own fine-tuned backbone and head (random values), in the template's variables.
            random_artifacts.perturb(module.backbone_variables, seed=10_000 + index, scale=0.02)
            random_artifacts.perturb([v for vs in module.task_weights.values() for v in vs], seed=20_000 + index)
            path = os.path.join(base, "1")
            os.makedirs(base, exist_ok=True)
            shutil.copytree(template["path"], path, ignore=shutil.ignore_patterns("variables", "fingerprint.pb"))
            tf.train.Checkpoint(root=module).write(os.path.join(path, "variables", "variables"))
            warmup.write_warmup_requests(path, warmup.contract_warmup_requests(
                os.path.basename(base), ["task"], assembly.warmup_rows(made.vocabulary)))
            paths[spec.name] = path
            template["copies"] += 1
            if template["copies"] == 1:  # check that the copy loads with its own values
                items = tf.constant(signatures.pad_item_rows(check_rows))
                expected = template["concrete"]["task"](items=items)
                got = tf.saved_model.load(path).signatures["task"](items=items)
                for key, value in expected.items():
                    if value.dtype.is_floating:
                        np.testing.assert_allclose(got[key].numpy(), value.numpy(), atol=1e-5)
                    else:
                        np.testing.assert_array_equal(got[key].numpy(), value.numpy())
    finally:
        shutil.rmtree(assets, ignore_errors=True)
    return paths


def write_config(path: str, entries) -> str:
    from peterrec.serving import model_config

    return model_config.write_model_config(path, list(entries))


# =============================================================================== load generators
def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def summary(latencies: List[float], wall: float, failures: int = 0) -> dict:
    return {"p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * percentile(latencies, 99),
            "rps": len(latencies) / wall, "n": len(latencies), "failures": failures}


def predict_requests(rows, signature: str) -> list:
    from tensorflow_serving.apis import predict_pb2

    from peterrec.serving import signatures, tensors

    requests = []
    for row in rows:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = signature
        items = tensors.string_array(signatures.pad_item_rows([row]))
        request.inputs[signatures.INPUT_ITEMS].CopyFrom(tensors.ndarray_to_tensor_proto(items))
        requests.append(request)
    return requests


def grpc_load(target: str, requests: list, concurrency: int, total: int) -> dict:
    """``total`` Predict calls from ``concurrency`` threads on one channel; latency and throughput."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for request in requests[:4]:
        stub.Predict(request, timeout=120)
    per_worker = max(1, total // concurrency)
    latencies: List[float] = []
    failures = [0]
    lock = threading.Lock()

    def worker(number: int) -> None:
        mine, failed = [], 0
        for step in range(per_worker):
            request = requests[(number * per_worker + step) % len(requests)]
            started = time.perf_counter()
            try:
                stub.Predict(request, timeout=120)
                mine.append(time.perf_counter() - started)
            except grpc.RpcError:
                failed += 1
        with lock:
            latencies.extend(mine)
            failures[0] += failed

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    channel.close()
    return summary(latencies, wall, failures[0])


def overhead(version_dir: str, grpc_target: str, rest_url: str, rows, signature: str, total: int) -> Dict[str, dict]:
    """The same requests three ways, INTERLEAVED so that all three see the same machine load:
    the signature called in this process on the loaded SavedModel (numpy in, numpy out), gRPC
    Predict and REST predict to the server, one at a time. Returns a summary per way (req/s =
    requests per second of summed latency)."""
    import urllib.request

    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from peterrec.serving import signatures, tensors

    function = tf.saved_model.load(version_dir).signatures[signature]
    arrays = [tensors.string_array(signatures.pad_item_rows([row])) for row in rows]
    requests = predict_requests(rows, signature)
    bodies = [json.dumps({"signature_name": signature, "inputs": {"items": [row]}}).encode() for row in rows]
    endpoint = f"{rest_url}/v1/models/{MODEL}:predict"
    channel = grpc.insecure_channel(grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def local(step):
        outputs = function(items=tf.constant(arrays[step % len(arrays)]))
        return {key: np.asarray(value) for key, value in outputs.items()}

    def remote(step):
        return stub.Predict(requests[step % len(requests)], timeout=120)

    def rest(step):
        request = urllib.request.Request(endpoint, data=bodies[step % len(bodies)],
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.read()

    ways = {"in-process": local, "grpc": remote, "rest": rest}
    latencies: Dict[str, List[float]] = {name: [] for name in ways}
    for step in range(-4, total):  # 4 warm-up rounds
        for name, call in ways.items():
            begin = time.perf_counter()
            call(step)
            if step >= 0:
                latencies[name].append(time.perf_counter() - begin)
    channel.close()
    return {name: summary(values, sum(values)) for name, values in latencies.items()}


# =============================================================================== the table
def _mb(size: float) -> str:
    return f"{size / 1e6:.1f}"


def render(rows: List[List[str]]) -> str:
    header = ["part", "case", "p50 ms", "p99 ms", "req/s", "disk MB", "RSS MB", "separate / shared"]
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def latency_row(part: str, case: str, figures: dict, note: str = "") -> List[str]:
    case = case + (f" ({figures['failures']} failed)" if figures.get("failures") else "")
    return [part, case, f"{figures['p50_ms']:.2f}", f"{figures['p99_ms']:.2f}", f"{figures['rps']:.0f}", "", "", note]


# =============================================================================== main
def run(args) -> int:
    import peterrec  # noqa: F401
    import tensorflow as tf

    from peterrec.serving import model_config, random_artifacts
    from peterrec.trainer.artifacts import directory_size

    counts = sorted({int(n) for n in args.tasks.split(",")})
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    most = counts[-1]
    work = args.workdir or tempfile.mkdtemp(prefix="peterrec-bench-")
    os.makedirs(work, exist_ok=True)
    started = time.perf_counter()
    timings: Dict[str, float] = {}
    servers: List[ServerHandle] = []
    try:
        # ---- artifacts --------------------------------------------------------------------
        tick = time.perf_counter()
        dilations = (1, 2, 4, 8) * (args.blocks // 2)
        specs = task_specs(most, args.classes, args.targets)
        _log(f"building the backbone ({args.items} items, d={args.dim}, {args.blocks} blocks) and {most} tasks")
        made = random_artifacts.write_random_artifacts(os.path.join(work, "artifacts"), specs, num_items=args.items,
                                                       embedding_dim=args.dim, dilations=dilations, log=_log)
        timings["artifacts"] = time.perf_counter() - tick
        rows = random_artifacts.random_item_rows(made.vocabulary, 64, min_len=20, max_len=50, seed=7,
                                                 unknown_rate=0.02)

        # ---- exports ----------------------------------------------------------------------
        tick = time.perf_counter()
        shared_paths = {}
        for count in counts:
            _log(f"exporting the shared model with {count} task(s)")
            shared_paths[count] = export_shared(made, [s.name for s in specs[:count]],
                                                os.path.join(work, f"shared_{count}", MODEL), args.top_k)
        timings["shared exports"] = time.perf_counter() - tick
        tick = time.perf_counter()
        _log(f"exporting {most} separate full models")
        separate_paths = export_separate(made, specs, os.path.join(work, "separate"), args.top_k, rows[:3])
        timings["separate exports"] = time.perf_counter() - tick

        batching = model_config.write_batching_parameters(os.path.join(work, model_config.BATCHING_PARAMETERS_FILE))
        table: List[List[str]] = []
        log_path = os.path.join(work, "servers.log")

        # ---- (b) memory and disk ----------------------------------------------------------
        tick = time.perf_counter()
        shared_rss, shared_disk, shared_load = {}, {}, {}
        latency_server = None
        for count in counts:
            config = write_config(os.path.join(work, f"shared_{count}.config"),
                                  [model_config.ModelEntry(MODEL, os.path.dirname(shared_paths[count]))])
            _log(f"server: shared model, {count} task(s)")
            server = ServerHandle(config, batching, log_path)
            servers.append(server)
            shared_rss[count], shared_load[count] = server.rss(), server.load_s
            shared_disk[count] = directory_size(shared_paths[count])
            baseline_rss = server.rss_imported
            if count == most:
                latency_server = server
            else:
                server.stop()
        separate_rss, separate_disk, separate_load = {}, {}, {}
        server = None
        for count in counts:
            names = [s.name for s in specs[:count]]
            config = write_config(os.path.join(work, f"separate_{count}.config"),
                                  [model_config.ModelEntry(f"sep_{n}", os.path.dirname(separate_paths[n]))
                                   for n in names])
            if server is None:
                _log(f"server: {count} separate model(s)")
                server = ServerHandle(config, batching, log_path)
                servers.append(server)
                separate_load[count] = server.load_s
            else:
                _log(f"server: reloading to {count} separate models")
                separate_load[count] = server.reload(config)
            separate_rss[count] = server.rss()
            separate_disk[count] = sum(directory_size(separate_paths[n]) for n in names)
        server.stop()
        timings["servers (b)"] = time.perf_counter() - tick

        # ---- (a) latency ------------------------------------------------------------------
        tick = time.perf_counter()
        for signature, what in (("t0", "classification"), ("t1", "cold start top-100")):
            if signature not in {s.name for s in specs}:
                continue
            requests = predict_requests(rows, signature)
            for concurrency in concurrencies:
                total = max(concurrency, int(args.requests_scale * {1: 150}.get(concurrency, 20 * concurrency)))
                _log(f"gRPC {signature} concurrency {concurrency}: {total} requests")
                figures = grpc_load(latency_server.grpc, requests, concurrency, total)
                table.append(latency_row("a", f"gRPC Predict {signature} ({what}), {most}-task model, "
                                         f"concurrency {concurrency}", figures))
        timings["latency (a)"] = time.perf_counter() - tick

        # ---- (c) the server's overhead ----------------------------------------------------
        tick = time.perf_counter()
        total = max(10, int(args.requests_scale * 150))
        _log(f"in-process vs gRPC vs REST, interleaved: {total} requests each")
        ways = overhead(shared_paths[counts[0]], latency_server.grpc, latency_server.rest, rows, "t0", total)
        latency_server.stop()
        timings["overhead (c)"] = time.perf_counter() - tick

        for count in counts:
            table.append(["b", f"{count} task(s): ONE shared model (backbone once + patches), load {shared_load[count]:.0f} s",
                          "", "", "", _mb(shared_disk[count]), _mb(shared_rss[count]), ""])
            disk_ratio = separate_disk[count] / shared_disk[count]
            rss_ratio = separate_rss[count] / shared_rss[count]
            table.append(["b", f"{count} task(s): {count} separate full models, load {separate_load[count]:.0f} s",
                          "", "", "", _mb(separate_disk[count]), _mb(separate_rss[count]),
                          f"disk {disk_ratio:.2f}x, RSS {rss_ratio:.2f}x"])
        artifacts_disk = directory_size(made.backbone_dir) + sum(directory_size(made.task_dirs[s.name])
                                                                 for s in specs)
        table.append(["b", f"(artifacts: backbone export + {most} patch artifacts)", "", "", "",
                      _mb(artifacts_disk), "", ""])
        table.append(["b", "(server process with TensorFlow imported, no model)", "", "", "", "",
                      _mb(baseline_rss), ""])
        local = ways["in-process"]
        table.append(latency_row("c", "t0 called in-process on the loaded SavedModel (numpy in/out)", local))
        for name, label in (("grpc", "gRPC Predict"), ("rest", "REST predict")):
            figures = ways[name]
            table.append(latency_row("c", f"{label} t0 to the server, one at a time (interleaved with the above)",
                                     figures, f"server overhead {figures['p50_ms'] - local['p50_ms']:+.2f} ms p50 "
                                     f"({figures['p50_ms'] / local['p50_ms']:.2f}x)"))
        print(render(table))
        elapsed = time.perf_counter() - started
        print(f"\nbackbone: {args.items} items, d={args.dim}, {args.blocks} blocks; tasks alternate classification "
              f"({args.classes} classes) and cold start ({args.targets} targets), peterrec-serial patches; requests: "
              f"one sequence of 20-50 items; TensorFlow {tf.__version__}, {os.cpu_count()} CPU(s). Total "
              f"{elapsed:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        return 0
    finally:
        for server in servers:
            server.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == SERVER_FLAG:
        return server_process(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="1,10,50", help="task counts for (b) (default 1,10,50)")
    parser.add_argument("--concurrency", default="1,8,32", help="gRPC concurrency levels for (a)")
    parser.add_argument("--requests-scale", type=float, default=1.0,
                        help="scales the request counts (150 at concurrency 1, 20 per client thread above)")
    parser.add_argument("--items", type=int, default=3700, help="item vocabulary size (default 3,700: ML-1M)")
    parser.add_argument("--dim", type=int, default=64, help="embedding width d (default 64)")
    parser.add_argument("--blocks", type=int, default=8, help="residual blocks, even (default 8)")
    parser.add_argument("--classes", type=int, default=8, help="classes of a classification task (default 8)")
    parser.add_argument("--targets", type=int, default=1000, help="target items of a cold-start task (default 1000)")
    parser.add_argument("--top-k", type=int, default=100, help="K of top-k signatures (default 100)")
    parser.add_argument("--workdir", default=None, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
