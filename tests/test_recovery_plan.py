"""Plan files and answers by question ID: what an unattended recovery is told."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clirun import rescue
from manifests import with_layout
from test_layout_recreate import LARGER, debian_lvm_layout

from rescue.cli.main import App
from rescue.cli.recover_cmd import _options
from rescue.errors import PlanError, UnansweredQuestionError, UsageError
from rescue.layout.devices import mount_entries, partition_node
from rescue.layout.model import Disk, Filesystem, FstabEntry, Layout, Partition
from rescue.layout.recreate import build
from rescue.prompts import Answers, Choice, Question
from rescue.recovery.recovery_plan import RecoveryPlan, load_plan
from rescue.steps import recreate_layout
from rescue.steps.context import Context, Options
from rescue.steps.fix_fstab import Renames, rewrite
from rescue.steps.restore_identity import merge


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return path


def test_a_full_plan_is_read(tmp_path: Path) -> None:
    plan = load_plan(
        write(
            tmp_path,
            """
settings = "rescue.toml"
time = "3D"
target_root = "/mnt/t"
grow = false
grow_lv = "vg0/root"
after = "poweroff"
initramfs = "always"
verify = "full"
[disks]
targets = ["serial:QM1", "file:/var/tmp/d.img"]
map = { "/dev/vda" = "serial:QM1" }
[mounts]
"/backup" = "label:BACKUPS"
[answers]
"recover.erase" = "yes"
""",
        )
    )
    assert plan.settings == tmp_path / "rescue.toml"  # relative to the plan
    assert (plan.time, str(plan.target_root), plan.grow, plan.after) == (
        "3D",
        "/mnt/t",
        False,
        "poweroff",
    )
    assert (plan.initramfs, plan.verify, plan.grow_lv) == ("always", "full", "vg0/root")
    assert plan.targets == ["serial:QM1", "file:/var/tmp/d.img"]
    assert plan.map == {"/dev/vda": "serial:QM1"}
    assert plan.mounts == {"/backup": "label:BACKUPS"}
    assert plan.answers == {"recover.erase": "yes"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('tme = "3D"', "tme: unknown key (did you mean time?)"),
        ('after = "explode"', "after: must be one of reboot, poweroff, shell, none"),
        ("grow = 1", "grow: must be true or false, not 1"),
        ('grow_lv = "all"', 'grow_lv: must be "none", "last" or VG/LV (e.g. "vg0/root"), not'),
        (
            'grow_lv = "vg0"',
            """grow_lv: must be "none", "last" or VG/LV (e.g. "vg0/root"), not 'vg0'""",
        ),
        ('grow_lv = "vg0/-x"', "grow_lv: must be"),
        ("grow_lv = true", "grow_lv: must be"),
        ('initramfs = "never"', "initramfs: must be one of auto, always"),
        ('verify = "some"', "verify: must be one of records, sample, full"),
        ("verify = 1", "verify: must be a string, not 1"),
        ('target_root = "mnt"', "target_root: must be an absolute path"),
        ("[disks]\ntarget = []", "disks.target: unknown key (did you mean targets?)"),
        ("[disks]\ntargets = [1]", "disks.targets: must be a stable disk id, not 1"),
        ("x = ", "invalid TOML"),
        ('[mounts]\n"/backup" = "/dev/vdb"', "must map an absolute path to label:NAME or uuid"),
        ('[mounts]\n"backup" = "label:B"', "must map an absolute path to label:NAME or uuid"),
        ('[mounts]\n"/backup" = 1', "mounts./backup: must be label:NAME or uuid:UUID, not 1"),
    ],
)
def test_plan_errors_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PlanError, match=re.escape(message)) as err:
        load_plan(write(tmp_path, text))
    assert str(tmp_path / "plan.toml") in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('time = "now"\n\ngrow = 1\n', 3, "grow: must be true or false, not 1"),
        (
            'time = "now"\ngrow_lv = "root"\n',
            2,
            """grow_lv: must be "none", "last" or VG/LV (e.g. "vg0/root"), not 'root'""",
        ),
        (
            '# web1\ntime = "now"\n\n[disks]\ntargets = ["serial:QM1"]\n\n[mounts]\n'
            '"/backup" = "sdb1"\n',
            8,
            "mounts./backup: must map an absolute path to label:NAME or uuid:UUID, "
            "not '/backup' = 'sdb1'",
        ),
        (
            'after = "reboot"\n[disks]\ntarget = []\n',
            3,
            "disks.target: unknown key (did you mean targets?)",
        ),
    ],
)
def test_recover_with_a_bad_plan_says_file_line_and_key(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """`rescue recover --plan` with a bad value: one line `PLAN:LINE: key: message`, exit 8
    (PlanError), before anything is touched."""
    plan = write(tmp_path, text)
    run = rescue(None, "--log-file", str(tmp_path / "rescue.log"), "recover", "--plan", str(plan))
    assert run.code == 8, run.err
    assert run.err.splitlines()[0] == f"rescue: error: {plan}:{line}: {message}"


def test_a_bad_grow_lv_on_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    run = rescue(
        None, "--log-file", str(tmp_path / "rescue.log"), "recover", "--grow-lv", "vg0/root/x"
    )
    assert run.code == 2, run.err
    assert run.err.splitlines()[0] == (
        """rescue: error: --grow-lv: must be "none", "last" or VG/LV (e.g. "vg0/root"),"""
        " not 'vg0/root/x'"
    )
    assert "--grow-lv none|last|VG/LV" in rescue(None, "recover", "--help").out


def test_grow_lv_comes_from_the_command_line_else_the_plan_else_none(tmp_path: Path) -> None:
    app = App(config_path=tmp_path / "rescue.toml")
    plan = load_plan(write(tmp_path, 'settings = "rescue.toml"\ngrow_lv = "last"\n'))

    def grow_lv(given: str | None, plan: RecoveryPlan | None) -> str:
        options = _options(
            app, plan, tmp_path, None, when=None, grow=True, grow_lv=given, after=None,
            initramfs=None, verify=None, yes=False, targets=(),
        )  # fmt: skip
        return options.grow_lv

    assert grow_lv("vg0/root", plan) == "vg0/root"
    assert grow_lv(None, plan) == "last"
    assert grow_lv(None, None) == "none"
    assert Options().grow_lv == "none"  # and a state file from before grow_lv resumes with it


def test_the_recreate_layout_plan_says_where_a_vgs_new_room_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recovery's plan lines are the script's step titles: the VG's says whether the new
    room stays free (and about how much) or which LV takes it."""
    monkeypatch.setattr(build, "probe_target", lambda path: LARGER[0])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(with_layout(debian_lvm_layout())))

    def plan_lines(grow_lv: str) -> list[str]:
        options = Options(work_dir=str(tmp_path / "w"), grow_lv=grow_lv)
        ctx = Context(options, Answers({}, interactive=False))
        ctx.facts.manifest_file = str(manifest)
        ctx.facts.mapping = {"/dev/vda": "/dev/sdb"}
        return recreate_layout.plan(ctx)

    vg = "Step 5: LVM volume group vg0 on /dev/vda3 (extent 8 MiB); "
    free = "the VG has about 128 MiB more free after recreation: lvextend by hand"
    taken = "takes the VG's free space (about 216 MiB, 128 MiB of it new)"
    assert f"{vg}LV sizes kept: {free}" in plan_lines("none")
    assert f"{vg}vg0/root {taken}" in plan_lines("last")
    assert f"{vg}vg0/swap_1 {taken}" in plan_lines("vg0/swap_1")
    with pytest.raises(UsageError, match=r"grow_lv: the layout has no LV vg0/home \(its LVs: vg0/"):
        plan_lines("vg0/home")


def test_missing_plan() -> None:
    with pytest.raises(PlanError, match=re.escape("no plan file at /nonexistent.toml")):
        load_plan(Path("/nonexistent.toml"))


def test_answers_come_from_the_plan_checked_or_fail_at_once_by_id() -> None:
    answers = Answers(
        {"recover.erase": "yes", "recover.after": "reboot", "recover.confirm_mapping": True},
        interactive=False,
    )
    assert answers.ask(Question("recover.erase", "typed-yes", "Erase?")) is True
    after = Question("recover.after", "select", "Now?", [Choice("reboot", "reboot")])
    assert answers.ask(after) == "reboot"
    assert answers.ask(Question("recover.confirm_mapping", "confirm", "OK?")) is True
    with pytest.raises(UnansweredQuestionError, match=r"question recover\.restore_point is not"):
        answers.ask(Question("recover.restore_point", "select", "Which?"))
    bad = Answers({"recover.after": "dance"}, interactive=False)
    with pytest.raises(PlanError, match="'dance'; choose one of reboot"):
        bad.ask(after)
    with pytest.raises(PlanError, match='must be "yes" to go on'):
        Answers({"recover.erase": "y"}, interactive=False).ask(
            Question("recover.erase", "typed-yes", "Erase?")
        )
    with pytest.raises(PlanError, match=r"unknown question\(s\) recover\.eras"):
        Answers({"recover.eras": "yes"}, interactive=False)


def test_identity_merge_keeps_the_backups_ids_and_the_rescue_systems_extra_names() -> None:
    backup = "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n"
    rescue = (
        "root:x:0:0::/root:/bin/bash\n"
        "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n"
        "alice:x:1000:1000::/:/bin/sh\n"
    )
    merged, kept = merge(backup, rescue)
    assert kept == 1
    assert merged.splitlines() == [
        "root:x:0:0::/root:/bin/sh",
        "alice:x:1001:1001::/home/alice:/bin/sh",
        "sshd:x:105:65534::/run/sshd:/usr/sbin/nologin",
    ]


def test_partition_nodes_follow_the_kernels_naming() -> None:
    assert partition_node("/dev/sdb", 2) == "/dev/sdb2"
    assert partition_node("/dev/nvme0n1", 2) == "/dev/nvme0n1p2"
    assert partition_node("/dev/loop3", 4) == "/dev/loop3p4"


def _layout() -> Layout:
    def part(n: int, fs: Filesystem | None) -> Partition:
        return Partition(n, f"/dev/vda{n}", 2048 * n, 2048, "83", filesystem=fs)

    root = Filesystem("ext4", "/dev/vda4", uuid="1111-root")
    boot = Filesystem("ext4", "/dev/vda2", uuid="2222-boot")
    swap = Filesystem("swap", "/dev/vda3", uuid="3333-swap")
    disk = Disk("vda", "/dev/vda", 10**9, partitions=[part(2, boot), part(3, swap), part(4, root)])
    fstab = [
        FstabEntry("/dev/vda2", "/boot", "ext4"),
        FstabEntry("UUID=1111-root", "/", "ext4", "errors=remount-ro"),
        FstabEntry("UUID=3333-swap", "none", "swap", "sw"),
        FstabEntry("server:/srv", "/srv", "nfs"),
        FstabEntry("LABEL=gone", "/data", "xfs"),
    ]
    return Layout(disks=[disk], fstab=fstab)


def test_mount_entries_are_the_restored_fstab_on_the_target_devices_parents_first() -> None:
    entries, notes = mount_entries(_layout(), {"/dev/vda": "/dev/loop7"}, "/")
    assert [(e.device, e.mountpoint, e.fstype) for e in entries] == [
        ("/dev/loop7p4", "/", "ext4"),
        ("/dev/loop7p2", "/boot", "ext4"),
    ]
    assert notes == ["LABEL=gone (/data) is on no recreated disk"]


def test_mount_entries_leave_out_a_disk_the_mapping_left_out() -> None:
    """A second disk mounted at an excluded /backup is not recreated: what is there now (the
    backup itself) must not be mounted into the target, from the fstab or from capture."""
    source = _layout()
    backup = Filesystem("ext4", "/dev/vdb", uuid="4444-bak", mountpoint="/backup")
    source.disks.append(Disk("vdb", "/dev/vdb", 10**9, filesystem=backup))
    source.fstab.append(FstabEntry("UUID=4444-bak", "/backup", "ext4"))
    entries, notes = mount_entries(source, {"/dev/vda": "/dev/loop7"}, "/")
    assert "/backup" not in [e.mountpoint for e in entries]
    assert "UUID=4444-bak (/backup) is on /dev/vdb, left as it is" in notes
    source.fstab = []
    entries, _ = mount_entries(source, {"/dev/vda": "/dev/loop7"}, "/")
    assert "/backup" not in [e.mountpoint for e in entries]


def test_fstab_rewrite_replaces_kernel_paths_and_changed_uuids_only() -> None:
    names = Renames(
        uuids={"1111-root": "9999-root"},
        paths={"/dev/vda2": "UUID=2222-boot"},
        present={"9999-root", "2222-boot"},
    )
    text = (
        "# /dev/vda2 in a comment stays\n"
        "/dev/vda2  /boot  ext4  defaults  0 2\n"
        "UUID=1111-root / ext4 errors=remount-ro 0 1\n"
        "/dev/vda22 /x ext4 defaults 0 0\n"
    )
    assert rewrite(text, 0, names) == (
        "# /dev/vda2 in a comment stays\n"
        "UUID=2222-boot  /boot  ext4  defaults  0 2\n"
        "UUID=9999-root / ext4 errors=remount-ro 0 1\n"
        "/dev/vda22 /x ext4 defaults 0 0\n"
    )
    grub = 'GRUB_CMDLINE_LINUX="resume=/dev/vda2 root=UUID=1111-ROOT"\n'
    assert rewrite(grub, None, names) == (
        'GRUB_CMDLINE_LINUX="resume=UUID=2222-boot root=UUID=9999-root"\n'
    )
