"""Each recovery step's plan: concrete about the real disks once the facts are known, generic
before, and pure (planning writes nothing anywhere)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from loopdisks import loop_disk, require_loop_disks

from rescue.layout.model import Disk, Filesystem, FstabEntry, Layout, Partition, layout_to_dict
from rescue.prompts import Answers
from rescue.recovery.runner import Runner, State
from rescue.steps import RECOVER, finish
from rescue.steps.context import Context, Options


def _manifest(path: Path) -> Path:
    def part(n: int, start: int, size: int, fs: Filesystem | None, kind: str = "83") -> Partition:
        return Partition(n, f"/dev/vda{n}", start, size, kind, filesystem=fs)

    disk = Disk(
        "vda",
        "/dev/vda",
        64 * 2**20,
        table="dos",
        table_id="0x1234abcd",
        partitions=[
            part(1, 2048, 20480, Filesystem("ext4", "/dev/vda1", uuid="aaaa-boot")),
            part(2, 22528, 40960, Filesystem("ext4", "/dev/vda2", uuid="bbbb-root")),
        ],
    )
    layout = Layout(
        disks=[disk],
        fstab=[
            FstabEntry("UUID=bbbb-root", "/", "ext4"),
            FstabEntry("UUID=aaaa-boot", "/boot", "ext4"),
        ],
    )
    data = {
        "format_version": 1,
        "tool_version": "0.1.0",
        "created": "2026-11-26T02:30:00+0000",
        "root": "/",
        "host": {
            "hostname": "web1",
            "os": {},
            "kernel": None,
            "architecture": "x86_64",
            "boot_mode": "bios",
        },
        "bootloader": {"kind": "grub-pc", "disk": "/dev/vda"},
        "layout": layout_to_dict(layout),
        "layout_error": None,
        "users": {"root": 0},
        "groups": {"root": 0},
        "excluded": [
            {
                "path": "/tmp",
                "exists": True,
                "type": "dir",
                "uid": 0,
                "gid": 0,
                "mode": "1777",
                "mount_point": False,
            },
        ],
        "hardlinks": [["srv/a", "srv/b"]],
        "settings": {},
    }
    path.write_text(json.dumps(data))
    return path


def _snapshot(*roots: Path) -> str:
    """Every path and mtime under roots, and this machine's passwd and group."""
    digest = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            for name in sorted(dirnames + filenames):
                st = os.lstat(os.path.join(dirpath, name))
                digest.update(f"{dirpath}/{name} {st.st_mtime_ns} {st.st_size}".encode())
    for name in ("/etc/passwd", "/etc/group"):
        digest.update(Path(name).read_bytes())
    return digest.hexdigest()


def test_every_step_has_a_generic_plan_before_anything_is_known(tmp_path: Path) -> None:
    ctx = Context(Options(work_dir=str(tmp_path / "w")), Answers({}, interactive=False))
    for step in RECOVER:
        actions = step.plan(ctx)
        assert actions and all(isinstance(a, str) and a for a in actions), step.ID
    assert not (tmp_path / "w").exists()


def test_plans_name_the_real_devices_and_write_nothing(tmp_path: Path) -> None:
    require_loop_disks({"sfdisk": "fdisk"})
    work, target_root = tmp_path / "work", tmp_path / "target"
    work.mkdir()
    options = Options(work_dir=str(work), target_root=str(target_root), time="3D", after="reboot")
    ctx = Context(options, Answers({}, interactive=False))
    ctx.facts.manifest_file = str(_manifest(work / "manifest.json"))
    ctx.facts.restore_set = {"kind": "incremental", "time": 1_790_000_000}
    with loop_disk(tmp_path / "t.img", "80M") as device:
        ctx.facts.mapping = {"/dev/vda": device}
        before = _snapshot(tmp_path)
        plans = {step.ID: step.plan(ctx) for step in RECOVER}
        assert _snapshot(tmp_path) == before
    assert plans["choose_backup"] == [
        "read the backup's collection status; restore point: the newest set at or before 3D"
    ]
    assert plans["recreate_layout"][0] == f"ERASE {device} (for /dev/vda)"
    assert any("partition" in a for a in plans["recreate_layout"])
    assert plans["mount_target"] == [
        f"mount {device}p2 (ext4) at {target_root}",
        f"mount {device}p1 (ext4) at {target_root}/boot",
    ]
    assert plans["restore_full"][0].startswith("duplicity restore of the incremental set of 2026")
    assert plans["recreate_excluded"] == ["create /tmp 1777 0:0"]
    assert plans["relink"] == ["link 1 groups (2 paths) back together"]
    assert (
        f"chroot {target_root}: grub-install --target=i386-pc --recheck {device}"
        in (plans["bootloader"])
    )
    assert plans["finish"][-1] == "then: reboot"


@pytest.mark.parametrize(
    ("after", "ending", "last_action"),
    [
        ("reboot", ", reboot", "then: reboot"),
        ("poweroff", ", power off", "then: poweroff"),
        ("shell", " (no reboot: back to the shell)", "then: shell"),
        ("none", " (no reboot)", "then: none"),
    ],
)
def test_the_finish_title_says_the_configured_action(
    tmp_path: Path, after: str, ending: str, last_action: str
) -> None:
    """`after = "none"` must not be announced as a reboot: in the title the runner prints and
    records in the state file and the report, and in the plan."""
    options = Options(work_dir=str(tmp_path / "w"), target_root=str(tmp_path / "t"), after=after)
    ctx = Context(options, Answers({}, interactive=False))
    expected = f"unmount, keep the log in the restored system{ending}"
    assert finish.title(ctx) == expected
    assert finish.plan(ctx)[-1] == last_action
    runner = Runner(RECOVER, ctx, ctx.state_path)
    runner.start({})
    assert State.load(ctx.state_path).record("finish").title == expected


def test_the_finish_title_follows_the_plan_answer_or_asks(tmp_path: Path) -> None:
    options = Options(work_dir=str(tmp_path / "w"))
    answered = Context(options, Answers({"recover.after": "poweroff"}, interactive=False))
    assert finish.title(answered).endswith(", power off")
    assert finish._after(answered) == "poweroff"  # what the run does is what the title said
    unattended = Context(options, Answers({}, interactive=False))  # nobody to ask: nothing
    assert finish.title(unattended).endswith(" (no reboot)")
    assert finish.plan(unattended)[-1] == "then: none"
    given = Options(work_dir=str(tmp_path / "w"), after="none")  # --after wins over the answer
    both = Context(given, Answers({"recover.after": "reboot"}, interactive=False))
    assert finish.title(both).endswith(" (no reboot)")
    assert finish._after(both) == "none"
    guided = Context(options, Answers({}, interactive=True))
    assert finish.title(guided).endswith(", then ask: reboot, power off, shell or none")
    assert finish.plan(guided)[-1] == "then: ask (reboot, poweroff, shell or none)"


@pytest.mark.parametrize("step", RECOVER, ids=lambda s: s.ID)
def test_step_modules_follow_the_contract(step: object) -> None:
    for name in ("ID", "TITLE", "READ_ONLY", "REDO_ON_RESUME", "plan", "run"):
        assert hasattr(step, name), name
    assert step.__doc__ and len(step.__doc__) > 40  # why the step exists


def test_guided_mapping_never_offers_the_disk_holding_the_backup(tmp_path: Path) -> None:
    """The admin declines the proposed mapping and picks a target: the mounted disk that holds
    the backup is not among the choices (a plan naming it is refused), the blank disk is."""
    from clirun import write_settings
    from loopdisks import sh

    from rescue.errors import PlanError
    from rescue.steps import map_disks

    require_loop_disks({"mkfs.ext4": "e2fsprogs"})
    work = tmp_path / "work"
    work.mkdir()
    with (
        loop_disk(tmp_path / "backup.img", "80M") as backup,
        loop_disk(tmp_path / "blank.img", "80M") as blank,
    ):
        sh("mkfs.ext4", "-q", "-F", backup)
        mounted = tmp_path / "backup"
        mounted.mkdir()
        sh("mount", backup, str(mounted))
        try:
            settings = write_settings(
                tmp_path / "rescue.toml",
                {"destination": {"method": "file", "path": str(mounted / "rescue")}},
            )

            def context(target: str) -> Context:
                answers = {"recover.confirm_mapping": False, "recover.target_disk": target}
                options = Options(
                    work_dir=str(work), settings_file=str(settings), target_ids=[backup, blank]
                )
                ctx = Context(options, Answers(answers, interactive=False), echo=lambda _: None)
                ctx.facts.manifest_file = str(_manifest(work / "manifest.json"))
                return ctx

            with pytest.raises(PlanError, match=rf"is '{backup}'; choose one of .*{blank}") as err:
                map_disks.run(context(backup))
            assert f"{backup}," not in str(err.value) and not str(err.value).endswith(backup)
            ctx = context(blank)
            map_disks.run(ctx)
            assert ctx.facts.mapping == {"/dev/vda": blank}
        finally:
            sh("umount", str(mounted))


# --- two source disks: mirror twins and plain disks alike (issue 22) --------------------------

TWINS = "mirror twins: any order is the same"


def _two_disk_manifest(path: Path, twins: bool) -> Path:
    """_manifest's, with two 64 MiB source disks partitioned alike: RAID1 twins (partition 1 of
    each a member of md0) or two plain disks (an ext4 on each)."""
    from rescue.layout.model import RaidArray

    raid_type = "A19D880F-05FC-4D3B-A006-743F0F84911E"

    def source(name: str) -> Disk:
        dev = f"/dev/{name}1"
        fs = (
            Filesystem("linux_raid_member", dev, uuid="1111-md0", uuid_sub=f"{name}-sub")
            if twins
            else Filesystem("ext4", dev, uuid=f"{name}-ext4")
        )
        part = Partition(1, dev, 2048, 124928, raid_type, uuid=f"{name}-p1", filesystem=fs)
        return Disk(name, f"/dev/{name}", 64 * 2**20, table="gpt", partitions=[part])

    members = ["/dev/vda1", "/dev/vdb1"]
    raids = (
        [RaidArray("md0", "/dev/md0", "raid1", uuid="a:b:c:d", devices=members)] if twins else []
    )
    _manifest(path)
    data = json.loads(path.read_text())
    data["layout"] = layout_to_dict(Layout(disks=[source("vda"), source("vdb")], raids=raids))
    path.write_text(json.dumps(data))
    return path


def _settings_off_the_targets(tmp_path: Path) -> Path:
    """A settings file whose file destination is under tmp_path, on no target disk."""
    from clirun import write_settings

    return write_settings(
        tmp_path / "rescue.toml", {"destination": {"method": "file", "path": str(tmp_path / "b")}}
    )


@pytest.mark.parametrize("twins", [True, False], ids=["mirror twins", "plain disks"])
@pytest.mark.parametrize("confirm", [True, False], ids=["confirmed", "declined"])
def test_guided_mapping_of_two_disks_onto_two_equal_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, twins: bool, confirm: bool
) -> None:
    """Mirror twins are proposed in path order for a yes; declined, or for plain disks alike
    (which rescue does not guess between), the admin picks a target per source disk, and the
    second question offers only the disk not taken yet."""
    require_loop_disks({"sfdisk": "fdisk"})
    with loop_disk(tmp_path / "a.img", "80M") as a, loop_disk(tmp_path / "b.img", "80M") as b:
        _guided_two_disks(tmp_path, monkeypatch, [a, b], twins, confirm)


def _guided_two_disks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, targets: list[str], twins: bool, confirm: bool
) -> None:
    from rescue import prompts
    from rescue.steps import map_disks

    first, second = sorted(targets)
    work = tmp_path / "work"
    work.mkdir()
    settings = _settings_off_the_targets(tmp_path)
    replies: dict[str, list[object]] = {
        "recover.confirm_mapping": [confirm],
        "recover.target_disk": [second, first],  # the other way round from the proposal
    }
    asked: list[tuple[str, list[str]]] = []

    def terminal(question: prompts.Question) -> object:  # the admin at the terminal
        asked.append((question.id, [c.value for c in question.choices]))
        return replies[question.id].pop(0)

    monkeypatch.setattr(prompts, "_ask_terminal", terminal)
    echoed: list[str] = []
    options = Options(work_dir=str(work), settings_file=str(settings), target_ids=targets)
    ctx = Context(options, Answers({}, interactive=True), echo=echoed.append)
    ctx.facts.manifest_file = str(_two_disk_manifest(work / "manifest.json", twins))
    map_disks.run(ctx)

    if twins:
        assert asked[0] == ("recover.confirm_mapping", [])
        shown = [line.strip() for line in echoed]
        assert f"/dev/vda (64 MiB) -> {first} (80 MiB): larger by 16 MiB; {TWINS}" in shown
        assert f"/dev/vdb (64 MiB) -> {second} (80 MiB): larger by 16 MiB; {TWINS}" in shown
    if twins and confirm:
        assert len(asked) == 1
        assert ctx.facts.mapping == {"/dev/vda": first, "/dev/vdb": second}
        assert all(line.endswith(TWINS) for line in ctx.facts.mapping_lines)
        return
    picks = asked[1:] if twins else asked  # plain disks: no proposal to confirm
    assert picks == [("recover.target_disk", targets), ("recover.target_disk", [first])]
    assert ctx.facts.mapping == {"/dev/vda": second, "/dev/vdb": first}


@pytest.mark.parametrize("twins", [True, False], ids=["mirror twins", "plain disks"])
def test_unattended_mapping_of_two_disks_onto_two_equal_disks(tmp_path: Path, twins: bool) -> None:
    """Mirror twins need no [disks] map; plain disks alike still do (rescue does not guess);
    an explicit map is honoured either way."""
    require_loop_disks({"sfdisk": "fdisk"})
    with loop_disk(tmp_path / "a.img", "80M") as a, loop_disk(tmp_path / "b.img", "80M") as b:
        _unattended_two_disks(tmp_path, [a, b], twins)


def _unattended_two_disks(tmp_path: Path, targets: list[str], twins: bool) -> None:
    from rescue.errors import DiskMappingError
    from rescue.steps import map_disks

    first, second = sorted(targets)
    settings = _settings_off_the_targets(tmp_path)
    ids = {
        dev: f"file:{tmp_path / name}"
        for dev, name in zip(targets, ("a.img", "b.img"), strict=True)
    }
    work = tmp_path / "work"
    work.mkdir()
    manifest_file = str(_two_disk_manifest(work / "manifest.json", twins))

    def context(map_ids: dict[str, str]) -> Context:
        options = Options(
            work_dir=str(work),
            settings_file=str(settings),
            unattended=True,
            target_ids=list(ids.values()),
            map_ids=map_ids,
        )
        ctx = Context(options, Answers({}, interactive=False), echo=lambda _: None)
        ctx.facts.manifest_file = manifest_file
        return ctx

    ctx = context({})
    if twins:
        map_disks.run(ctx)
        assert ctx.facts.mapping == {"/dev/vda": first, "/dev/vdb": second}
        assert all(line.endswith(TWINS) for line in ctx.facts.mapping_lines)
    else:
        with pytest.raises(DiskMappingError, match="rescue does not guess") as err:
            map_disks.run(ctx)
        assert err.value.exit_code == DiskMappingError.exit_code == 61
        assert "\n" not in str(err.value)
    ctx = context({"/dev/vda": ids[second], "/dev/vdb": ids[first]})
    map_disks.run(ctx)
    assert ctx.facts.mapping == {"/dev/vda": second, "/dev/vdb": first}
