"""Soak test of the model server (issue 12, item 4): mixed load while a new version is pushed every minute.

    .venv/bin/python benchmarks/soak.py                                   # 10 minutes, prints the table
    .venv/bin/python benchmarks/soak.py --minutes 10 --out benchmarks/results/soak.md   # the published run
    .venv/bin/python benchmarks/soak.py --minutes 2 --clients 4          # a smoke run

What it does: writes a random-weight backbone and two patch artifacts (a classification task
``genre``, a cold-start task ``shop``; no training: serving does not depend on the values),
exports version 1 with ``peterrec export`` and starts ``peterrec serve --model-config`` in a
subprocess (so the RSS read from ``/proc/<pid>/status`` is the server's alone; it re-reads
``models.config`` every second). ``--clients`` threads then send requests back to back, in turn
gRPC Predict (``shop`` top-k and ``next_items``), gRPC Classify (``genre``, ``tf.Example`` input)
and REST predict (``genre`` and ``next_items``), each over its own connection, while every
``--push-seconds`` a ``peterrec export`` subprocess publishes the next version into the same
model base (the latest-version policy loads it and unloads the old one under load).

It prints, per minute: requests, failed requests, p50 and p99 latency over all kinds, the
server's RSS at the end of the minute (sampled every ``--rss-seconds``) and the versions pushed;
then the failures by message, latency per request kind and the RSS growth after the first
minute. A markdown report is written only to an explicit ``--out`` path, so a default run never
overwrites a published result. The machine's load matters: run it on a quiet machine.
"""

import argparse
import collections
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

MODEL = "recs"
KINDS = ("grpc_predict", "grpc_classify", "rest_predict")
_ADDRESSES = re.compile(r"gRPC on (?P<grpc>[^\s,]+)(?:, REST on (?P<rest>http://\S+))?")


def _cli(*args):
    return [sys.executable, "-m", "peterrec.cli", *args]


def write_artifacts(root: str, items: int, dim: int, dilations):
    """The backbone export and the two patch artifacts the soak serves."""
    from peterrec.serving import random_artifacts

    specs = [random_artifacts.TaskSpec("genre", "classification", num_classes=5),
             random_artifacts.TaskSpec("shop", "cold_start", num_targets=200)]
    return random_artifacts.write_random_artifacts(root, specs, num_items=items, embedding_dim=dim,
                                                   dilations=dilations)


def export_command(made, model_base: str):
    """``peterrec export`` of the soak's model: the command a push runs."""
    return _cli("export", "--backbone", made.backbone_dir, "--task", made.task_dirs["genre"],
                "--task", made.task_dirs["shop"], "--model-base", model_base, "--top-k", "10", "--quiet")


class ServerProcess:
    """``peterrec serve`` in a subprocess; its addresses parsed from the line it prints."""

    def __init__(self, config_path: str, log_path: str):
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            _cli("serve", "--model-config", config_path, "--port", "0", "--rest-port", "0",
                 "--config-poll-seconds", "1", "--log-level", "WARNING"),
            stdout=subprocess.PIPE, stderr=self._log, text=True)
        line = self.process.stdout.readline()
        match = _ADDRESSES.search(line)
        if not match or not match.group("rest"):
            self.stop()
            raise RuntimeError(f"peterrec serve did not start: {line!r}; see {log_path}")
        self.grpc_target, self.rest_url = match.group("grpc"), match.group("rest")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()  # keep the pipe drained

    def rss_mb(self) -> float:
        """The server's resident set size (VmRSS) in MB."""
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_until_serving(server: ServerProcess, timeout: float = 600.0) -> None:
    """Returns once the server answers GetModelMetadata for the model."""
    from peterrec.serving.client import Client
    from peterrec.serving.errors import ServingError

    deadline = time.monotonic() + timeout
    with Client(server.grpc_target, model_name=MODEL, timeout=10) as client:
        while True:
            try:
                client.metadata()
                return
            except ServingError:
                if time.monotonic() > deadline or server.process.poll() is not None:
                    raise
                time.sleep(0.5)


def classify_signature(stub, task: str) -> str:
    """The signature gRPC Classify should name: a ``tensorflow/serving/classify`` signature of the
    task when the model exports one, else the task's own signature."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL
    response = stub.GetModelMetadata(request, timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(defs)
    classify = sorted(name for name, definition in defs.signature_def.items()
                      if definition.method_name == "tensorflow/serving/classify" and task in name)
    return classify[0] if classify else task


class Load:
    """The client threads: each sends one kind of request back to back and records every answer."""

    def __init__(self, server: ServerProcess, clients: int, tokens, seed: int):
        self.server = server
        self.tokens = list(tokens)
        self.records = []  # (seconds since start, kind, latency seconds, error text or None)
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(KINDS[n % len(KINDS)], seed + n), daemon=True)
                        for n in range(clients)]

    def start(self) -> None:
        """Starts every client thread."""
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        """Stops the threads and waits for their last requests."""
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _rows(self, rng):
        return [[str(item) for item in rng.choice(self.tokens, size=rng.integers(5, 21))]
                for _ in range(rng.integers(1, 5))]

    def _run(self, kind: str, seed: int) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        from peterrec.serving.client import Client

        rng = np.random.default_rng(seed)
        rest = kind == "rest_predict"
        with Client(self.server.rest_url if rest else self.server.grpc_target, rest=rest, model_name=MODEL,
                    timeout=30) as client, grpc.insecure_channel(self.server.grpc_target) as channel:
            call = self._caller(kind, client, prediction_service_pb2_grpc.PredictionServiceStub(channel), rng)
            while not self.stop.is_set():
                began = time.monotonic()
                error = None
                try:
                    call()
                except Exception as failure:  # noqa: BLE001 - every failure is counted and reported
                    error = f"{type(failure).__name__}: {str(failure)[:200]}"
                self.records.append((began - self.started, kind, time.monotonic() - began, error))

    def _caller(self, kind, client, stub, rng):
        if kind == "grpc_predict":
            return lambda: (client.recommend("shop", self._rows(rng), k=10) if rng.random() < 0.5
                            else client.next_items(self._rows(rng), k=10))
        if kind == "rest_predict":
            return lambda: (client.classify("genre", self._rows(rng)) if rng.random() < 0.5
                            else client.next_items(self._rows(rng), k=10))
        from tensorflow_serving.apis import classification_pb2

        signature = classify_signature(stub, "genre")

        def classify():
            request = classification_pb2.ClassificationRequest()
            request.model_spec.name = MODEL
            request.model_spec.signature_name = signature
            for row in self._rows(rng):
                example = request.input.example_list.examples.add()
                example.features.feature["items"].bytes_list.value.extend(item.encode() for item in row)
            stub.Classify(request, timeout=30)

        return classify


def push_versions(command, seconds: float, duration: float, started: float, stop: threading.Event, pushes):
    """Runs ``peterrec export`` every ``seconds`` until ``duration``; records (time, rc, seconds, last line)."""
    number = 1
    while not stop.wait(max(0.0, started + number * seconds - time.monotonic())):
        if number * seconds >= duration:
            return
        began = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        lines = (done.stdout + done.stderr).strip().splitlines()
        pushes.append((began - started, done.returncode, time.monotonic() - began, lines[0] if lines else ""))
        number += 1


def sample_rss(server: ServerProcess, every: float, started: float, stop: threading.Event, samples) -> None:
    """Appends (time, RSS MB) of the server every ``every`` seconds."""
    while True:
        samples.append((time.monotonic() - started, server.rss_mb()))
        if stop.wait(every):
            return


def minute_table(records, samples, pushes, minutes: int):
    """One row per minute: [minute, requests, failed, p50 ms, p99 ms, RSS MB, versions pushed]."""
    rows = []
    for minute in range(minutes):
        low = minute * 60.0
        # The last row also takes the requests that were in flight when the load stopped.
        high = (minute + 1) * 60.0 if minute + 1 < minutes else float("inf")
        latencies = [r[2] * 1000 for r in records if low <= r[0] < high]
        failed = sum(1 for r in records if low <= r[0] < high and r[3])
        rss = [mb for t, mb in samples if t < high]
        pushed = [line.split(" version ")[1].split()[0] if " version " in line else f"rc {rc}"
                  for t, rc, _, line in pushes if low <= t < high]
        rows.append([minute + 1, len(latencies), failed,
                     f"{np.percentile(latencies, 50):.1f}" if latencies else "-",
                     f"{np.percentile(latencies, 99):.1f}" if latencies else "-",
                     f"{rss[-1]:.0f}" if rss else "-", ", ".join(pushed) or "-"])
    return rows


def markdown(headers, rows) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_lines(records, samples, pushes):
    """Totals, failures by message, latency per kind, RSS growth and the pushes."""
    failures = collections.Counter(r[3] for r in records if r[3])
    lines = [f"requests: {len(records)}, failed: {sum(failures.values())}"]
    lines += [f"  {count} x {message}" for message, count in failures.most_common(5)]
    for kind in KINDS:
        latencies = [r[2] * 1000 for r in records if r[1] == kind]
        if latencies:
            lines.append(f"{kind}: {len(latencies)} requests, p50 {np.percentile(latencies, 50):.1f} ms, "
                         f"p99 {np.percentile(latencies, 99):.1f} ms")
    after_first = [mb for t, mb in samples if t >= 60.0] or [mb for _, mb in samples]
    if samples:
        lines.append(f"server RSS: {samples[0][1]:.0f} MB at start, {after_first[0]:.0f} MB after the first minute, "
                     f"{samples[-1][1]:.0f} MB at the end (max {max(mb for _, mb in samples):.0f} MB; "
                     f"growth after the first minute {samples[-1][1] - after_first[0]:+.0f} MB)")
    ok = sum(1 for _, rc, _, _ in pushes if rc == 0)
    lines.append(f"versions pushed: {ok} of {len(pushes)} exports succeeded "
                 f"(median {np.median([p[2] for p in pushes]) if pushes else 0:.1f} s each)")
    lines += [f"  push at {t:.0f} s failed (rc {rc}): {line}" for t, rc, _, line in pushes if rc != 0]
    return lines


def run(args) -> int:
    """The soak: set up, load with pushes, report."""
    workdir = args.workdir or tempfile.mkdtemp(prefix="peterrec-soak-")
    os.makedirs(workdir, exist_ok=True)
    dilations = tuple(int(d) for d in args.dilations.split(","))
    print(f"[setup] artifacts and version 1 in {workdir}", flush=True)
    made = write_artifacts(os.path.join(workdir, "artifacts"), args.items, args.dim, dilations)
    model_base = os.path.join(workdir, "models", MODEL)
    command = export_command(made, model_base)
    subprocess.run(command, check=True, capture_output=True)
    server = ServerProcess(os.path.join(workdir, "models", "models.config"), os.path.join(workdir, "server.log"))
    try:
        wait_until_serving(server)
        from peterrec.serving.random_artifacts import item_vocabulary

        tokens = item_vocabulary(args.items).tokens
        duration = args.minutes * 60.0
        print(f"[soak] {args.minutes} min, {args.clients} clients, a push every {args.push_seconds:.0f} s; "
              f"server pid {server.process.pid}", flush=True)
        load = Load(server, args.clients, tokens, args.seed)
        samples, pushes = [], []
        stop = threading.Event()
        load.start()
        helpers = [threading.Thread(target=push_versions, daemon=True,
                                    args=(command, args.push_seconds, duration, load.started, stop, pushes)),
                   threading.Thread(target=sample_rss, daemon=True,
                                    args=(server, args.rss_seconds, load.started, stop, samples))]
        for helper in helpers:
            helper.start()
        while time.monotonic() - load.started < duration and server.process.poll() is None:
            time.sleep(1.0)
        stop.set()
        load.join()
        for helper in helpers:
            helper.join(timeout=300)
        alive = server.process.poll() is None
    finally:
        server.stop()
    headers = ["minute", "requests", "failed", "p50 ms", "p99 ms", "server RSS MB", "versions pushed"]
    rows = minute_table(load.records, samples, pushes, int(np.ceil(args.minutes)))
    lines = summary_lines(load.records, samples, pushes)
    if not alive:
        lines.append(f"the server process died (exit {server.process.returncode}); see {workdir}/server.log")
    print(markdown(headers, rows))
    print("\n".join(lines))
    if args.out:
        write_report(args, headers, rows, lines)
        print(f"wrote {args.out}")
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    failed = sum(1 for r in load.records if r[3])
    return 0 if alive and failed == 0 and all(p[1] == 0 for p in pushes) else 1


def write_report(args, headers, rows, lines) -> None:
    """The markdown result at ``--out``."""
    load = os.getloadavg()
    text = [f"# Server soak: {args.minutes:g} minutes, a version pushed every {args.push_seconds:g} s",
            "", f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs "
            f"(load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}) with",
            "", "    " + " ".join(["python", "benchmarks/soak.py"] + sys.argv[1:]), "",
            f"{args.clients} client threads (gRPC Predict, gRPC Classify, REST predict in turn), "
            f"{args.items} items, d={args.dim}, dilations {args.dilations}.", "",
            markdown(headers, rows), "", "```", *lines, "```", ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        handle.write("\n".join(text))


def main(argv=None) -> int:
    """Parses the arguments and runs the soak."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--push-seconds", type=float, default=60.0, help="seconds between pushes (default 60)")
    parser.add_argument("--clients", type=int, default=6, help="client threads (default 6: two of each kind)")
    parser.add_argument("--rss-seconds", type=float, default=5.0, help="how often RSS is sampled (default 5)")
    parser.add_argument("--items", type=int, default=1000, help="item vocabulary size (default 1000)")
    parser.add_argument("--dim", type=int, default=32, help="embedding width (default 32)")
    parser.add_argument("--dilations", default="1,2,4,8", help="conv dilations, two per block (default 1,2,4,8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the requests (default 0)")
    parser.add_argument("--workdir", default=None, help="keep artifacts, versions and server.log here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working folder")
    parser.add_argument("--out", default=None, help="write the markdown result here (default: print only)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.push_seconds <= 0 or args.clients < 1:
        parser.error("--minutes, --push-seconds must be > 0 and --clients >= 1")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
