"""duplicity's --log-fd stream, parsed from records captured off duplicity 3.2.1."""

from __future__ import annotations

from rescue.backup import duplog
from rescue.backup.sets import parse_collection_status

COLLECTION = """NOTICE 1
. Last full backup date: Thu Nov 26 08:26:08 2026

INFO 3
backend BackendWrapper
archive-dir (. dir)
chain-no-sig 0
 full 20261120T010000Z 2 enc
chain-complete
 full 20261126T082608Z 1 enc
 inc 20261126T082618Z 1 enc
orphaned-sets-num 1
incomplete-sets-num 0
. Collection Status
. -----------------

"""


def parse(text: str) -> duplog.LogParser:
    parser = duplog.LogParser()
    for line in text.split("\n"):
        parser.feed(line)
    parser.close()
    return parser


def test_records_keep_control_continuations_and_text_apart() -> None:
    parser = parse(COLLECTION)
    assert [(r.level, r.code) for r in parser.records] == [("NOTICE", 1), ("INFO", 3)]
    status_record = parser.records[1]
    assert status_record.extra[0] == "backend BackendWrapper"
    assert status_record.text == ["Collection Status", "-----------------"]


def test_collection_status_gives_chains_in_time_order() -> None:
    record = parse(COLLECTION).records[1]
    status = parse_collection_status(record.extra, "file:///x")
    assert [len(c.sets) for c in status.chains] == [1, 2]
    assert [s.kind for s in status.sets] == ["full", "full", "incremental"]
    assert [s.chain for s in status.sets] == [1, 2, 2]
    assert status.sets[0].volumes == 2 and status.sets[0].encrypted
    assert status.orphaned == 1 and status.incomplete == 0
    assert status.last_full() is status.sets[1]


def test_error_records_are_collected() -> None:
    parser = parse(
        "ERROR 31 GPGError\n. GPGError: GPG Failed\n. gpg: decryption failed: Bad session key\n\n"
    )
    (error,) = parser.errors()
    assert error.code == 31 and "Bad session key" in error.message


def test_unescape_path_round_trips_odd_names() -> None:
    assert duplog.unescape_path("'Gr\\xfc\\xdfe und L\\xfccken.txt'") == "Grüße und Lücken.txt"
    assert duplog.unescape_path("'it\\x27s'") == "it's"
    assert duplog.unescape_path("'a/\\u20ac'") == "a/€"


def test_statistics_numbers() -> None:
    record = duplog.Record(
        "NOTICE",
        1,
        text=[
            "--------------[ Backup Statistics ]--------------",
            "SourceFiles 4",
            "SourceFileSize 108198 (106 KB)",
            "TotalDestinationSizeChange 100740 (98.4 KB)",
            "ElapsedTime 0.27 (0.27 seconds)",
        ],
    )
    assert duplog.is_statistics(record)
    stats = duplog.parse_statistics(record)
    assert stats["SourceFiles"] == 4
    assert stats["TotalDestinationSizeChange"] == 100740
    assert stats["ElapsedTime"] == 0.27
