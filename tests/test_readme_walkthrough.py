"""The README's MovieLens walkthrough, run as written, so that the README and the CLI cannot drift apart.

The walkthrough is the ``bash`` block between ``<!-- walkthrough:start`` and
``<!-- walkthrough:end -->`` in README.md. The fast test parses every ``peterrec`` command of
it with the real argument parser. The slow test writes a small data set in MovieLens-1M's
format (``ratings.dat``, ``users.dat``, ``movies.dat`` from the seeded synthetic generator),
changes only the values of the block's own variables (``ML``, the epochs, the ports), runs
the whole block with bash in a temporary folder (``set -e``: every command must exit 0) and
checks what it leaves: the patches, the served model, and the server's JSON answers.
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
START, END = "<!-- walkthrough:start", "<!-- walkthrough:end -->"
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(\S*)(\s+#.*)?$")

# The movie ids the walkthrough's predict commands send; the small data set has them too.
QUERY_MOVIES = (1193, 661, 914)
ML_AGES = ("18", "25", "35", "45", "56")  # ML-1M bucket codes for the synthetic age labels


def walkthrough() -> str:
    """The text of the README's walkthrough block (without the fence lines)."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    assert text.count(START) == 1 and text.count(END) == 1, "README.md must mark exactly one walkthrough"
    block = text[text.index(START):text.index(END)]
    fence = re.search(r"```bash\n(.*?)```", block, re.S)
    assert fence, "the walkthrough markers must hold a ```bash block"
    return fence.group(1)


def with_values(script: str, values: dict) -> str:
    """``script`` with the values of its top-level ``NAME=value`` lines replaced; every name must occur."""
    found, lines = set(), []
    for line in script.splitlines():
        match = ASSIGNMENT.match(line)
        if match and match.group(1) in values:
            found.add(match.group(1))
            line = f"{match.group(1)}={shlex.quote(str(values[match.group(1)]))}{match.group(3) or ''}"
        lines.append(line)
    missing = set(values) - found
    assert not missing, f"the walkthrough no longer sets {sorted(missing)}"
    return "\n".join(lines) + "\n"


def commands(script: str):
    """The ``peterrec`` commands of ``script`` as argument lists, continuations joined and the
    block's own variables expanded."""
    variables = {m.group(1): m.group(2) for m in map(ASSIGNMENT.match, script.splitlines()) if m}
    joined = re.sub(r"\\\n\s*", " ", script)
    result = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip().rstrip("&").strip()
        if line.startswith("peterrec "):
            line = re.sub(r"\$([A-Z_][A-Z0-9_]*)", lambda m: variables.get(m.group(1), m.group(0)), line)
            result.append(shlex.split(line)[1:])
    return result


def test_every_walkthrough_command_parses():
    from peterrec.cli import build_parser

    found = commands(walkthrough())
    subcommands = [args[0] if args[0] != "task-examples" else " ".join(args[:2]) for args in found]
    for expected in ("ingest", "task-examples attribute", "pretrain", "finetune", "export", "serve", "predict"):
        assert expected in subcommands, f"the walkthrough lost its {expected} step"
    parser = build_parser()
    for args in found:
        parsed = parser.parse_args(args)  # exits (SystemExit) on an unknown or missing flag
        assert parsed.handler is not None
        if args[0] == "finetune":
            assert parsed.task_vocabulary, "finetune needs the task's label vocabulary"


def write_movielens(folder: str, users: int = 150) -> None:
    """A small MovieLens-1M folder from the synthetic generator: source items are Comedy/Drama,
    target items Action (the movielens-genre rule's target domain); ratings are all 4."""
    from peterrec.components import synthetic

    config = synthetic.SyntheticConfig(users=users, source_items=60, target_items=30, min_source_len=8,
                                       max_source_len=25, min_target_len=1, max_target_len=4, seed=3)
    rows, genders, ages, _ = synthetic.generate_rows(config)
    items = sorted({item for _, item, _, _ in rows})
    free_ids = (i for i in range(1, 10_000) if i not in QUERY_MOVIES)
    movie = {item: (QUERY_MOVIES[n] if n < len(QUERY_MOVIES) else next(free_ids)) for n, item in enumerate(items)}
    user = {name: number for number, (name, _) in enumerate(genders, start=1)}
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "ratings.dat"), "w", encoding="latin-1") as handle:
        handle.writelines(f"{user[u]}::{movie[item]}::4::{ts}\n" for u, item, ts, _ in rows)
    with open(os.path.join(folder, "users.dat"), "w", encoding="latin-1") as handle:
        for (name, gender), (_, age) in zip(genders, ages):
            code = ML_AGES[synthetic.AGE_LABELS.index(age)]
            handle.write(f"{user[name]}::{gender}::{code}::{user[name] % 21}::12345\n")
    with open(os.path.join(folder, "movies.dat"), "w", encoding="latin-1") as handle:
        for item in items:
            genres = "Comedy|Drama" if item.startswith("s") else "Action|Comedy"
            handle.write(f"{movie[item]}::Movie {item} (2000)::{genres}\n")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def json_answers(stdout: str):
    """Every JSON object printed from the start of a line of ``stdout``."""
    decoder, found = json.JSONDecoder(), []
    for match in re.finditer(r"^\{", stdout, re.M):
        try:
            found.append(decoder.raw_decode(stdout[match.start():])[0])
        except json.JSONDecodeError:
            continue
    return found


def _activation(folder: str) -> None:
    """Stands in for ``.venv/bin/activate``: this interpreter's ``peterrec`` comes first on PATH."""
    bin_dir = os.path.dirname(sys.executable)
    lines = [f"export PATH={shlex.quote(bin_dir)}:\"$PATH\""]
    if not os.path.exists(os.path.join(bin_dir, "peterrec")):
        lines.append(f"peterrec() {{ {shlex.quote(sys.executable)} -m peterrec.cli \"$@\"; }}")
    os.makedirs(os.path.join(folder, ".venv", "bin"))
    with open(os.path.join(folder, ".venv", "bin", "activate"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


@pytest.mark.slow
# The whole walkthrough: about 10 min on a quiet 2-core machine, over the suite-wide 900 s
# pytest-timeout when the machine is busy; the bash run itself gives up after 1800 s.
@pytest.mark.timeout(2400)
def test_walkthrough_runs_as_written_on_small_movielens_data(tmp_path):
    write_movielens(str(tmp_path / "ml-1m"))
    _activation(str(tmp_path))
    script = with_values(walkthrough(), {"ML": tmp_path / "ml-1m", "PRETRAIN_EPOCHS": 1, "FINETUNE_EPOCHS": 1,
                                         "GRPC_PORT": _free_port(), "REST_PORT": _free_port()})
    prologue = ("set -eo pipefail\n"
                "trap 'echo \"walkthrough command failed: $BASH_COMMAND\" >&2' ERR\n"
                "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n")
    env = {**os.environ, "PETERREC_BEAM_IN_MEMORY": "1"}  # one process for Beam, as every test
    process = subprocess.Popen(["bash", "-c", prologue + script], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        stdout, stderr = process.communicate()
        pytest.fail(f"the walkthrough did not finish in 30 min; stderr:\n{stderr[-3000:]}")
    assert process.returncode == 0, f"stderr:\n{stderr[-5000:]}\nstdout:\n{stdout[-3000:]}"

    runs = tmp_path / "runs"
    for task in ("gender", "age"):
        metrics = json.loads((runs / f"ft-{task}" / "metrics.json").read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert (runs / f"ft-{task}" / "patch" / "metadata.json").exists()
    assert (runs / "serving" / "peterrec" / "1" / "saved_model.pb").exists()
    assert (runs / "serving" / "models.config").exists()
    answers = {answer["task"]: answer for answer in json_answers(stdout) if "task" in answer}
    assert answers["gender"]["kind"] == "classification" and answers["gender"]["answer"]["label"] in ("F", "M")
    assert answers["age"]["answer"]["label"] in ML_AGES
    assert set(answers["age"]["answer"]["probabilities"]) == set(ML_AGES)
    assert len(answers["next_items"]["answer"]) == 5
