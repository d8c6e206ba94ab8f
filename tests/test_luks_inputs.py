"""What a recovery needs to recreate LUKS containers: the new passphrase (the plan's
luks_passphrase_file or --luks-passphrase-file, checked before anything is touched, never shown
anywhere), and optionally new UUIDs (luks_new_uuid), which fix_fstab then writes into crypttab
and the grub defaults.

luksFormat and blkid work on a plain file, without device-mapper, so the UUID tests probe real
LUKS headers. The recoveries on loop disks format closed containers for real (opening one needs
device-mapper, which this host's kernel lacks).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import RESCUE, local_settings, rescue
from loopdisks import loop_disk, partition
from manifests import with_layout
from scenario import mark_disk, untouched
from test_layout_recreate import LARGER, LINUX_LUKS, debian_lvm_layout, stacked_layout

from rescue.cli.main import App
from rescue.cli.recover_cmd import _options
from rescue.errors import PlanError
from rescue.layout.capture import capture
from rescue.layout.model import Disk, Filesystem, Layout, LuksContainer
from rescue.layout.recreate import build, build_script
from rescue.prompts import Answers
from rescue.recovery import initramfs
from rescue.recovery.recovery_plan import RecoveryPlan, load_plan, read_luks_passphrase
from rescue.recovery.runner import State, StepRecord
from rescue.steps import RECOVER, fix_fstab, recreate_layout
from rescue.steps.context import Context, Options

# The tools the loop-disk tests run (the `loops` fixture checks them), with their packages.
TOOLS = {
    "sfdisk": "fdisk",
    "partx": "util-linux",
    "wipefs": "util-linux",
    "blkid": "util-linux",
    "lsblk": "util-linux",
    "cryptsetup": "cryptsetup-bin",
}
SECRET = "luks plan secret 7f3a"
RECORDED_UUID = "0d9c2a5e-1111-4222-8333-944455556666"
# Fast key derivation for the headers the tests make themselves (recovery's use the defaults).
FAST_KDF = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def write_plan(folder: Path, *lines: str) -> Path:
    plan = folder / "plan.toml"
    plan.write_text("\n".join(['settings = "rescue.toml"', *lines]) + "\n")
    return plan


def run_plan(plan: Path, *args: str) -> tuple[int, list[str]]:
    run = rescue(None, "--log-file", str(plan.parent / "rescue.log"), "recover", *args)
    return run.code, run.err.splitlines()


# --- the plan key and the option ------------------------------------------------------------


def test_the_plan_names_the_passphrase_file_relative_to_itself(tmp_path: Path) -> None:
    secret_file(tmp_path / "luks.pass", f"{SECRET}\n")
    plan = load_plan(write_plan(tmp_path, 'luks_passphrase_file = "luks.pass"'))
    assert plan.luks_passphrase_file == tmp_path / "luks.pass"
    assert plan.luks_new_uuid is None
    absolute = secret_file(tmp_path / "abs.pass", SECRET)
    plan = load_plan(
        write_plan(tmp_path, f'luks_passphrase_file = "{absolute}"', "luks_new_uuid = true")
    )
    assert (plan.luks_passphrase_file, plan.luks_new_uuid) == (absolute, True)
    assert SECRET not in repr(plan)  # the plan holds the path; the secret is read when used


@pytest.mark.parametrize(
    ("make", "value", "message"),
    [
        (None, '"missing.pass"', "luks_passphrase_file: {file} does not exist"),
        (
            ("x\n", 0o640),
            '"luks.pass"',
            "luks_passphrase_file: {file} is readable by group or others (mode 0640) and holds "
            "a LUKS passphrase; run: chmod 600 {file}",
        ),
        (
            ("x\n", 0o604),
            '"luks.pass"',
            "luks_passphrase_file: {file} is readable by group or others (mode 0604) and holds "
            "a LUKS passphrase; run: chmod 600 {file}",
        ),
        (("", 0o600), '"luks.pass"', "luks_passphrase_file: {file} is empty"),
        (("\n", 0o600), '"luks.pass"', "luks_passphrase_file: {file} is empty"),
        ("dir", '"luks.pass"', "luks_passphrase_file: {file} is not a regular file"),
        (None, "1", "luks_passphrase_file: must be a path, not 1"),
        (None, "true", "luks_passphrase_file: must be a path, not True"),
    ],
)
def test_a_bad_passphrase_file_is_one_plan_line_exit_8(
    tmp_path: Path, make: tuple[str, int] | str | None, value: str, message: str
) -> None:
    """Refused as the settings' secret files are, before anything is touched: `PLAN:LINE: key:`
    and what is wrong, never the content."""
    file = tmp_path / "luks.pass"
    if make == "dir":
        file.mkdir()
    elif isinstance(make, tuple):
        secret_file(file, *make)
    if "missing" in value:
        file = tmp_path / "missing.pass"
    plan = write_plan(tmp_path, 'time = "now"', f"luks_passphrase_file = {value}")
    code, err = run_plan(plan, "--plan", str(plan))
    assert code == 8, err
    assert err[0] == f"rescue: error: {plan}:3: {message.format(file=file)}"
    assert not (tmp_path / "work").exists()


def test_a_resumed_run_does_not_need_the_passphrase_file_any_more(tmp_path: Path) -> None:
    """Removed once the layout is made, it stops no later step: only recreate_layout reads it
    (again), and says so then."""
    plan = write_plan(tmp_path, 'luks_passphrase_file = "gone.pass"')
    with pytest.raises(PlanError, match=r"gone\.pass does not exist"):
        load_plan(plan)
    assert load_plan(plan, check_secret_file=False).luks_passphrase_file == tmp_path / "gone.pass"
    ctx = Context(Options(luks_passphrase_file=str(tmp_path / "gone.pass"), unattended=True),
                  Answers({}, interactive=False))  # fmt: skip
    with pytest.raises(PlanError, match=r"^luks_passphrase_file: .*gone\.pass does not exist$"):
        recreate_layout._passphrase(ctx)


def test_luks_new_uuid_must_be_true_or_false(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, 'luks_new_uuid = "yes"')
    code, err = run_plan(plan, "--plan", str(plan))
    assert code == 8, err
    assert err[0] == f"rescue: error: {plan}:2: luks_new_uuid: must be true or false, not 'yes'"


def test_one_trailing_newline_is_dropped_and_only_one() -> None:
    def read(text: str) -> str:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rescue-luks-{os.getpid()}"
        try:
            return read_luks_passphrase(secret_file(path, text), "k", PlanError)
        finally:
            path.unlink()

    assert read("s3cret") == "s3cret"
    assert read("s3cret\n") == "s3cret"
    assert read("s3cret\r\n") == "s3cret"
    assert read("s3cret\n\n") == "s3cret\n"
    assert read(" s3cret \n") == " s3cret "  # spaces are part of it


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (None, "--luks-passphrase-file: {file} does not exist"),
        (
            ("x", 0o660),
            "--luks-passphrase-file: {file} is readable by group or others (mode 0660) and "
            "holds a LUKS passphrase; run: chmod 600 {file}",
        ),
        (("", 0o600), "--luks-passphrase-file: {file} is empty"),
    ],
)
def test_a_bad_passphrase_file_option_is_one_line_exit_2(
    tmp_path: Path, make: tuple[str, int] | None, message: str
) -> None:
    file = tmp_path / "luks.pass"
    if make:
        secret_file(file, *make)
    code, err = run_plan(tmp_path / "plan.toml", "--luks-passphrase-file", str(file))
    assert code == 2, err
    assert err[0] == f"rescue: error: {message.format(file=file)}"


def test_resume_refuses_the_luks_options_and_help_teaches_them(tmp_path: Path) -> None:
    file = secret_file(tmp_path / "luks.pass", SECRET)
    for option in (["--luks-passphrase-file", str(file)], ["--luks-new-uuid"]):
        code, err = run_plan(tmp_path / "plan.toml", "--resume", *option)
        assert code == 2, err
        assert err[0] == (
            "rescue: error: --resume continues with the recorded plan and options; give no others"
        )
    lines = [" ".join(ln.split()) for ln in rescue(None, "recover", "--help").out.splitlines()]
    assert "--luks-passphrase-file FILE New LUKS passphrase (FILE less one newline)." in lines
    assert "--luks-new-uuid New LUKS UUIDs (crypttab is rewritten)." in lines


def test_the_command_line_wins_over_the_plan(tmp_path: Path) -> None:
    app = App(config_path=tmp_path / "rescue.toml")
    in_plan = secret_file(tmp_path / "plan.pass", SECRET)
    given = secret_file(tmp_path / "given.pass", "other")
    plan = load_plan(
        write_plan(tmp_path, f'luks_passphrase_file = "{in_plan.name}"', "luks_new_uuid = true")
    )
    bare = load_plan(write_plan(tmp_path))

    def options(plan_: RecoveryPlan, file: Path | None, new_uuid: bool) -> Options:
        return _options(
            app, plan_, tmp_path, None, when=None, grow=True, grow_lv=None, after=None,
            initramfs=None, verify=None, yes=False, targets=(),
            luks_passphrase_file=file, luks_new_uuid=new_uuid,
        )  # fmt: skip

    got = options(plan, None, False)
    assert (got.luks_passphrase_file, got.luks_new_uuid) == (str(in_plan), True)
    got = options(plan, given, False)
    assert (got.luks_passphrase_file, got.luks_new_uuid) == (str(given), True)
    got = options(bare, None, True)
    assert (got.luks_passphrase_file, got.luks_new_uuid) == (None, True)
    got = options(bare, None, False)
    assert (got.luks_passphrase_file, got.luks_new_uuid) == (None, False)
    assert SECRET not in json.dumps(dataclasses.asdict(options(plan, None, False)))
    # A state file from before these options resumes with the defaults.
    assert (Options().luks_passphrase_file, Options().luks_new_uuid) == (None, False)


# --- the script -------------------------------------------------------------------------------


def test_the_script_keeps_the_recorded_uuid_unless_a_new_one_is_asked_for() -> None:
    targets = [Disk("sdb", "/dev/sdb", 20 * 1024**3), Disk("nvme0n1", "/dev/nvme0n1", 30 * 1024**3)]
    mapping = {"/dev/vda": "/dev/sdb", "/dev/vdb": "/dev/nvme0n1"}
    kept = build_script(stacked_layout(), mapping, targets=targets)
    new = build_script(stacked_layout(), mapping, targets=targets, luks_new_uuid=True)
    key = '--key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt'
    assert f"cryptsetup luksFormat --batch-mode --type luks2 --uuid l1 {key}" in kept
    assert f"cryptsetup luksFormat --batch-mode --type luks2 {key}" in new
    assert "--uuid" not in new.split("cryptsetup luksFormat", 1)[1].split("\n", 1)[0]
    assert "# A new UUID, as asked (luks_new_uuid) (it was l1)." in new
    assert 'cryptsetup open --key-file "$RESCUE_LUKS_PASSPHRASE_FILE" /dev/vg0/crypt secret' in new
    # Nothing else differs: the MD array, the PV and the file systems keep their UUIDs.
    assert [ln for ln in kept.splitlines() if "luks" not in ln.lower()] == [
        ln for ln in new.splitlines() if "luks" not in ln.lower()
    ]


def _ctx(tmp_path: Path, layout: Layout, options: Options, answers: Answers) -> Context:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(with_layout(layout)))
    ctx = Context(options, answers)
    ctx.facts.manifest_file = str(manifest)
    ctx.facts.mapping = {"/dev/vda": "/dev/sdb"}
    return ctx


def luks_in_lvm() -> Layout:
    """The Debian installer's LVM layout with the root file system in LUKS, in the root LV."""
    layout = debian_lvm_layout()
    assert layout.lvm is not None
    layout.lvm.lvs[0].filesystem = Filesystem(
        "crypto_LUKS", "/dev/mapper/vg0-root", uuid="l1", version="2"
    )
    layout.luks = [LuksContainer("/dev/mapper/vg0-root", "l1", "2", "root_crypt")]
    layout.filesystems = [Filesystem("ext4", "/dev/mapper/root_crypt", uuid="r00t")]
    return layout


def test_an_unattended_plan_without_a_passphrase_fails_in_the_plan_already(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recreate_layout step's plan (and so a dry run) says where the passphrase comes from,
    and fails at once, with the one line, for a plan that gives none."""
    monkeypatch.setattr(build, "probe_target", lambda path: LARGER[0])
    monkeypatch.delenv("RESCUE_LUKS_PASSPHRASE_FILE", raising=False)
    work = str(tmp_path / "w")

    def lines(answers: dict[str, str] | None = None, **options: Any) -> list[str]:
        opts = Options(work_dir=work, **options)
        return recreate_layout.plan(_ctx(tmp_path, luks_in_lvm(), opts, Answers(answers or {})))

    with pytest.raises(PlanError) as err:
        lines(unattended=True)
    assert str(err.value) == (
        "the layout has LUKS containers (/dev/mapper/vg0-root) and the plan gives no passphrase "
        'for them: add luks_passphrase_file = "/path" to the plan (a file only root can read; '
        "one trailing newline is dropped); nothing was written to the disks"
    )
    keep = "the LUKS containers keep their recorded UUIDs"
    got = lines(unattended=True, luks_passphrase_file="/root/luks.pass")
    assert got[-3:-1] == ["the new LUKS passphrase is read from /root/luks.pass", keep]
    got = lines({"recover.luks_passphrase": "x"}, unattended=True, luks_new_uuid=True)
    assert got[-3:-1] == [
        "the new LUKS passphrase is the plan's answer to recover.luks_passphrase",
        "the LUKS containers get new UUIDs (luks_new_uuid): fix_fstab writes them into crypttab",
    ]
    assert lines()[-3] == "the new LUKS passphrase is asked (recover.luks_passphrase)"  # guided
    monkeypatch.setenv("RESCUE_LUKS_PASSPHRASE_FILE", "/run/k")
    got = lines(unattended=True)
    assert got[-3] == "the new LUKS passphrase is the file $RESCUE_LUKS_PASSPHRASE_FILE names"
    # Without LUKS the plan says nothing of it.
    opts = Options(work_dir=work, unattended=True)
    plain = recreate_layout.plan(_ctx(tmp_path, debian_lvm_layout(), opts, Answers({})))
    assert not any("LUKS" in line for line in plain)


# --- crypttab and grub for a new UUID ----------------------------------------------------------


def luks_header(path: Path, uuid: str | None = None) -> str:
    """A real LUKS2 header on a plain file (no device-mapper needed); its UUID."""
    if not shutil.which("cryptsetup"):
        pytest.fail("cryptsetup is missing: apt-get install cryptsetup-bin")
    subprocess.run(["truncate", "-s", "20M", str(path)], check=True)
    argv = ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", *FAST_KDF]
    argv += ["--uuid", uuid] if uuid else []
    subprocess.run([*argv, "--key-file", "-", str(path)], input=b"k", check=True)
    out = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(path)], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return out.strip()


def whole_disk_luks(as_filesystem: bool) -> Layout:
    """A LUKS container on a whole disk: as capture records it (a crypto_LUKS file system of
    the disk too), or only as a container."""
    fs = Filesystem("crypto_LUKS", "/dev/vdb", uuid=RECORDED_UUID.upper(), version="2")
    disk = Disk("vdb", "/dev/vdb", 20 * 2**20, filesystem=fs if as_filesystem else None)
    return Layout(disks=[disk], luks=[LuksContainer("/dev/vdb", RECORDED_UUID, "2", "data")])


CRYPTTAB = f"""\
# <target> <source> <key> <options>
data UUID={RECORDED_UUID} none luks,discard
data2 /dev/disk/by-uuid/{RECORDED_UUID} none luks
swap /dev/urandom none swap
"""
GRUB = f"""\
GRUB_CMDLINE_LINUX="cryptdevice=UUID={RECORDED_UUID}:data rd.luks.uuid={RECORDED_UUID.upper()}"
"""


@pytest.mark.parametrize("as_filesystem", [True, False], ids=["captured", "container-only"])
def test_a_new_luks_uuid_is_found_and_written_into_crypttab_and_grub(
    tmp_path: Path, as_filesystem: bool
) -> None:
    """The recreated container's UUID is probed (a real header, on a file standing for the
    target disk): fix_fstab renames the recorded one in crypttab (either form) and in the grub
    defaults, keeps the originals, and the initramfs is then rebuilt."""
    image = tmp_path / "target.img"
    new = luks_header(image)
    assert new != RECORDED_UUID
    layout = whole_disk_luks(as_filesystem)
    names = fix_fstab.renames(layout, {"/dev/vdb": str(image)})
    assert names.uuids == {RECORDED_UUID: new}
    assert new in names.present
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/crypttab").write_text(CRYPTTAB)
    (root / "etc/default/grub").write_text(GRUB)
    options = Options(work_dir=str(tmp_path / "w"), target_root=str(root))
    ctx = _ctx(tmp_path, layout, options, Answers({}, interactive=False))
    ctx.facts.mapping = {"/dev/vdb": str(image)}
    done = fix_fstab.run(ctx)
    assert "etc/crypttab: 2 line(s) rewritten (original kept as .before-rescue)" in done
    assert (root / "etc/crypttab").read_text() == CRYPTTAB.replace(RECORDED_UUID, new)
    assert (root / "etc/crypttab.before-rescue").read_text() == CRYPTTAB
    assert (root / "etc/default/grub").read_text() == (
        f'GRUB_CMDLINE_LINUX="cryptdevice=UUID={new}:data rd.luks.uuid={new}"\n'
    )
    verdict = initramfs.decide(
        initramfs.Inputs(
            choice="auto", root=root, layout=layout, uuid_changes=names.uuids,
            present_uuids=names.present, changed_files=ctx.facts.changed,
            target_disks=[], list_initrd=lambda path: [],
        )
    )  # fmt: skip
    assert verdict.rebuild
    assert "fix_fstab rewrote etc/crypttab" in verdict.reasons


def test_a_kept_luks_uuid_changes_nothing(tmp_path: Path) -> None:
    image = tmp_path / "target.img"
    luks_header(image, RECORDED_UUID)
    names = fix_fstab.renames(whole_disk_luks(False), {"/dev/vdb": str(image)})
    assert (names.uuids, names.present) == ({}, {RECORDED_UUID})
    assert fix_fstab.rewrite(CRYPTTAB, 1, names) == CRYPTTAB
    # A container on a disk the mapping leaves out is not probed at all.
    assert fix_fstab.renames(whole_disk_luks(False), {}).present == set()


# --- recoveries on loop disks -------------------------------------------------------------------


@pytest.fixture(scope="module")
def luks_source(loops: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Layout]:
    """A captured 64 MiB GPT disk whose one partition is a closed LUKS2 container."""
    folder = tmp_path_factory.mktemp("luks-source")
    with loop_disk(folder / "src.img", "64M") as device:
        parts = partition(device, f"label: gpt\nsize=32MiB, type={LINUX_LUKS}\n")
        subprocess.run(
            ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", *FAST_KDF,
             "--uuid", RECORDED_UUID, "--key-file", "-", parts[0]],
            input=b"old secret", check=True, capture_output=True,
        )  # fmt: skip
        layout = capture([device], fstab=folder / "no-fstab")
    assert layout.luks == [LuksContainer(parts[0], RECORDED_UUID, "2", None)]
    yield layout


def recorded_run(folder: Path, layout: Layout, target: str, plan: Path) -> None:
    """A recovery of plan recorded up to map_disks, as a fresh run would have left it (the
    step network, done again first, finds the file destination)."""
    (folder / "dest").mkdir()
    local_settings(folder, {"root": str(folder)})
    (folder / "manifest.json").write_text(json.dumps(with_layout(layout)))
    options = _options(
        App(config_path=folder / "rescue.toml"), load_plan(plan), folder / "work", None,
        when=None, grow=True, grow_lv=None, after=None, initramfs=None, verify=None, yes=False,
        targets=(),
    )  # fmt: skip
    steps = [StepRecord(s.ID, s.TITLE) for s in RECOVER]
    for record in steps[: [s.ID for s in RECOVER].index("recreate_layout")]:
        record.outcome = "done"
    mapping = {layout.disks[0].path: target}
    facts = {"manifest_file": str(folder / "manifest.json"), "mapping": mapping}
    State(dataclasses.asdict(options), steps, facts).save(folder / "work/state.json")


def recover(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RESCUE_LUKS_PASSPHRASE_FILE"}
    return subprocess.run(
        [*rescue_argv(folder), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip


def rescue_argv(folder: Path) -> list[str]:
    return [*RESCUE, "--log-file", str(folder / "rescue.log"), "recover", "--work-dir",
            str(folder / "work")]  # fmt: skip


def step(folder: Path, step_id: str) -> dict[str, object]:
    state = json.loads((folder / "work/state.json").read_text())
    return next(s for s in state["steps"] if s["id"] == step_id)  # type: ignore[no-any-return]


def test_an_unattended_plan_without_a_passphrase_stops_before_any_disk_is_erased(
    luks_source: Layout, tmp_path: Path, host_identity: None
) -> None:
    plan = write_plan(tmp_path, "[answers]", '"recover.erase" = "yes"')
    with loop_disk(tmp_path / "target.img", "64M") as device:
        mark_disk(device)
        recorded_run(tmp_path, luks_source, device, plan)
        done = recover(tmp_path, "--from", "recreate_layout")
        assert done.returncode == 8, done.stdout + done.stderr
        line = done.stderr.splitlines()[0]
        assert line.startswith("rescue: error: the layout has LUKS containers (")
        assert 'add luks_passphrase_file = "/path" to the plan' in line
        assert untouched(device)
    record = step(tmp_path, "recreate_layout")
    assert record["outcome"] == "failed"
    assert "add luks_passphrase_file" in str(record["error"])
    assert step(tmp_path, "mount_target")["outcome"] == "pending"
    assert not (tmp_path / "work/layout").exists()  # the script was not even written


def test_the_plans_passphrase_file_formats_the_container_and_is_never_shown(
    luks_source: Layout, tmp_path: Path, host_identity: None
) -> None:
    """The plan's file (with the newline echo leaves) makes the container, with the recorded
    UUID; then --luks-passphrase-file and --luks-new-uuid on the command line win over the
    plan, and fix_fstab finds the new UUID on the recreated partition. The secrets are in no
    output, log, state file, report or leftover file."""
    secret_file(tmp_path / "luks.pass", f"{SECRET}\n")
    plan = write_plan(
        tmp_path, 'luks_passphrase_file = "luks.pass"', "[answers]", '"recover.erase" = "yes"'
    )
    other = "command line secret 91c"
    given = secret_file(tmp_path / "given.pass", other)
    bare = secret_file(tmp_path / "plan.key", SECRET)  # what the plan's file holds, no newline

    def opens(node: str, key: Path) -> bool:
        test = ["cryptsetup", "open", "--test-passphrase", "--key-file", str(key), node]
        return subprocess.run(test, capture_output=True).returncode == 0

    with loop_disk(tmp_path / "target.img", "64M") as device:
        recorded_run(tmp_path, luks_source, device, plan)
        first = recover(tmp_path, "--only", "recreate_layout")
        assert first.returncode == 0, first.stdout + first.stderr
        (luks,) = capture([device], fstab=tmp_path / "no-fstab").luks
        node = luks.device
        assert node.startswith(device) and luks.uuid == RECORDED_UUID
        assert opens(node, bare)  # the newline was dropped
        assert not opens(node, tmp_path / "luks.pass")
        second = recover(
            tmp_path, "--only", "recreate_layout", "--luks-passphrase-file", str(given),
            "--luks-new-uuid",
        )  # fmt: skip
        assert second.returncode == 0, second.stdout + second.stderr
        (luks,) = capture([device], fstab=tmp_path / "no-fstab").luks
        assert luks.uuid and luks.uuid != RECORDED_UUID
        assert opens(node, given)
        names = fix_fstab.renames(luks_source, {luks_source.disks[0].path: device})
        assert names.uuids == {RECORDED_UUID: luks.uuid}
        assert names.paths == {luks_source.luks[0].device: f"UUID={luks.uuid}"}
        crypttab = fix_fstab.rewrite(f"data UUID={RECORDED_UUID} none luks\n", 1, names)
        assert crypttab == f"data UUID={luks.uuid} none luks\n"
    script = (tmp_path / "work/layout/layout-recreate.sh").read_text()
    assert "--uuid" not in script.split("cryptsetup luksFormat", 1)[1].split("\n", 1)[0]
    options = json.loads((tmp_path / "work/state.json").read_text())["options"]
    done = step(tmp_path, "recreate_layout")["done"]
    assert isinstance(done, list)
    assert f"the new LUKS passphrase is read from {given}" in done
    assert any(line.startswith("the LUKS containers get new UUIDs") for line in done)
    assert (options["luks_passphrase_file"], options["luks_new_uuid"]) == (str(given), True)
    shown = [first.stdout, first.stderr, second.stdout, second.stderr]
    for name in ("rescue.log", "work/state.json", "work/report.json", "work/layout"):
        path = tmp_path / name
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        assert files, name
        shown += [p.read_text() for p in files]
    for secret in (SECRET, other):
        assert not [text for text in shown if secret in text]
    assert not list((tmp_path / "work").glob("luks-passphrase-*"))  # the copy is removed
