"""Reproducible, crash-safe output files of the ingestion pipelines.

Reproducible: the same input gives byte-identical files on every run and every runner
(checked on the DirectRunner in memory and with two worker processes).
``write_sorted_shards`` writes a fixed number of shards per group (``default_num_shards``:
set by the input's size, never by the runner), puts each record in the shard of a stable
hash of its sort key (``shard_of``), writes a shard's records sorted by that key, writes
every shard (empty ones too), and compresses with gzip's header at mtime 0 (Beam's
compressed files use zlib's gzip header, which has no time or name in it).

Crash-safe: every file of a run is written under a staging folder inside each output
folder (``staging_dir``), and moved into place by ``commit`` only after the pipeline has
finished. ``commit`` first removes the previous run's outputs, the summary first, so a
folder never holds a mix of two runs that looks finished; the caller writes the summary
(``summary.json``) last, atomically: a run is complete when its summary is there. A
killed run leaves only its staging folder beside the previous run's complete outputs (or,
killed while committing, outputs without a summary); the next run into the same folders removes the leftovers (``clear_staging``
at its start, ``commit`` at its end) and writes everything again.
"""

import hashlib
import os
import signal
from typing import Dict, Iterable, List, Sequence, Tuple

STAGING = ".peterrec-staging"
BYTES_PER_SHARD = 64 << 20   # input bytes per output shard when the count is not given
MAX_DEFAULT_SHARDS = 256
KILL_AT_ENV = "PETERREC_TEST_KILL_AT"   # crash-safety tests: the process kills itself at this point


def kill_point_for_tests(point: str) -> None:
    """Crash-safety tests: SIGKILLs this process at ``point`` when ``PETERREC_TEST_KILL_AT`` names it.

    A real ``kill -9`` at a moment a test could not hit reliably from outside (mid-commit).
    """
    if os.environ.get(KILL_AT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def default_num_shards(input_bytes: int) -> int:
    """Shards per split when none are asked for: one per 64 MiB of input, 1 to 256."""
    return int(max(1, min(MAX_DEFAULT_SHARDS, -(-input_bytes // BYTES_PER_SHARD))))


def shard_of(key: bytes, num_shards: int) -> int:
    """The shard of a record: a stable hash of its key (not Python's ``hash``, which is salted per process)."""
    digest = hashlib.blake2b(key, digest_size=8, person=b"peterrec-shard").digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_path(prefix: str, index: int, num_shards: int, suffix: str) -> str:
    """``prefix-SSSSS-of-NNNNN<suffix>``, Beam's shard naming."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}{suffix}"


def staging_dir(folder: str) -> str:
    """The staging folder of an output folder."""
    return os.path.join(folder, STAGING)


def _delete_if_exists(paths: Iterable[str]) -> None:
    from apache_beam.io.filesystems import FileSystems

    found = [path for path in paths if FileSystems.exists(path)]
    if found:
        FileSystems.delete(found)


def clear_staging(*folders: str) -> None:
    """Removes what a killed run left in these output folders' staging folders."""
    _delete_if_exists(staging_dir(folder) for folder in folders)


def _staged_entries(staging: str) -> List[str]:
    """Names of the files and folders at the top of a staging folder."""
    from apache_beam.io.filesystems import FileSystems

    prefix = staging.rstrip("/") + "/"
    names = set()
    for match in FileSystems.match([prefix + "**"])[0].metadata_list:
        relative = match.path[len(prefix):]
        if relative:
            names.add(relative.split("/", 1)[0])
    return sorted(names)


def commit(folders: Sequence[str], previous: Sequence[str]) -> None:
    """Moves a finished run's staged files into its output folders, replacing ``previous``.

    ``previous`` (the old run's output paths, its summary first) is deleted before anything
    moves, so no output of the old run outlives the commit and no old summary vouches for
    new files. Top-level folders (``Split-<name>``) move in one rename each, which is
    atomic on a local disk.
    """
    from apache_beam.io.filesystems import FileSystems

    _delete_if_exists(previous)
    for folder in folders:
        staging = staging_dir(folder)
        if not FileSystems.exists(staging):
            continue
        for name in _staged_entries(staging):
            target = os.path.join(folder, name)
            _delete_if_exists([target])
            FileSystems.rename([os.path.join(staging, name)], [target])
            kill_point_for_tests("commit")
        _delete_if_exists([staging])


def write_atomically(path: str, data: bytes) -> None:
    """Writes a small file so a reader sees the old file, nothing, or the whole new one."""
    from apache_beam.io.filesystems import FileSystems

    partial = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.partial")
    with FileSystems.create(partial) as handle:
        handle.write(data)
    _delete_if_exists([path])
    FileSystems.rename([partial], [path])


class _WriteShardFn:
    """Writes one shard: its records sorted by key, as TFRecords or as lines."""

    def __init__(self, paths: Dict[str, Tuple[str, int, str]], tfrecord: bool):
        self._paths = paths
        self._tfrecord = tfrecord

    def __call__(self, element):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems
        from apache_beam.io.tfrecordio import _TFRecordUtil

        (group, index), records = element
        prefix, num_shards, suffix = self._paths[group]
        path = shard_path(prefix, index, num_shards, suffix)
        compression = CompressionTypes.GZIP if suffix.endswith(".gz") else CompressionTypes.UNCOMPRESSED
        with FileSystems.create(path, compression_type=compression) as handle:
            for _, value in sorted(r for r in records if r is not None):
                if self._tfrecord:
                    _TFRecordUtil.write_record(handle, value)
                else:
                    handle.write(value + b"\n")
        return path


def write_sorted_shards(records, label: str, paths: Dict[str, Tuple[str, int, str]], tfrecord: bool):
    """Writes ``(group, key bytes, record bytes)`` triples to the shards of ``paths[group]``.

    ``paths`` maps a group (a split, ``rejects``) to ``(prefix, num_shards, suffix)``; a
    ``.gz`` suffix compresses. Records are TFRecords (``tfrecord``) or text lines. Every
    shard is written, empty ones too, so the files of a run depend only on its input.
    A shard is sorted in one worker's memory: ``num_shards`` bounds its size.
    """
    import apache_beam as beam

    every_shard = [((group, index), None) for group, (_, count, _) in sorted(paths.items())
                   for index in range(count)]

    def to_shard(triple):
        group, key, value = triple
        return (group, shard_of(key, paths[group][1])), (key, value)

    keyed = records | f"{label}Shard" >> beam.Map(to_shard)
    empty = records.pipeline | f"{label}EveryShard" >> beam.Create(every_shard, reshuffle=False)
    return ((keyed, empty)
            | f"{label}AllShards" >> beam.Flatten()
            | f"{label}GroupShards" >> beam.GroupByKey()
            | f"{label}WriteShards" >> beam.Map(_WriteShardFn(paths, tfrecord)))
