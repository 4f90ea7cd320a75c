"""Readers: every format parses clean lines, rejects garbage with the right reason and line."""

import os

import pytest

from peterrec.components import attribute_tables, interaction_formats, item_tables, readers, source_chunks
from peterrec.components.records import (
    BLANK_LINE, EMPTY_ID, EMPTY_LABEL, MALFORMED_ITEM_LINE, MALFORMED_LINE, NO_ITEMS, NON_NUMERIC_ID,
    NON_NUMERIC_RATING, NON_NUMERIC_TIMESTAMP, UNDECODABLE_LINE, UNPARSEABLE_LINE, IngestError, Interaction,
    ItemRecord, LabelRecord, Reject)


def _write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as handle:
        handle.write(data)
    return str(path)


def _read(fmt, path, chunk_bytes=source_chunks.DEFAULT_CHUNK_BYTES):
    """(records, rejects) of a source read sequentially."""
    records, rejects = [], []
    for value in readers.read_records(fmt, str(path), chunk_bytes=chunk_bytes):
        (rejects if isinstance(value, Reject) else records).append(value)
    return records, rejects


def _reasons(rejects):
    return [(r.reason, r.line_number, r.line) for r in rejects]


def test_movielens_1m_ratings_clean_and_garbage(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    lines = [
        b"1::1193::5::978300760",
        b"1::661::3::978302109",
        b"",                                  # blank line
        b"2::3::4",                           # too few fields
        b"x::3::4::978300760",                # non-numeric user
        b"2::3a::4::978300760",               # non-numeric item
        b"2::3::4::97830076O",                # letter O in the timestamp
        b"2::3::five::978300760",             # non-numeric rating
        b"2::3::4::978300760::9",             # too many fields
        b"007::0042::4.5::978300761",         # leading zeros, fractional rating: valid
        b"3::\xe9t\xe9::4::1",                # latin-1 text in an id field
        b"3::5::4::1\r",                      # CRLF line ending
    ]
    _write(folder / "ratings.dat", b"\n".join(lines) + b"\n")
    records, rejects = _read(readers.interaction_format("movielens-1m"), folder)
    path = str(folder / "ratings.dat")
    assert records == [
        Interaction("1", "1193", 978300760, 0, 1),
        Interaction("1", "661", 978302109, 0, 2),
        Interaction("7", "42", 978300761, 0, 10),
        Interaction("3", "5", 1, 0, 12),
    ]
    assert _reasons(rejects) == [
        (BLANK_LINE, 3, ""),
        (MALFORMED_LINE, 4, "2::3::4"),
        (NON_NUMERIC_ID, 5, "x::3::4::978300760"),
        (NON_NUMERIC_ID, 6, "2::3a::4::978300760"),
        (NON_NUMERIC_TIMESTAMP, 7, "2::3::4::97830076O"),
        (NON_NUMERIC_RATING, 8, "2::3::five::978300760"),
        (MALFORMED_LINE, 9, "2::3::4::978300760::9"),
        (NON_NUMERIC_ID, 11, "3::\u00e9t\u00e9::4::1"),
    ]
    assert all(r.source == path for r in rejects)
    assert "expected 4 fields" in rejects[1].detail


def test_movielens_1m_folder_without_ratings_is_a_clear_error(tmp_path):
    with pytest.raises(IngestError, match="has no ratings.dat"):
        readers.interaction_format("movielens-1m").files(str(tmp_path))
    with pytest.raises(IngestError, match="does not exist"):
        readers.interaction_format("movielens-1m").files(str(tmp_path / "nowhere"))


def test_movielens_100k_tab_separated(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    _write(folder / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196::242::3::881250949\n")
    records, rejects = _read(readers.interaction_format("movielens-100k"), folder)
    assert [(r.user, r.item, r.timestamp, r.line_number) for r in records] == [
        ("196", "242", 881250949, 1), ("186", "302", 891717742, 2)]
    assert _reasons(rejects) == [(MALFORMED_LINE, 3, "196::242::3::881250949")]


def test_generic_csv_header_columns_domain_and_garbage(tmp_path):
    path = _write(tmp_path / "log.csv",
                  "\ufeffTimestamp,user_id,Item,domain,extra\n"
                  "10,alice,book 1,source,x\n"
                  "11,alice,\"film, the\",target,y\n"
                  "12.0,bob,book 2,,z\n"            # empty domain -> None, integral float timestamp
                  "13,bob,book 3,source\n"          # a field short
                  "soon,bob,book 4,source,z\n"      # non-numeric timestamp
                  "14,,book 5,source,z\n"           # empty user
                  "1e400,bob,book 6,source,z\n")    # infinite timestamp
    fmt = readers.interaction_format("csv")
    records, rejects = _read(fmt, path)
    assert [(r.user, r.item, r.timestamp, r.domain, r.line_number) for r in records] == [
        ("alice", "book 1", 10, "source", 2), ("alice", "film, the", 11, "target", 3), ("bob", "book 2", 12, None, 4)]
    assert _reasons(rejects) == [
        (MALFORMED_LINE, 5, "13,bob,book 3,source"),
        (NON_NUMERIC_TIMESTAMP, 6, "soon,bob,book 4,source,z"),
        (EMPTY_ID, 7, "14,,book 5,source,z"),
        (NON_NUMERIC_TIMESTAMP, 8, "1e400,bob,book 6,source,z"),
    ]


def test_generic_csv_tab_delimited_and_undecodable_line(tmp_path):
    path = _write(tmp_path / "log.tsv", b"user\titem\ttime\nu1\ti1\t5\nu1\ti\xff2\t6\n")
    records, rejects = _read(readers.interaction_format("csv"), path)
    assert [(r.user, r.item, r.timestamp) for r in records] == [("u1", "i1", 5)]
    assert [(r.reason, r.line_number) for r in rejects] == [(UNDECODABLE_LINE, 3)]
    assert rejects[0].line == "u1\ti\ufffd2\t6"


def test_generic_csv_bad_quoting_and_nul_bytes_are_rejected(tmp_path):
    path = _write(tmp_path / "log.csv", 'user,item,timestamp\nu1,"a,b",1\nu1,"open,2\nu1,"x"y,3\nu\x00,"q",4\n')
    records, rejects = _read(readers.interaction_format("csv"), path)
    assert [(r.item, r.line_number) for r in records] == [("a,b", 2)]
    assert [(r.reason, r.line_number) for r in rejects] == [(MALFORMED_LINE, 3), (MALFORMED_LINE, 4),
                                                            (MALFORMED_LINE, 5)]


def test_an_unforeseen_parser_failure_becomes_a_reject(tmp_path):
    class Fragile(interaction_formats.GenericInteractions):
        def parse(self, text, source, line_number):
            if "boom" in text:
                raise ZeroDivisionError("division by zero")
            return super().parse(text, source, line_number)

    path = _write(tmp_path / "log.csv", "user,item,timestamp\nu,i,1\nu,boom,2\n")
    records, rejects = _read(Fragile(), path)
    assert [r.item for r in records] == ["i"]
    assert _reasons(rejects) == [(UNPARSEABLE_LINE, 3, "u,boom,2")]
    assert rejects[0].detail == "ZeroDivisionError: division by zero"


def test_generic_csv_header_without_item_column_fails_clearly(tmp_path):
    path = _write(tmp_path / "log.csv", "user,product,timestamp\nu,p,1\n")
    with pytest.raises(IngestError, match="no 'item' column"):
        readers.interaction_format("csv").files(path)


def test_csv_folder_lists_visible_files_sorted(tmp_path):
    for name in ("b.csv", "a.csv", ".hidden.csv", "_SUCCESS"):
        _write(tmp_path / name, "user,item,timestamp\nu,i,1\n")
    files = readers.interaction_format("csv").files(str(tmp_path))
    assert [os.path.basename(f.path) for f in files] == ["a.csv", "b.csv"]
    assert [f.index for f in files] == [0, 1]


def test_peterrec_csv_source_target_and_padding(tmp_path):
    path = _write(tmp_path / "fine.csv",
                  "13373,18120,76920,,1845,1846\n"
                  "0,0,0,15686,66120,,51967\n"        # left padding is dropped
                  "426,42460\n"                       # a pretraining line: no target part
                  "0,0,0\n"                           # only padding
                  "12,ab,7,,3\n"                      # non-numeric item
                  "5,,6,,7\n")                        # a second empty field
    records, rejects = _read(readers.interaction_format("peterrec-csv"), path)
    got = [(r.user, r.item, r.timestamp, r.domain) for r in records]
    assert got == [
        ("1", "13373", 0, "source"), ("1", "18120", 1, "source"), ("1", "76920", 2, "source"),
        ("1", "1845", 3, "target"), ("1", "1846", 4, "target"),
        ("2", "15686", 0, "source"), ("2", "66120", 1, "source"), ("2", "51967", 2, "target"),
        ("3", "426", 0, "source"), ("3", "42460", 1, "source"),
    ]
    assert _reasons(rejects) == [(NO_ITEMS, 4, "0,0,0"), (NON_NUMERIC_ID, 5, "12,ab,7,,3"),
                                 (MALFORMED_LINE, 6, "5,,6,,7")]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 23, 64])
def test_chunked_reading_keeps_exact_line_numbers(tmp_path, chunk_bytes):
    lines = [f"{u}::{i}::3::{1000 + i}" for u in range(1, 4) for i in range(1, 6)]
    lines[4] = "garbage"
    lines[9] = ""
    data = "\n".join(lines)  # no final line break
    folder = tmp_path / "ml"
    folder.mkdir()
    _write(folder / "ratings.dat", data)
    fmt = readers.interaction_format("movielens-1m")
    whole = _read(fmt, folder)
    chunked = _read(fmt, folder, chunk_bytes=chunk_bytes)
    assert chunked == whole
    records, rejects = chunked
    assert len(records) + len(rejects) == len(lines)
    for record in records:
        assert lines[record.line_number - 1] == f"{record.user}::{record.item}::3::{record.timestamp}"
    assert [(r.line_number, r.line) for r in rejects] == [(5, "garbage"), (10, "")]


def test_chunk_plan_covers_the_file_and_counts_newlines(tmp_path):
    path = _write(tmp_path / "x.txt", "a\nbb\n\nccc\nd")
    source = source_chunks.SourceFile(0, path, os.path.getsize(path))
    chunks = source_chunks.plan_chunks([source], chunk_bytes=3)
    assert chunks[0].start == 0 and chunks[-1].end == source.size
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
    counts = {c.key: source_chunks.count_newlines(c) for c in chunks}
    assert sum(counts.values()) == 4
    before = source_chunks.newlines_before_chunks(chunks, counts)
    lines = [item for c in chunks for item in source_chunks.iter_chunk_lines(c, before[c.key])]
    assert lines == [(1, b"a"), (2, b"bb"), (3, b""), (4, b"ccc"), (5, b"d")]


def test_gzip_files_are_read_whole(tmp_path):
    import gzip

    path = tmp_path / "log.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("user,item,timestamp\nu,i,1\nu,j,x\n")
    records, rejects = _read(readers.interaction_format("csv"), path, chunk_bytes=4)
    assert [(r.item, r.line_number) for r in records] == [("i", 2)]
    assert _reasons(rejects) == [(NON_NUMERIC_TIMESTAMP, 3, "u,j,x")]


def test_movielens_users_table_attributes(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    _write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25\n4:: ::25::1::1\n")
    by_attribute = {}
    for attribute in ("gender", "age", "occupation"):
        records, rejects = _read(readers.label_format("movielens-1m", attribute), folder)
        by_attribute[attribute] = [(r.user, r.label) for r in records]
        assert _reasons(rejects)[0] == (MALFORMED_LINE, 3, "3::M::25")
    assert by_attribute == {"gender": [("1", "F"), ("2", "M")], "age": [("1", "1"), ("2", "56"), ("4", "25")],
                            "occupation": [("1", "10"), ("2", "16"), ("4", "1")]}
    _, rejects = _read(readers.label_format("movielens-1m", "gender"), folder)
    assert _reasons(rejects)[1] == (EMPTY_LABEL, 4, "4:: ::25::1::1")
    with pytest.raises(IngestError, match="no 'zip' column"):
        readers.label_format("movielens-1m", "zip")


def test_movielens_100k_users_table_buckets_ages(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    _write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|17|M|writer|32067\n4|x|M|a|1\n")
    records, rejects = _read(readers.label_format("movielens-100k", "age"), folder)
    assert [(r.user, r.label) for r in records] == [("1", "18"), ("2", "50"), ("3", "1")]
    assert _reasons(rejects) == [(MALFORMED_LINE, 4, "4|x|M|a|1")]
    records, _ = _read(readers.label_format("movielens-100k", "gender"), folder)
    assert [r.label for r in records] == ["M", "F", "M", "M"]
    assert attribute_tables.ml_age_bucket(18) == "18" and attribute_tables.ml_age_bucket(56) == "56" and attribute_tables.ml_age_bucket(44) == "35"


def test_generic_label_table(tmp_path):
    path = _write(tmp_path / "gender.csv", "user,label\nu1,F\nu2,\nu3,M,extra\nu4,M\n")
    records, rejects = _read(readers.label_format("csv"), path)
    assert records == [LabelRecord("u1", "F", 0, 2, path, "u1,F"), LabelRecord("u4", "M", 0, 5, path, "u4,M")]
    assert _reasons(rejects) == [(EMPTY_LABEL, 3, "u2,"), (MALFORMED_LINE, 4, "u3,M,extra")]


def test_generic_label_table_finds_attribute_column(tmp_path):
    path = _write(tmp_path / "profile.csv", "age;userid;gender\n25;u1;F\n")
    records, _ = _read(readers.label_format("csv", "gender"), path)
    assert [(r.user, r.label) for r in records] == [("u1", "F")]


def test_peterrec_label_lines(tmp_path):
    path = _write(tmp_path / "gender.csv", "1,2,3,,1\n4,5,,0,1\n6,7\n")
    records, rejects = _read(readers.label_format("peterrec-csv"), path)
    assert [(r.user, r.label) for r in records] == [("1", "1")]
    assert [(r.reason, r.line_number) for r in rejects] == [(MALFORMED_LINE, 2), (EMPTY_LABEL, 3)]


def test_movielens_item_tables_and_genre_rule(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    _write(folder / "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                                  "2::Heat (1995)::Action|Crime|Thriller\n"
                                  "3::Alien: Director's Cut::Horror|Sci-Fi\n"
                                  "4::Drama Action::Drama|Action\n"
                                  "broken line\n")
    records, rejects = _read(readers.item_format("movielens-1m", "movielens-genre"), folder)
    assert records == [ItemRecord("1", "source", "Toy Story (1995)"), ItemRecord("2", "target", "Heat (1995)"),
                       ItemRecord("3", "target", "Alien: Director's Cut"), ItemRecord("4", "source", "Drama Action")]
    assert [(r.reason, r.line_number) for r in rejects] == [(MALFORMED_ITEM_LINE, 5)]
    flags = ["0"] * len(item_tables.ML100K_GENRES)
    horror = list(flags)
    horror[item_tables.ML100K_GENRES.index("Horror")] = "1"
    comedy = list(flags)
    comedy[item_tables.ML100K_GENRES.index("Comedy")] = "1"
    small = tmp_path / "ml-100k"
    small.mkdir()
    _write(small / "u.item", "1|Scream|01-Jan-1996||http://x|" + "|".join(horror) + "\n"
                             "2|Clerks|01-Jan-1994||http://y|" + "|".join(comedy) + "\n")
    records, _ = _read(readers.item_format("movielens-100k", "movielens-genre"), small)
    assert records == [ItemRecord("1", "target", "Scream"), ItemRecord("2", "source", "Clerks")]
    with pytest.raises(IngestError, match="needs an item table"):
        readers.item_format("csv", "movielens-genre")


def test_item_tables_read_without_a_rule_give_titles_only(tmp_path):
    """Titles survive odd characters: '::' or '|' inside a title, latin-1 accents, blank titles."""
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    _write(folder / "movies.dat", "1::Cit\xe9 des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
                                  "2::Part::Two (1999)::Drama\n"
                                  "3:: ::Comedy\n".encode("latin-1"))
    records, rejects = _read(item_tables.MovieLens1MMovies(None), folder)
    assert rejects == []
    assert records == [ItemRecord("1", None, "Cit\xe9 des enfants perdus, La (1995)"),
                       ItemRecord("2", None, "Part::Two (1999)"), ItemRecord("3", None, None)]
    flags = "|".join(["0"] * len(item_tables.ML100K_GENRES))
    small = tmp_path / "ml-100k"
    small.mkdir()
    _write(small / "u.item", f"7|Pipe | Dream (1997)|01-Jan-1997||http://z|{flags}\n")
    records, _ = _read(item_tables.MovieLens100KItems(None), small)
    assert records == [ItemRecord("7", None, "Pipe | Dream (1997)")]
    with pytest.raises(IngestError, match="unknown domain rule"):
        item_tables.MovieLens1MMovies("by-genre")


def test_unknown_formats_are_clear_errors():
    with pytest.raises(IngestError, match="unknown source format"):
        readers.interaction_format("parquet")
    with pytest.raises(IngestError, match="unknown label format"):
        readers.label_format("xml")


def test_reject_json_line_round_trip():
    reject = Reject(MALFORMED_LINE, "/data/a\tb.csv", 7, "x\t\"y\"\u00e9", "detail")
    assert Reject.from_json_line(reject.to_json_line()) == reject
    assert "\n" not in reject.to_json_line()
