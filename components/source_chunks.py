"""Source files and byte-range chunks: which files a source path names, and their lines.

Files are read in byte-range ``Chunk``s so a runner can parse one big file on many
workers. A chunk owns the lines that *start* inside its range; its first line number is
the number of newlines before the range (``count_newlines`` of the earlier chunks), so
every record keeps its exact file line number whichever worker reads it. Paths go
through Beam's file systems, so local paths, GCS and HDFS all work.
"""

import dataclasses
import math
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from peterrec.components.records import IngestError

DEFAULT_CHUNK_BYTES = 8 << 20
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".zstd", ".lzma", ".xz")


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One input file: its index in the run (the tie-breaker), path, size and header."""

    index: int
    path: str
    size: int
    compressed: bool = False
    columns: Optional[Tuple[str, ...]] = None   # header column names, lower-cased
    delimiter: Optional[str] = None
    positions: Tuple[Optional[int], ...] = ()   # where a format's fields are among the columns


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A byte range of a file: the lines that start in [start, end) belong to it."""

    file: SourceFile
    index: int       # position of the chunk within its file
    start: int
    end: int

    @property
    def key(self) -> str:
        """A unique name of the chunk (file index and chunk index)."""
        return f"{self.file.index}:{self.index}"


def _filesystems():
    from apache_beam.io.filesystems import FileSystems  # lazy: Beam is slow to import

    return FileSystems


def open_file(path: str, compressed: bool):
    """Opens a file for reading on any Beam file system (``compressed``: decompress by suffix)."""
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystems().open(path, compression_type=CompressionTypes.AUTO if compressed
                               else CompressionTypes.UNCOMPRESSED)


def match_files(pattern: str) -> List[Tuple[str, int]]:
    """Returns the sorted (path, size) pairs matching a glob; none when nothing matches."""
    try:
        results = _filesystems().match([pattern])
    except Exception:  # Beam raises BeamIOError for no match on some file systems
        return []
    return sorted((m.path, m.size_in_bytes) for result in results for m in result.metadata_list)


def is_folder(path: str) -> bool:
    """Whether ``path`` is a folder (on object stores: whether anything lies under it)."""
    if "://" not in path:
        return os.path.isdir(path)
    return bool(match_files(path.rstrip("/") + "/*"))


def resolve_files(source_path: str, default_name: Optional[str] = None,
                  what: str = "source") -> List[Tuple[str, int]]:
    """Lists the (path, size) pairs to read for a source path.

    ``source_path`` is a file, a glob, or a folder: with ``default_name`` the folder must
    hold that file (MovieLens), otherwise every visible file in it is read, sorted by name.
    Raises IngestError when nothing is found.
    """
    if not source_path:
        raise IngestError(f"no {what} path given")
    if is_folder(source_path):
        if default_name is not None:
            found = match_files(os.path.join(source_path, default_name))
            if not found:
                raise IngestError(f"{what} folder {source_path} has no {default_name}")
            return found
        found = [(p, s) for p, s in match_files(os.path.join(source_path, "*"))
                 if not os.path.basename(p).startswith((".", "_")) and not is_folder(p)]
        if not found:
            raise IngestError(f"{what} folder {source_path} holds no files")
        return found
    found = match_files(source_path)
    if not found:
        raise IngestError(f"{what} {source_path} does not exist (no file matches it)")
    return found


def read_first_line(path: str, compressed: bool = False, max_bytes: int = 1 << 20) -> bytes:
    """Returns the first line of a file without its line break (headers)."""
    with open_file(path, compressed) as handle:
        data = handle.read(max_bytes)
    line = data.split(b"\n", 1)[0]
    return line[:-1] if line.endswith(b"\r") else line


def plan_chunks(files: Sequence[SourceFile], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> List[Chunk]:
    """Cuts files into byte-range chunks (compressed files are read whole)."""
    chunks = []
    for source in files:
        if source.compressed or source.size <= chunk_bytes:
            chunks.append(Chunk(source, 0, 0, source.size if not source.compressed else -1))
            continue
        count = max(1, math.ceil(source.size / chunk_bytes))
        bounds = [source.size * k // count for k in range(count + 1)]
        chunks.extend(Chunk(source, k, bounds[k], bounds[k + 1]) for k in range(count))
    return chunks


def count_newlines(chunk: Chunk, block: int = 1 << 22) -> int:
    """Counts the newline bytes inside the chunk's byte range (for line numbering)."""
    total = 0
    with open_file(chunk.file.path, chunk.file.compressed) as handle:
        if chunk.end < 0:  # a whole compressed file
            while True:
                data = handle.read(block)
                if not data:
                    return total
                total += data.count(b"\n")
        handle.seek(chunk.start)
        left = chunk.end - chunk.start
        while left > 0:
            data = handle.read(min(block, left))
            if not data:
                break
            total += data.count(b"\n")
            left -= len(data)
    return total


def newlines_before_chunks(chunks: Sequence[Chunk], newline_counts: Dict[str, int]) -> Dict[str, int]:
    """Returns, per chunk key, the number of newlines in its file before the chunk starts."""
    before: Dict[str, int] = {}
    by_file: Dict[int, List[Chunk]] = {}
    for chunk in chunks:
        by_file.setdefault(chunk.file.index, []).append(chunk)
    for file_chunks in by_file.values():
        total = 0
        for chunk in sorted(file_chunks, key=lambda c: c.start):
            before[chunk.key] = total
            total += newline_counts[chunk.key]
    return before


def _read_all(handle, block: int = 1 << 22) -> bytes:
    parts = []
    while True:
        data = handle.read(block)  # Beam's compressed streams need a size
        if not data:
            return b"".join(parts)
        parts.append(data)


def iter_chunk_lines(chunk: Chunk, newlines_before: int) -> Iterator[Tuple[int, bytes]]:
    """Yields (1-based line number, raw line without its line break) for the chunk's lines."""
    with open_file(chunk.file.path, chunk.file.compressed) as handle:
        if chunk.end < 0:  # a whole compressed file
            data, offset, line_index = _read_all(handle), 0, 0
        else:
            begin = max(chunk.start - 1, 0)
            handle.seek(begin)
            data = handle.read(chunk.end - begin)
            if chunk.end < chunk.file.size and not data.endswith(b"\n"):
                parts = [data]
                while True:  # finish the line that starts inside the chunk
                    more = handle.read(1 << 16)
                    if not more:
                        break
                    cut = more.find(b"\n")
                    if cut >= 0:
                        parts.append(more[:cut + 1])
                        break
                    parts.append(more)
                data = b"".join(parts)
            if chunk.start == 0:
                offset, line_index = 0, 0
            else:
                cut = data.find(b"\n")  # data[0] is the byte before the chunk
                if cut < 0 or begin + cut + 1 >= chunk.end:
                    return  # no line starts in this chunk
                offset = cut + 1
                line_index = newlines_before + (0 if cut == 0 else 1)
    lines = data[offset:].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the text after the final line break
    for number, raw in enumerate(lines, start=line_index + 1):
        yield number, raw[:-1] if raw.endswith(b"\r") else raw



def companion_path(source_path: str, default_name: str) -> str:
    """Returns the path of a table next to a MovieLens source (folder or file)."""
    folder = source_path if is_folder(source_path) else os.path.dirname(source_path)
    return os.path.join(folder, default_name)
