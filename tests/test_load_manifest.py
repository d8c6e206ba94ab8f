"""Recovery's load_manifest step reads only the volume that holds rescue's own directory.

The backup keeps copies of etc/passwd and etc/group beside the manifest (manifest.copy_identity),
so the step fetches the manifest, the records, the sizes and the identity files in one duplicity
run of var/lib/rescue. The proof: with 1 MB volumes and every volume but the last overwritten
with garbage (a damaged destination: a fault this project does not own, made here by the test),
the step still succeeds, while a run that selects by pattern (what it did before) fails on the
first damaged volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clirun import local_settings, rescue

from rescue.backup.engine import Engine
from rescue.config import load_settings
from rescue.errors import CorruptVolumeError
from rescue.prompts import Answers
from rescue.steps import choose_backup, load_manifest
from rescue.steps.context import Context, Options

pytestmark = pytest.mark.slow

PASSWD = "root:x:0:0:root:/root:/bin/bash\nweb:x:1234:1234::/srv/web:/bin/sh\n"
GROUP = "root:x:0:\nweb:x:1234:\n"


def _backup(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "src"
    (source / "etc").mkdir(parents=True)
    (source / "etc/passwd").write_text(PASSWD)
    (source / "etc/group").write_text(GROUP)
    (source / "data").mkdir()
    for n in range(6):  # incompressible: about six volumes of 1 MB
        (source / f"data/blob{n}").write_bytes(os.urandom(1 << 20))
    config = local_settings(
        tmp_path,
        {"root": str(source), "include": [str(source)]},
        encryption={"mode": "none"},
        duplicity={"archive_dir": str(tmp_path / "cache"), "volsize": 1},
    )
    run = rescue(config, "backup", "--full")
    assert run.code == 0, run.err
    return config, source


def _damage_all_but_the_last_volume(dest: Path) -> int:
    volumes = sorted(dest.glob("*.difftar.gz"), key=lambda p: int(p.name.split(".vol")[1][0:-11]))
    for volume in volumes[:-1]:
        volume.write_bytes(os.urandom(volume.stat().st_size))
    return len(volumes)


def test_the_manifest_and_the_identity_files_come_from_one_volume(tmp_path: Path) -> None:
    config, source = _backup(tmp_path)
    assert (source / "var/lib/rescue/identity/passwd").read_text() == PASSWD
    assert _damage_all_but_the_last_volume(tmp_path / "dest") >= 5

    options = Options(
        work_dir=str(tmp_path / "work"),
        target_root=str(tmp_path / "target"),
        settings_file=str(config),
        unattended=True,
    )
    ctx = Context(options, Answers({}, interactive=False), echo=lambda _: None)
    choose_backup.run(ctx)
    lines = load_manifest.run(ctx)
    assert lines[0].startswith("host "), lines
    assert (load_manifest.identity_dir(ctx) / "etc/passwd").read_text() == PASSWD
    assert (load_manifest.identity_dir(ctx) / "etc/group").read_text() == GROUP
    assert ctx.facts.metadata_file and Path(ctx.facts.metadata_file).is_file()
    assert ctx.facts.sizes_file and Path(ctx.facts.sizes_file).is_file()

    # the way it was fetched before, by pattern, reads the damaged volumes and fails
    engine = Engine(load_settings(config))
    with pytest.raises(CorruptVolumeError, match=r"vol1\.difftar\.gz .* is corrupt"):
        engine.restore_files(["etc/passwd"], tmp_path / "by-pattern", ctx.restore_time())
