"""Checks the ingestion on real MovieLens-1M, clean and with 1 % garbage lines mixed in.

    python benchmarks/verify_movielens.py --movielens ../shared/data/ml-1m [--workdir /tmp/peterrec-verify]

1. Ingests the folder as it is: every user must have a sequence, every rating must be
   accounted for (kept + truncated + rejected == read == lines of ratings.dat), and no
   user may be in two splits (read back from the TFRecords).
2. Copies ratings.dat (plus movies.dat/users.dat) to the work folder with 1 % garbage
   lines inserted at random places (malformed, non-numeric fields, blank, wrong field
   counts, latin-1 junk), ingests the copy, and checks that the sequences of the clean
   lines are identical and that the rejects list exactly the inserted lines (file line
   numbers and text).

Prints the figures; exits non-zero when a check fails. The data never enters the repo.
"""

import argparse
import collections
import os
import random
import shutil
import sys
import time

GARBAGE_KINDS = (
    lambda rng: "".join(rng.choice("abcdefghij XYZ,;") for _ in range(rng.randint(3, 30))),
    lambda rng: f"{rng.randint(1, 6040)}::{rng.randint(1, 3952)}::{rng.randint(1, 5)}",
    lambda rng: f"user{rng.randint(1, 99)}::{rng.randint(1, 3952)}::{rng.randint(1, 5)}::978300760",
    lambda rng: f"{rng.randint(1, 6040)}::m{rng.randint(1, 3952)}::{rng.randint(1, 5)}::978300760",
    lambda rng: f"{rng.randint(1, 6040)}::{rng.randint(1, 3952)}::{rng.randint(1, 5)}::97830O760",
    lambda rng: f"{rng.randint(1, 6040)}::{rng.randint(1, 3952)}::great::978300760",
    lambda rng: f"{rng.randint(1, 6040)}::{rng.randint(1, 3952)}::{rng.randint(1, 5)}::978300760::extra",
    lambda rng: "",
    lambda rng: f"-{rng.randint(1, 6040)}::{rng.randint(1, 3952)}::3::978300760",
    lambda rng: f"{rng.randint(1, 6040)}:{rng.randint(1, 3952)}:4:978300760",
    lambda rng: "\u00e9\u00e8\u00ff::\u00e0::3::978300760",
)


def make_garbage_copy(source_folder: str, target_folder: str, fraction: float = 0.01, seed: int = 0):
    """Copies a MovieLens-1M folder with garbage lines mixed into ratings.dat.

    Returns ({line number in the copy: garbage line}, number of clean lines).
    """
    rng = random.Random(seed)
    os.makedirs(target_folder, exist_ok=True)
    for name in ("movies.dat", "users.dat"):
        if os.path.exists(os.path.join(source_folder, name)):
            shutil.copy(os.path.join(source_folder, name), target_folder)
    with open(os.path.join(source_folder, "ratings.dat"), encoding="latin-1") as handle:
        clean = handle.read().splitlines()
    count = int(round(len(clean) * fraction))
    positions = set(rng.sample(range(len(clean) + count), count))
    mixed, garbage, clean_iter = [], {}, iter(clean)
    for index in range(len(clean) + count):
        if index in positions:
            line = rng.choice(GARBAGE_KINDS)(rng)
            garbage[index + 1] = line
            mixed.append(line)
        else:
            mixed.append(next(clean_iter))
    with open(os.path.join(target_folder, "ratings.dat"), "w", encoding="latin-1", newline="\n") as handle:
        handle.write("\n".join(mixed) + "\n")
    return garbage, len(clean)


def decode_sequences(examples_dir: str, vocabulary_dir: str):
    """Reads every split back: {user: (split, [(item token, timestamp), ...])}."""
    from peterrec.components import example_format
    from peterrec.components.vocabulary import Vocabulary

    vocabulary = Vocabulary.load(vocabulary_dir)
    users = {}
    for split in example_format.SPLITS:
        for example in example_format.read_examples(examples_dir, split):
            row = example_format.example_to_dict(example)
            if row["user_id"] in users:
                raise AssertionError(f"user {row['user_id']} is in {users[row['user_id']][0]} and {split}")
            users[row["user_id"]] = (split, [(vocabulary.token(i), t) for i, t in zip(row["item_ids"], row["timestamps"])])
    return users


def ingest(folder: str, out: str, beam_args, max_reject_fraction: float):
    from peterrec.components.ingest import IngestConfig, run_ingestion

    config = IngestConfig("movielens-1m", folder, max_reject_fraction=max_reject_fraction)
    started = time.time()
    summary = run_ingestion(config, os.path.join(out, "examples"), os.path.join(out, "vocabulary"),
                            os.path.join(out, "rejects"), beam_pipeline_args=beam_args)
    return summary, time.time() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--movielens", required=True, help="the ml-1m folder")
    parser.add_argument("--workdir", default="/tmp/peterrec-verify-ml1m")
    parser.add_argument("--fraction", type=float, default=0.01, help="garbage lines per clean line (0.01)")
    parser.add_argument("--beam-arg", action="append", default=[])
    args = parser.parse_args(argv)

    import logging

    import peterrec  # noqa: F401  (tf-keras before TensorFlow)
    from peterrec.components import beam_steps

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    logging.getLogger("peterrec.components.summary").setLevel(logging.WARNING)  # printed below
    failures = []

    def check(condition, message):
        print(("ok    " if condition else "FAIL  ") + message)
        if not condition:
            failures.append(message)

    with open(os.path.join(args.movielens, "ratings.dat"), "rb") as handle:
        lines = sum(1 for _ in handle)
    print(f"== clean run: {args.movielens} ({lines:,} lines in ratings.dat)")
    clean_out = os.path.join(args.workdir, "clean")
    summary, seconds = ingest(args.movielens, clean_out, args.beam_arg, 0.01)
    print(summary.format_table())
    print(f"ingestion took {seconds:.1f} s including planning ({summary.read / seconds:,.0f} interactions/s)")
    clean = decode_sequences(os.path.join(clean_out, "examples"), os.path.join(clean_out, "vocabulary"))
    check(summary.read == lines, f"read {summary.read:,} == {lines:,} lines")
    check(summary.kept + summary.truncated + summary.rejected == summary.read,
          f"kept {summary.kept:,} + truncated {summary.truncated:,} + rejected {summary.rejected:,} == read")
    check(summary.users == len(clean) == 6040, f"{len(clean):,} users with a sequence (summary: {summary.users:,})")
    by_split = collections.defaultdict(set)
    for user, (split, _) in clean.items():
        by_split[split].add(user)
    check(not (by_split["train"] & by_split["test"]) and not (by_split["train"] & by_split["eval"])
          and not (by_split["eval"] & by_split["test"]),
          "splits are disjoint: " + ", ".join(f"{s} {len(u):,}" for s, u in sorted(by_split.items())))
    check(sum(len(seq) for _, seq in clean.values()) == summary.kept, "sequences hold exactly the kept ratings")

    print(f"\n== with {100 * args.fraction:g} % garbage lines")
    dirty_folder = os.path.join(args.workdir, "ml-1m-garbage")
    garbage, clean_lines = make_garbage_copy(args.movielens, dirty_folder, args.fraction)
    print(f"wrote {dirty_folder}/ratings.dat: {clean_lines:,} clean + {len(garbage):,} garbage lines")
    dirty_out = os.path.join(args.workdir, "garbage")
    dirty_summary, seconds = ingest(dirty_folder, dirty_out, args.beam_arg, 0.02)
    print(dirty_summary.format_table())
    dirty = decode_sequences(os.path.join(dirty_out, "examples"), os.path.join(dirty_out, "vocabulary"))
    check(dirty == clean, "sequences (items, timestamps, splits) are identical to the clean run's")
    check(dirty_summary.vocabulary_fingerprint == summary.vocabulary_fingerprint, "same vocabulary fingerprint")
    rejects = beam_steps.read_rejects(os.path.join(dirty_out, "rejects"))
    listed = {r.line_number: r.line for r in rejects}
    check(len(rejects) == len(listed) == len(garbage) and listed == garbage,
          f"rejects list exactly the {len(garbage):,} garbage lines (line numbers and text); {len(rejects):,} listed")
    check(dirty_summary.read == clean_lines + len(garbage) and
          dirty_summary.kept + dirty_summary.truncated + dirty_summary.rejected == dirty_summary.read,
          f"read {dirty_summary.read:,} = kept {dirty_summary.kept:,} + truncated {dirty_summary.truncated:,} "
          f"+ rejected {dirty_summary.rejected:,}")
    print("\nrejects by reason: " + ", ".join(f"{k} {v:,}" for k, v in sorted(dirty_summary.rejects_by_reason.items())))
    print(f"\n{'all checks passed' if not failures else f'{len(failures)} check(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
