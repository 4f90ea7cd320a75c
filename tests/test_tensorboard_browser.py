"""TensorBoard as a user sees it: a tiny pretraining run laid out as under a TFX pipeline root,
TensorBoard started on the pipeline root and on the run's own log dir, and its scalars, hparams
and projector views loaded in headless Chromium.

Chromium is driven through the DevTools protocol (``--remote-debugging-port``), because the
views are web components: their text sits in shadow roots (and the projector in an iframe),
which ``--dump-dom`` does not print. For each view the test checks two things:

- what the page rendered: the text of the document, walked through shadow roots and
  same-origin iframes (tags, run names, the hparams session table, the projector's
  "Points: N" over the item vocabulary), and
- that the page's own data requests (seen as network responses) answered 200: the scalar
  series, the hparams session groups, the projector's tensor and its labels.

Chromium is Debian's ``chromium`` (``tools/install_chromium.sh`` installs it); without it the
test is skipped; ``make test`` installs it first, so CI runs the test.
"""

import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A tiny pretraining run and two TensorBoard processes: about 75 s of CPU (tagged heavy in tests/BUILD).
pytestmark = [pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed: run tools/install_chromium.sh")]
websocket = pytest.importorskip("websocket", reason="websocket-client (in requirements/lock.txt) is not installed")

RUN_DIR = os.path.join("Trainer", "model_run", "1")  # where a TFX Trainer puts a run under the pipeline root
EPOCHS = 2
VIEW_TIMEOUT = 120.0

# The text of the document, through shadow roots and same-origin iframes, one piece per line.
DEEP_TEXT = r"""
(() => {
  const out = [];
  const walk = (node) => {
    if (!node) return;
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent.trim();
      if (text) out.push(text);
      return;
    }
    if (node.tagName === 'SCRIPT' || node.tagName === 'STYLE') return;
    if (node.shadowRoot) walk(node.shadowRoot);
    if (node.tagName === 'IFRAME') { try { walk(node.contentDocument); } catch (e) { out.push('<' + e + '>'); } }
    for (const child of node.childNodes) walk(child);
  };
  walk(document);
  return out.join('\n');
})()
"""


class Chromium:
    """Headless Chromium driven over the DevTools protocol: open a URL, read its text, its responses."""

    def __init__(self, profile_dir: str):
        # --no-sandbox: Chromium refuses to run as root with its sandbox (CI runs as root).
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile_dir}",
             "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(profile_dir, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.2)
        with open(port_file) as handle:
            port = handle.read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30) as response:
            [page] = [t for t in json.loads(response.read()) if t["type"] == "page"]
        self.socket = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.ids = itertools.count(1)
        self.responses = {}  # URL -> HTTP status of every response the page received
        self.call("Page.enable")
        self.call("Network.enable")

    def call(self, method: str, **params):
        """Sends one DevTools command and returns its result (recording network events meanwhile)."""
        message_id = next(self.ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("method") == "Network.responseReceived":
                response = message["params"]["response"]
                self.responses[response["url"]] = response["status"]
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def text(self) -> str:
        """The page's text, shadow roots and iframes included."""
        return self.call("Runtime.evaluate", expression=DEEP_TEXT, returnByValue=True)["result"].get("value", "")

    def open_until(self, url: str, patterns, requests=(), timeout: float = VIEW_TIMEOUT) -> str:
        """Opens ``url`` and waits until its text matches every regex in ``patterns`` and, for every
        path in ``requests``, the page has fetched a URL containing it with HTTP 200; returns the text."""
        self.responses.clear()
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(re.search(p, text) for p in patterns) and all(self.ok_responses(r) for r in requests):
                return text
            time.sleep(0.5)
        missing = [p for p in patterns if not re.search(p, text)] + [r for r in requests if not self.ok_responses(r)]
        raise AssertionError(f"{url}: after {timeout:.0f} s the page lacks {missing}; fetched "
                             f"{sorted(self.responses.items())}; it shows:\n{text[-3000:]}")

    def ok_responses(self, path: str):
        """The URLs containing ``path`` the page fetched with HTTP 200."""
        return [url for url, status in self.responses.items() if path in url and status == 200]

    def screenshot(self, path: str) -> None:
        """Saves a PNG of the page (for a person looking into a failure)."""
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(self.call("Page.captureScreenshot")["data"]))

    def close(self) -> None:
        """Closes the connection and stops the Chromium this object started."""
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def pipeline_root(tmp_path_factory):
    """A pipeline root holding one tiny pretraining run (2 epochs) where a Trainer would put it."""
    from peterrec.trainer import tiny_examples
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("browser")
    data = tiny_examples.write_tiny_dataset(str(root / "data"))
    config = PretrainConfig.from_dict({"backbone": {"embedding_dim": 8, "dilations": [1, 2]}, "epochs": EPOCHS,
                                       "batch_size": 32, "early_stopping_patience": 0, "verbose": 0})
    pipeline = root / "pipeline"
    pretrain(data.pretrain_examples, data.item_vocabulary_dir, str(pipeline / RUN_DIR), config)
    return str(pipeline), data.item_vocabulary


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module."""
    chromium = Chromium(str(tmp_path_factory.mktemp("chromium-profile")))
    yield chromium
    chromium.close()


@pytest.mark.parametrize("opened_on", ["pipeline root", "run"])
def test_scalars_hparams_and_projector_show_data_in_a_browser(pipeline_root, browser, opened_on, tmp_path):
    from peterrec.pipeline.tensorboard import TensorBoardProcess

    root, vocabulary = pipeline_root
    logdir = root if opened_on == "pipeline root" else os.path.join(root, RUN_DIR, "logs")
    prefix = "" if opened_on == "run" else RUN_DIR.replace(os.sep, "/") + "/logs/"
    with TensorBoardProcess(logdir, startup_timeout=300) as board:
        board.wait_for_scalars(runs=[f"{prefix}train", f"{prefix}validation"])
        try:
            browser.open_until(f"{board.url}/#scalars",
                               [r"(?m)^epoch_loss$", r"(?m)^epoch_ndcg@10$", re.escape(f"{prefix}train"),
                                re.escape(f"{prefix}validation")],
                               requests=["/data/plugin/scalars/scalars_multirun"])

            # On a run's own log dir the hparams session is TensorBoard's run ".", and TensorBoard
            # (2.16) then finds no metric runs below it; the session and its hparams still show.
            metrics = [r"(?m)^validation\.epoch_ndcg@10$"] if opened_on == "pipeline root" else []
            browser.open_until(f"{board.url}/#hparams",
                               [r"Number of matching session groups: 1\b", r"(?m)^backbone\.embedding_dim$",
                                r"(?m)^\[1, 2\]$", *metrics],
                               requests=["/data/plugin/hparams/session_groups"])

            text = browser.open_until(f"{board.url}/#projector",
                                      [r"1 tensor found", r"item_embedding/\.ATTRIBUTES/VARIABLE_VALUE",
                                       rf"Points:\s+{len(vocabulary)}\b", r"Dimension:\s+8\b"],
                                      requests=["/data/plugin/projector/tensor", "/data/plugin/projector/metadata"])
            assert "No checkpoint was found" not in text
            [metadata_url] = browser.ok_responses("/data/plugin/projector/metadata")
            with urllib.request.urlopen(metadata_url, timeout=30) as response:  # the labels the page got
                assert response.read().decode("utf-8").splitlines() == vocabulary.all_tokens()
        except AssertionError:
            browser.screenshot(str(tmp_path / "failed-view.png"))
            raise
