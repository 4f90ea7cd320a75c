"""TensorBoard over the training runs: find their log folders, serve them, read their scalars.

    peterrec tensorboard --logdir PIPELINE_ROOT          # every Trainer run of the pipeline
    peterrec tensorboard --logdir RUN_OUTPUT/logs --port 6006

TensorBoard walks ``--logdir`` recursively, so a pipeline root shows every Trainer's run
(pretraining and each task: ``Trainer_<name>/model_run/<execution>/...``) side by side.
It binds 127.0.0.1 unless ``--host`` says otherwise.

``TensorBoardProcess`` runs TensorBoard as a child process on a free loopback port (what the
tests and scripts use) and reads its HTTP scalars API::

    with TensorBoardProcess(logdir) as board:
        tags = board.scalar_tags()                    # {run: [tag, ...]}
        points = board.scalars(run, "epoch_loss")     # [(wall_time, step, value), ...]
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Optional, Sequence, Tuple

EVENT_FILE_MARKER = "tfevents"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def event_dirs(logdir: str) -> List[str]:
    """Folders under ``logdir`` that hold TensorBoard event files (TensorBoard's runs)."""
    found = []
    for folder, _, files in os.walk(logdir):
        if any(EVENT_FILE_MARKER in name for name in files):
            found.append(folder)
    return sorted(found)


def tensorboard_argv(logdir: str, port: int, host: str = "127.0.0.1", reload_interval: float = 5.0) -> List[str]:
    """TensorBoard's own command-line flags for serving ``logdir``."""
    return ["--logdir", os.path.abspath(logdir), "--port", str(int(port)), "--host", host,
            "--reload_interval", str(reload_interval), "--load_fast", "false"]


def ensure_pkg_resources() -> None:
    """Makes ``import pkg_resources`` work for TensorBoard 2.16 when setuptools no longer has it.

    TensorBoard 2.16 imports ``pkg_resources`` for two things only: plugin entry points and
    ``parse_version``. setuptools 81 and later dropped the module; this stand-in provides those
    two from the standard library (``importlib.metadata``) and ``packaging``. With a setuptools
    that still ships ``pkg_resources`` nothing changes.
    """
    try:
        import pkg_resources  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
        return
    except ImportError:
        pass
    import importlib.metadata
    import types

    def iter_entry_points(group: str, name: Optional[str] = None):
        for entry_point in importlib.metadata.entry_points().select(group=group):
            if name is None or entry_point.name == name:
                entry_point.resolve = entry_point.load  # what TensorBoard calls
                yield entry_point

    def parse_version(version: str):
        from packaging.version import Version

        return Version(version)

    module = types.ModuleType("pkg_resources")
    module.__doc__ = "peterrec's stand-in for the parts of pkg_resources TensorBoard 2.16 uses."
    module.iter_entry_points = iter_entry_points
    module.parse_version = parse_version
    sys.modules["pkg_resources"] = module


def serve_forever(logdir: str, port: int = 6006, host: str = "127.0.0.1") -> int:
    """Serves ``logdir`` in this process until interrupted (the ``peterrec tensorboard`` command)."""
    ensure_pkg_resources()
    from tensorboard import program

    board = program.TensorBoard()
    board.configure(argv=[sys.argv[0], *tensorboard_argv(logdir, port, host)])
    return int(board.main() or 0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m peterrec.pipeline.tensorboard --logdir D --port P [--host H]`` (what the child runs)."""
    import argparse

    parser = argparse.ArgumentParser(description="TensorBoard over peterrec training runs")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--port", type=int, default=6006)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    return serve_forever(args.logdir, args.port, args.host)


class TensorBoardError(RuntimeError):
    """TensorBoard did not start or answered an API call with an error."""


class TensorBoardProcess:
    """TensorBoard in a child process on a free loopback port; use as a context manager."""

    def __init__(self, logdir: str, port: Optional[int] = None, host: str = "127.0.0.1",
                 startup_timeout: float = 120.0):
        self.logdir = os.path.abspath(logdir)
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> "TensorBoardProcess":
        """Starts TensorBoard and waits until its HTTP API answers."""
        command = [sys.executable, "-m", "peterrec.pipeline.tensorboard", "--logdir", self.logdir,
                   "--port", str(self.port), "--host", self.host]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode("utf-8", "replace") if self.process.stderr else ""
                raise TensorBoardError(f"TensorBoard exited with status {self.process.returncode}: {error[-2000:]}")
            try:
                self.get("/data/logdir")
                return self
            except (urllib.error.URLError, ConnectionError, TensorBoardError):
                time.sleep(0.5)
        self.stop()
        raise TensorBoardError(f"TensorBoard did not answer on {self.url} within {self.startup_timeout:.0f} s")

    def stop(self) -> None:
        """Stops the child process (the one this object started, by its pid)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        if self.process is not None and self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def __enter__(self) -> "TensorBoardProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def get(self, path: str, params: Optional[Dict[str, str]] = None, timeout: float = 30.0):
        """GETs an API path and returns the decoded JSON."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raise TensorBoardError(f"GET {path}{query}: HTTP {error.code}") from error

    def scalar_tags(self) -> Dict[str, List[str]]:
        """``{run: [scalar tag, ...]}`` TensorBoard has loaded."""
        data = self.get("/data/plugin/scalars/tags")
        return {run: sorted(tags) for run, tags in data.items()}

    def scalars(self, run: str, tag: str) -> List[Tuple[float, int, float]]:
        """The ``(wall_time, step, value)`` points of one scalar series."""
        return [tuple(point) for point in self.get("/data/plugin/scalars/scalars", {"run": run, "tag": tag})]

    def wait_for_scalars(self, runs: Sequence[str] = (), timeout: float = 60.0) -> Dict[str, List[str]]:
        """Polls until the given runs (or any run, when none given) have scalar tags."""
        deadline = time.monotonic() + timeout
        tags: Dict[str, List[str]] = {}
        while time.monotonic() < deadline:
            tags = self.scalar_tags()
            if (all(tags.get(run) for run in runs) if runs else any(tags.values())):
                return tags
            time.sleep(0.5)
        raise TensorBoardError(f"no scalars for runs {list(runs) or 'any'} after {timeout:.0f} s; loaded: {tags}")


if __name__ == "__main__":
    sys.exit(main())
