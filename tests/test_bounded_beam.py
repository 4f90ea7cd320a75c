"""With a cap, a user with a million events costs ingestion no more memory than a user with a thousand.

Two capped ingestions (``--max-len 100``) of the same million events, one spread over 1,000
users of 1,000 events, one with a single user holding them all: the runner buffers the same
volume in both, so the difference in peak RSS is what the long history costs, and with a
cap the per-user accumulator holds at most ``2 * max_len + 16`` events (``event_columns``).
A regression guard (the code before the column accumulator bounded capped users too); the
tests that fail on that code are the accumulator tests in tests/test_beam_steps.py (in
``make test``), which measure whole histories at 32 bytes an event instead of about 210.
This one runs two full ingestions of a million events (slow).
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = 1_000_000
RUN_AND_REPORT_PEAK = (
    "import resource, sys\n"
    "from peterrec import cli\n"
    "status = cli.main(sys.argv[1:])\n"
    "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(status)\n")


def _write_events(path, users):
    """``EVENTS`` interactions over ``users`` users (round robin), 500 items, in a generic CSV."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("user,item,timestamp\n")
        handle.writelines(f"u{n % users},i{(n * 7919) % 500},{1_000_000 + n}\n" for n in range(EVENTS))


def _peak_kb(source, output, *extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(ROOT), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_PEAK, "ingest", "--format", "csv", "--source", source,
         "--output", output, "--split", "train=1", "--num-shards", "1", *extra],
        env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    return int(result.stderr.rsplit("PEAK_KB", 1)[1].split()[0])


@pytest.mark.slow
def test_a_capped_million_event_user_costs_no_more_than_a_thousand_users(tmp_path):
    spread, skewed = str(tmp_path / "spread.csv"), str(tmp_path / "skewed.csv")
    _write_events(spread, users=1000)
    _write_events(skewed, users=1)
    cap = ("--max-len", "100")
    peaks = [_peak_kb(path, str(tmp_path / f"out{n}"), *cap) for n, path in enumerate((spread, skewed))]
    extra_mb = (peaks[1] - peaks[0]) / 1024
    assert extra_mb < 40, f"one capped user of {EVENTS:,} events cost {extra_mb:.0f} MB more than 1,000 users"
