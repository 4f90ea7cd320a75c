"""Ingestion benchmark: the Beam pipeline against a plain pandas implementation of the same job.

    python benchmarks/ingest.py --movielens ../shared/data/ml-1m [--max-len 0] [--beam-arg=--direct_num_workers=2]

It also runs Beam's in-memory DirectRunner (``--no-in-memory`` skips it), which shows how
much of the default multi-processing run is worker start-up.

Both implementations read MovieLens-1M ``ratings.dat``, order each user's ratings by
timestamp (ties by line), keep whole histories (or the most recent ``--max-len``), build the
frequency-sorted item vocabulary over every interaction, split users by the hash of their id and write GZIP TFRecords of the same
``tf.train.Example``s. Each runs in its own subprocess while this process samples the RSS
of that subprocess *and all its descendants* (Beam's worker processes) every 20 ms; the
peak of the sum is reported, next to the largest single process of the tree
(``getrusage`` maxima of the worker and of its children). Throughput is interactions read per second of work (after imports). The outputs
are then read back and compared user by user; the table is printed with the ratio.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.abspath(__file__)
KINDS = ("beam", "beam-in-memory", "pandas")


# ----------------------------------------------------------------------------- the two workers


def _write_tfrecords(path: str, records) -> None:
    """Writes GZIP TFRecord framing (length, masked CRC32C, data, masked CRC32C) without TensorFlow."""
    import gzip
    import struct

    import crcmod.predefined

    crc32c = crcmod.predefined.mkCrcFun("crc-32c")

    def masked(data: bytes) -> int:
        crc = crc32c(data)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    with gzip.open(path, "wb", compresslevel=6) as handle:
        for record in records:
            length = struct.pack("<Q", len(record))
            handle.write(length + struct.pack("<I", masked(length)) + record + struct.pack("<I", masked(record)))


def pandas_ingest(movielens: str, out: str, max_len: int) -> int:
    """The same sequences with pandas: returns the number of interactions read."""
    import collections

    import pandas as pd

    from peterrec.components import example_codec, example_format, splits
    from peterrec.components.vocabulary import Vocabulary

    # '::' is two ':' separators around empty columns, which the fast C parser handles.
    frame = pd.read_csv(os.path.join(movielens, "ratings.dat"), sep=":", header=None, usecols=[0, 2, 6],
                        names=["user", "e1", "item", "e2", "rating", "e3", "timestamp"], engine="c",
                        dtype={"user": "int64", "item": "int64", "timestamp": "int64"})
    frame["line"] = range(1, len(frame) + 1)
    frame = frame.sort_values(["user", "timestamp", "line"], kind="stable")
    kept = frame if not max_len else frame.groupby("user", sort=False).tail(max_len)
    kept = kept.assign(item=kept["item"].astype(str))
    # As the Beam ingestion: the vocabulary counts every interaction, truncated ones too.
    vocabulary = Vocabulary.from_counts("item", collections.Counter(frame["item"].astype(str)))
    os.makedirs(os.path.join(out, "vocabulary"), exist_ok=True)
    with open(os.path.join(out, "vocabulary", "vocabulary.json"), "w", encoding="utf-8") as handle:
        json.dump(vocabulary.to_json_dict(), handle)
    lookup = {token: vocabulary.lookup(token) for token in vocabulary.tokens}
    kept = kept.assign(item_id=kept["item"].map(lookup))
    by_split = collections.defaultdict(list)
    for user, group in kept.groupby("user", sort=True):
        user = str(user)
        by_split[splits.assign_split(user)].append(example_codec.encode_example(
            user, group["item_id"].tolist(), group["timestamp"].tolist()))
    for split in example_format.SPLITS:
        folder = example_format.split_dir(os.path.join(out, "examples"), split)
        os.makedirs(folder, exist_ok=True)
        _write_tfrecords(os.path.join(folder, f"{example_format.FILE_PREFIX}-00000-of-00001.gz"), by_split[split])
    return len(frame)


def beam_ingest(movielens: str, out: str, max_len: int, beam_args) -> int:
    """The Beam pipeline (``run_ingestion``): returns the number of interactions read."""
    from peterrec.components.ingest import IngestConfig, run_ingestion

    summary = run_ingestion(IngestConfig("movielens-1m", movielens, max_len=max_len or None),
                            os.path.join(out, "examples"), os.path.join(out, "vocabulary"),
                            os.path.join(out, "rejects"), beam_pipeline_args=beam_args)
    return summary.read


def worker(kind: str, movielens: str, out: str, max_len: int, beam_args, result_path: str) -> None:
    """Runs one implementation after its imports and writes {read, seconds} to result_path."""
    import peterrec  # noqa: F401

    if kind == "pandas":
        import pandas  # noqa: F401  (imports are not part of the measured work)
    else:
        import apache_beam  # noqa: F401
    if kind == "beam-in-memory":
        beam_args = list(beam_args) + ["--direct_running_mode=in_memory"]
    started = time.perf_counter()
    read = pandas_ingest(movielens, out, max_len) if kind == "pandas" else beam_ingest(movielens, out, max_len, beam_args)
    seconds = time.perf_counter() - started
    import resource

    largest = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024  # Linux reports KiB
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump({"read": read, "seconds": seconds, "max_process_rss": largest}, handle)


# ----------------------------------------------------------------------------- measuring


def measure(kind: str, args, workdir: str) -> dict:
    """Runs a worker subprocess and samples the RSS of its whole process tree."""
    import psutil

    out = os.path.join(workdir, kind)
    result_path = os.path.join(workdir, f"{kind}.json")
    command = [sys.executable, HERE, "--worker", kind, "--movielens", args.movielens, "--max-len", str(args.max_len or 0),
               "--out", out, "--result", result_path] + [f"--beam-arg={a}" for a in args.beam_arg]
    env = dict(os.environ)
    env.pop("PETERREC_BEAM_IN_MEMORY", None)  # the real default: multi-processing
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env)
    root = psutil.Process(process.pid)
    peak = 0
    peak_processes = 0
    while process.poll() is None:
        total, count = 0, 0
        try:
            tree = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for proc in tree:
            try:
                total += proc.memory_info().rss
                count += 1
            except psutil.NoSuchProcess:
                pass
        if total > peak:
            peak, peak_processes = total, count
        time.sleep(0.02)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"the {kind} run failed with exit status {process.returncode}")
    with open(result_path, encoding="utf-8") as handle:
        result = json.load(handle)
    result.update(kind=kind, wall=wall, peak_rss=peak, processes=peak_processes, out=out)
    return result


def compare_outputs(beam_out: str, pandas_out: str):
    """Reads both outputs back: (equal?, number of users, vocabulary fingerprints equal?)."""
    import peterrec  # noqa: F401
    from peterrec.components import example_format
    from peterrec.components.vocabulary import Vocabulary

    def load(out):
        vocabulary = Vocabulary.load(os.path.join(out, "vocabulary"))
        users = {}
        for split in example_format.SPLITS:
            for example in example_format.read_examples(os.path.join(out, "examples"), split):
                row = example_format.example_to_dict(example)
                users[row["user_id"]] = (split, row["item_ids"], row["timestamps"])
        return vocabulary, users

    beam_vocabulary, beam_users = load(beam_out)
    pandas_vocabulary, pandas_users = load(pandas_out)
    return beam_users == pandas_users, len(beam_users), beam_vocabulary == pandas_vocabulary


def format_table(results, equal: bool, users: int, same_vocabulary: bool) -> str:
    """The printed table: throughput and peak memory of each run, and the ratios."""
    from peterrec.components.beam_options import available_cpus

    rows = [("implementation", "interactions", "work s", "interactions/s", "wall s", "peak RSS MB (procs)",
             "largest proc MB")]
    for r in results:
        rows.append((r["kind"], f"{r['read']:,}", f"{r['seconds']:.1f}", f"{r['read'] / r['seconds']:,.0f}",
                     f"{r['wall']:.1f}", f"{r['peak_rss'] / 2**20:,.0f} ({r['processes']})",
                     f"{r['max_process_rss'] / 2**20:,.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    beam, pandas = results[0], results[-1]
    lines.append("")
    lines.append(f"throughput ratio beam/pandas: {(beam['read'] / beam['seconds']) / (pandas['read'] / pandas['seconds']):.2f}"
                 f"   peak memory ratio beam/pandas: {beam['peak_rss'] / pandas['peak_rss']:.2f}")
    lines.append(f"beam = DirectRunner, multi_processing over {available_cpus()} workers (the default); "
                 "beam-in-memory = one process, no worker start-up")
    lines.append(f"every Beam output has the same sequences, splits and timestamps as pandas for all {users:,} "
                 f"users: {'yes' if equal else 'NO'}; same vocabulary: {'yes' if same_vocabulary else 'NO'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", required=True, help="the ml-1m folder")
    parser.add_argument("--max-len", type=int, default=0, help="cap on the items kept per user (default 0: none)")
    parser.add_argument("--workdir", default=None, help="where outputs go (default: a temporary folder)")
    parser.add_argument("--beam-arg", action="append", default=[], help="Beam option passed through (with '=')")
    parser.add_argument("--no-in-memory", action="store_true",
                        help="skip the extra run of Beam's in-memory DirectRunner (no worker processes)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.movielens, args.out, args.max_len, args.beam_arg, args.result)
        return 0
    if not os.path.exists(os.path.join(args.movielens, "ratings.dat")):
        raise SystemExit(f"{args.movielens} has no ratings.dat (pass the ml-1m folder)")
    from peterrec.components.beam_options import available_cpus

    workdir = args.workdir or tempfile.mkdtemp(prefix="peterrec-bench-ingest-")
    print(f"benchmarking ingestion of {args.movielens} (max_len {args.max_len}) on {available_cpus()} CPUs; "
          f"outputs in {workdir}", flush=True)
    results = []
    for kind in KINDS:
        if kind == "beam-in-memory" and args.no_in_memory:
            continue
        print(f"running {kind}...", flush=True)
        results.append(measure(kind, args, workdir))
    pandas_out = results[-1]["out"]
    checks = [compare_outputs(r["out"], pandas_out) for r in results[:-1]]
    equal = all(c[0] for c in checks)
    same_vocabulary = all(c[2] for c in checks)
    print()
    print(format_table(results, equal, checks[0][1], same_vocabulary))
    return 0 if equal and same_vocabulary else 1


if __name__ == "__main__":
    sys.exit(main())
