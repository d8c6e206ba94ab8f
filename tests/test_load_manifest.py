"""Recovery's load_manifest step reads only the volume that holds rescue's own directory.

The backup keeps copies of etc/passwd and etc/group beside the manifest (manifest.copy_identity),
so the step fetches the manifest, the records, the sizes and the identity files in one duplicity
run of var/lib/rescue. The proof: with 1 MB volumes and every volume but the last overwritten
with garbage (a damaged destination: a fault this project does not own, made here by the test),
the step still succeeds, while a run that selects by pattern (what it did before) fails on the
first damaged volume.

Its renames (os.replace of the manifest, records and sizes into the work directory) and the
emptying of its fetch folder are proven in a sandbox: a work directory left by an earlier attempt,
with links that lead out of it, changes nothing outside that directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clirun import local_settings, rescue, write_settings
from sandbox import PYTHON, REPO, Sandbox, differences

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


STEP = """
import sys
from rescue.prompts import Answers
from rescue.steps import choose_backup, load_manifest
from rescue.steps.context import Context, Options
options = Options(work_dir="/var/tmp/work", target_root="/mnt/target", settings_file=sys.argv[1],
                  unattended=True)
ctx = Context(options, Answers({}, interactive=False), echo=lambda _: None)
choose_backup.run(ctx)
print("\\n".join(load_manifest.run(ctx)))
"""

# An earlier attempt's work directory, and what its links lead to outside it.
EARLIER = """
mkdir -p /srv/precious/keep /var/tmp/work/from-backup/etc /var/tmp/work/from-backup/rescue
echo precious > /srv/precious/file; echo kept > /srv/precious/keep/file
cd /var/tmp/work
echo earlier > manifest.json; echo earlier > metadata.jsonl.gz; echo mine > notes.txt
ln -s /srv/precious/file sizes.json.gz
echo earlier > from-backup/etc/passwd; echo earlier > from-backup/rescue/leftover
ln -s /srv/precious from-backup/outside; ln -s /srv/precious/keep from-backup/rescue/keep
"""


def test_a_second_attempt_changes_nothing_outside_its_work_directory(tmp_path: Path) -> None:
    _backup(tmp_path)
    sandboxed = tmp_path / "sandboxed"
    sandboxed.mkdir()
    inside = write_settings(
        sandboxed / "rescue.toml",
        {
            "destination": {"method": "file", "path": str(tmp_path / "dest")},
            "encryption": {"mode": "none"},
            "duplicity": {"archive_dir": "/var/cache/rescue/duplicity"},
        },
    )
    with Sandbox(tmp_path, readonly=[sandboxed, tmp_path / "dest"]) as box:
        box.run(["sh", "-ec", EARLIER], check=True)
        before = box.state()
        run = box.run([str(PYTHON), "-c", STEP, str(inside)], env={"PYTHONPATH": str(REPO)})
        assert run.code == 0, run.err
        assert run.out.startswith("host "), run.out
        after = box.state()
        changed = differences(before, after)
        outside = {rel for rel in changed if not f"{rel}/".startswith("var/tmp/work/")}
        assert changed and not outside, outside
        work = box.path("/var/tmp/work")
        assert (work / "manifest.json").read_text().startswith("{")
        assert (work / "metadata.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic
        assert not (work / "sizes.json.gz").is_symlink()  # the link replaced, not its target
        assert (work / "notes.txt").read_text() == "mine\n"
        assert (work / "from-backup/etc/passwd").read_text() == PASSWD
        assert sorted(p.name for p in (work / "from-backup").iterdir()) == ["etc", "rescue"]
        assert list((work / "from-backup/rescue").iterdir()) == []
