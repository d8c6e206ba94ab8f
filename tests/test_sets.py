"""Pure parts of the set model: sizes from a destination's file names, the window now."""

from __future__ import annotations

from rescue.backup.cadence import window_now
from rescue.backup.sets import BackupSet, Chain, Status, volume_sizes
from rescue.backup.timespec import from_duplicity_time

FULL = "20261201T023000Z"
INC = "20261202T023000Z"


def test_volume_sizes_count_only_volumes_by_the_set_they_belong_to() -> None:
    listing = {
        f"duplicity-full.{FULL}.vol1.difftar.gpg": 1000,
        f"duplicity-full.{FULL}.vol2.difftar.gpg": 300,
        f"duplicity-full.{FULL}.manifest.gpg": 77,
        f"duplicity-full-signatures.{FULL}.sigtar.gpg": 55,
        f"duplicity-inc.{FULL}.to.{INC}.vol1.difftar.gz": 40,
        f"duplicity-inc.{FULL}.to.{INC}.manifest": 9,
        f"duplicity-new-signatures.{FULL}.to.{INC}.sigtar.gz": 8,
        "rescue-host.json": 100,
        f"duplicity-full.{FULL}.vol3.difftar.gpg.part": 5000,  # not a volume duplicity finished
    }
    assert volume_sizes(listing) == {
        from_duplicity_time(FULL): 1300,
        from_duplicity_time(INC): 40,
    }


def test_window_now_reaches_from_the_oldest_set_to_now() -> None:
    full, inc = from_duplicity_time(FULL), from_duplicity_time(INC)
    sets = [BackupSet("full", full, 2, True, 1), BackupSet("incremental", inc, 1, True, 1)]
    status = Status("file:///b", [Chain(1, sets)])
    window = window_now(status, now=inc + 3600)
    assert window is not None
    assert (window["oldest_time"], window["seconds"]) == (full, 86400 + 3600)
    assert (window["sets"], window["chains"]) == (2, 1)
    assert window_now(Status("file:///b", []), now=inc) is None
