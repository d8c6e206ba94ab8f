"""`rescue config-backup ...`: per-module configuration archives, and restoring them by module."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from rescue.cli.completion_cmd import complete_from
from rescue.cli.main import App, F, root_option
from rescue.cli.render import emit_json, table
from rescue.config import DEFAULT_CONFIG_PATH, Settings
from rescue.configbackup import archive, create, remote
from rescue.configbackup.modules import BUILTIN, load_modules
from rescue.configbackup.store import Store
from rescue.errors import RemoteCopyError, UsageError
from rescue.units import human_size

ROOT_OPTION = root_option(
    "The system to read or restore: / or a mounted one (e.g. during recovery)."
)
SHOWN_PER_MODULE = 20
ALLOW_UNENCRYPTED = click.option(
    "--allow-unencrypted",
    is_flag=True,
    help="Copy an archive that is not encrypted and holds secrets to the backup destination "
    "anyway (without it such a copy is refused).",
)


def settings_of(app: App) -> Settings | None:
    """The settings, or None when there is no settings file at the default place: archives
    then use the defaults and are not encrypted. A file named by --config must exist."""
    if app.config_path == DEFAULT_CONFIG_PATH and not app.config_path.exists():
        return None
    return app.settings()


@click.group("config-backup")
def config_backup_group() -> None:
    """Configuration archives: per module, restorable by module, portable between servers.

    \b
    rescue config-backup modules                    the modules and what each holds
    rescue config-backup create                     all modules, to the local store
    rescue config-backup create --module ssh        ssh (and users, which it depends on)
    rescue config-backup create --type bug-report   secrets redacted, for support
    rescue config-backup list
    rescue config-backup info NAME                  the manifest, after checking every byte
    rescue config-backup restore NAME --module ssh  shows a diff, asks, saves an undo archive
    rescue config-backup export NAME /media/usb/    to a file, to carry to another server
    rescue config-backup import /media/usb/FILE     there: into the list, after checking it
    rescue config-backup list --remote              the copies at the backup destination
    rescue config-backup pull FILE                  one of them into the list, checked

    Archives are kept in [config_backup] directory (default /var/lib/rescue/config-backups),
    encrypted like the backups when [encryption] mode is not none, and copied to the backup
    destination with copy_to_destination = true. Admins add modules as TOML files in
    [config_backup] modules_dir (default /etc/rescue/modules.d); see the README.
    """


@config_backup_group.command("modules")
@click.option("--json", "as_json", is_flag=True, help="Print the modules as data.")
@click.pass_obj
def modules_cmd(app: App, as_json: bool) -> None:
    """List the modules: built in and from modules.d, with their paths and dependencies."""
    modules = load_modules(create.modules_dir(settings_of(app)))
    if as_json:
        emit_json([m.model_dump(by_alias=True) | {"source": m.source} for m in modules.values()])
        return
    rows = [
        [
            m.name,
            ", ".join(m.depends) or "-",
            "\n".join([*m.paths, *(f"{d} (full)" for d in m.data_dirs)]),
            "\n".join(s.name for s in m.state) or "-",
            m.source,
        ]
        for m in modules.values()
    ]
    table(None, ["module", "depends on", "paths", "state", "from"], rows)


# Tab completion offers the built-in modules (drop-ins would need the settings read on every Tab).
MODULE_NAMES = complete_from(m.name for m in BUILTIN)


def module_option(help_text: str) -> Callable[[F], F]:
    """--module NAME, repeatable, completed from the built-in modules' names."""
    return click.option(
        "--module", "modules", multiple=True, shell_complete=MODULE_NAMES, help=help_text
    )


@config_backup_group.command("create")
@click.option(
    "--type",
    "kind",
    type=click.Choice(create.TYPES),
    default="configuration",
    show_default=True,
    help="configuration: the modules' paths; full: also their data directories; bug-report: "
    "plus diagnostics, with every secret redacted (never restorable, never encrypted).",
)
@click.option("--name", help="The archive's name [default: HOST-TYPE-DATE-TIME].")
@module_option(
    "Only this module (repeat for more); the modules it depends on are added. Default: all."
)
@ROOT_OPTION
@ALLOW_UNENCRYPTED
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as data.")
@click.pass_obj
def create_cmd(
    app: App,
    kind: create.ArchiveType,  # click.Choice(create.TYPES)
    name: str | None,
    modules: tuple[str, ...],
    root: Path,
    allow_unencrypted: bool,
    as_json: bool,
) -> None:
    """Write one archive of the modules' files and state, with a checksummed manifest.

    An archive that is not encrypted ([encryption] mode = "none") and holds secrets (shadow,
    private keys, passwords) is named in a warning, and copy_to_destination leaves it in the
    store unless --allow-unencrypted is given."""
    say = (lambda _line: None) if as_json else click.echo
    made = create.create(
        settings_of(app),
        root,
        kind,
        modules,
        name,
        config_path=app.config_path,
        log_path=app.log_path,
        allow_unencrypted=allow_unencrypted,
        say=say,
        warn=lambda line: click.echo(f"warning: {line}", err=True),
    )
    if as_json:
        emit_json(made.stored.index | {"manifest": made.manifest})
        return
    manifest = made.manifest
    if made.added:
        click.echo(f"added {', '.join(made.added)}: the selected modules depend on them")
    for warning in manifest["warnings"]:
        click.echo(f"warning: {warning}")
    files = sum(1 for m in manifest["modules"] for e in m["entries"] if e["kind"] == "file")
    click.echo(
        f"created {made.stored.name}: {len(manifest['modules'])} module(s), {files} file(s), "
        f"{human_size(made.stored.index['size'])}"
        + (", encrypted" if manifest["encrypted"] else "")
    )
    click.echo(f"  {made.stored.path}")
    if manifest["redactions"]:
        click.echo(
            f"redacted {len(manifest['redactions'])} secret(s); see: info {made.stored.name}"
        )
    if "remote" in made.stored.index:
        click.echo(f"copied to {made.stored.index['remote']}")


@config_backup_group.command("list")
@click.option(
    "--remote", "at_remote", is_flag=True, help="List the copies at the backup destination."
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as data.")
@click.pass_obj
def list_cmd(app: App, at_remote: bool, as_json: bool) -> None:
    """The archives in the store: name, type, date, size and modules, oldest first."""
    store = Store(settings_of(app))
    if at_remote:
        _list_remote(store, as_json)
        return
    found = store.all()
    if as_json:
        emit_json([s.index for s in found])
        return
    if not found:
        click.echo(f"no configuration archives in {store.directory} (make one: create)")
        return
    rows = [
        [
            s.name,
            str(s.index["type"]),
            str(s.index["created"])[:16].replace("T", " "),
            human_size(int(s.index["size"])) + (" (gpg)" if s.index.get("encrypted") else ""),
            ", ".join(s.index["modules"]),
        ]
        for s in found
    ]
    table(
        f"configuration archives in {store.directory}",
        ["name", "type", "date (UTC)", "size", "modules"],
        rows,
    )


def _list_remote(store: Store, as_json: bool) -> None:
    settings = _need_settings(store, "--remote")
    local = {s.path.name for s in store.all()}
    sizes = remote.listing(settings)
    found = [{"file": name, "size": size, "local": name in local} for name, size in sizes.items()]
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo(f"no configuration archives at {remote.where(settings)}")
        return
    rows = [
        [name, human_size(size), "yes" if name in local else "no"] for name, size in sizes.items()
    ]
    table(f"at {remote.where(settings)}", ["file", "size", "in the store"], rows)


def _need_settings(store: Store, what: str) -> Settings:
    if store.settings is None:
        raise UsageError(f"{what} needs settings with a [destination] (--config)")
    return store.settings


def _add_checked(store: Store, source: Path, name: str | None, work: Path) -> str:
    """Check source whole (it must open with these settings), then add it to the store."""
    opened = archive.open_verified(source, store.settings, work, stage=False)
    name = name or str(opened.manifest["name"])
    store.check_new_name(name)
    copy = work / source.name
    if copy != source:
        archive.copy_file(source, copy)
    stored = store.add(copy, opened.manifest, name)
    return f"{stored.name} ({stored.index['type']}, {len(stored.index['modules'])} module(s))"


@config_backup_group.command("push")
@click.argument("archive_name", metavar="ARCHIVE")
@ALLOW_UNENCRYPTED
@click.pass_obj
def push_cmd(app: App, archive_name: str, allow_unencrypted: bool) -> None:
    """Copy ARCHIVE to the backup destination's config-backups/ (as copy_to_destination does
    for new archives). An archive that is not encrypted and holds secrets needs
    --allow-unencrypted."""
    store = Store(settings_of(app))
    stored = store.get(archive_name)
    settings = _need_settings(store, "push")
    refusal = remote.unencrypted_refusal(stored, allow_unencrypted)
    if refusal:
        raise RemoteCopyError(
            f"{archive_name} was not copied to {remote.where(settings)}: {refusal}; add "
            '--allow-unencrypted to copy it anyway, or set [encryption] mode = "symmetric" or '
            '"gpg" for new archives'
        )
    stored.index["remote"] = remote.upload(settings, stored.path)
    store.write_index(stored)
    click.echo(f"copied {archive_name} to {stored.index['remote']}")


@config_backup_group.command("pull")
@click.argument("file_name", metavar="FILE")
@click.option("--name", help="The name in the list [default: the name it was made with].")
@click.pass_obj
def pull_cmd(app: App, file_name: str, name: str | None) -> None:
    """Fetch FILE from the backup destination's config-backups/ (see list --remote), check it
    whole and add it to the list: how a new server gets an old one's configuration."""
    store = Store(settings_of(app))
    settings = _need_settings(store, "pull")
    with store.work_dir() as work:
        fetched = work / file_name
        remote.download(settings, file_name, fetched)
        added = _add_checked(store, fetched, name, work)
    click.echo(f"pulled {file_name} as {added}")


@config_backup_group.command("info")
@click.argument("archive_name", metavar="ARCHIVE")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as data.")
@click.pass_obj
def info_cmd(app: App, archive_name: str, as_json: bool) -> None:
    """Check every member of ARCHIVE (a name in the list, or a file) and print its manifest and
    each module's contents. Nothing is extracted."""
    settings = settings_of(app)
    store = Store(settings)
    path = store.resolve(archive_name)
    with store.work_dir() as work:
        opened = archive.open_verified(path, settings, work, stage=False)
    manifest = opened.manifest
    if as_json:
        emit_json(manifest)
        return
    click.echo(f"{manifest['name']}: {manifest['type']} of {manifest['host']} ({manifest['root']})")
    click.echo(f"  made {manifest['created']} by rescue {manifest['version']}")
    click.echo(
        f"  {path} ({human_size(path.stat().st_size)}, {manifest['compression']}"
        + (", encrypted" if manifest["encrypted"] else "")
        + f"); all {len(manifest['members'])} member checksums verified"
    )
    for module in manifest["modules"]:
        entries = module["entries"]
        files = [e for e in entries if e["kind"] == "file"]
        size = sum(e.get("size", 0) for e in files)
        depends = f", depends on {', '.join(module['depends'])}" if module["depends"] else ""
        click.echo(f"\n[{module['name']}] {len(files)} file(s), {human_size(size)}{depends}")
        for entry in entries:
            mode = f"{entry['mode']:04o}" if entry["kind"] != "symlink" else "link"
            owner = f"{entry.get('user') or entry['uid']}:{entry.get('group') or entry['gid']}"
            extra = f" -> {entry['target']}" if entry["kind"] == "symlink" else ""
            click.echo(f"  {mode} {owner:<14} {entry['path']}{dir_slash(entry)}{extra}")
        for state in module["state"]:
            click.echo(f"  state: {state}")
        if module["missing"]:
            click.echo(f"  not on the system: {', '.join(module['missing'])}")
    if manifest.get("secret_files"):
        click.echo("\nnot encrypted, and these files hold secrets:")
        for secret_path in manifest["secret_files"]:
            click.echo(f"  {secret_path}")
    if manifest["redactions"]:
        click.echo("\nredacted:")
        for item in manifest["redactions"]:
            click.echo(f"  {item['path']}: {item['what']}")
    if manifest.get("diagnostics"):
        click.echo(f"\ndiagnostics: {', '.join(manifest['diagnostics'])}")


@config_backup_group.command("export")
@click.argument("archive_name", metavar="ARCHIVE")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.pass_obj
def export_cmd(app: App, archive_name: str, out: Path, force: bool) -> None:
    """Copy ARCHIVE out of the store to the file (or into the directory) OUT, as it is
    (an encrypted archive stays encrypted)."""
    store = Store(settings_of(app))
    target = store.export(store.get(archive_name), out, force)
    click.echo(f"exported {archive_name} to {target}")


@config_backup_group.command("import")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--name", help="The name in the list [default: the name it was made with].")
@click.pass_obj
def import_cmd(app: App, source: Path, name: str | None) -> None:
    """Check the archive file SOURCE whole (it must open with these settings) and add it to
    the list, so that info and restore can use it."""
    store = Store(settings_of(app))
    with store.work_dir() as work:
        added = _add_checked(store, source, name, work)
    click.echo(f"imported {source} as {added}")


@config_backup_group.command("delete")
@click.argument("archive_name", metavar="ARCHIVE")
@click.option(
    "--remote", "with_remote", is_flag=True, help="Also delete its copy at the backup destination."
)
@click.pass_obj
def delete_cmd(app: App, archive_name: str, with_remote: bool) -> None:
    """Delete ARCHIVE from the store (and, with --remote, its copy at the destination)."""
    store = Store(settings_of(app))
    stored = store.get(archive_name)
    if with_remote:
        settings = _need_settings(store, "--remote")
        remote.delete(settings, stored.path.name)
        click.echo(f"deleted {remote.where(settings)}{stored.path.name}")
    store.delete(stored)
    click.echo(f"deleted {archive_name}")


def dir_slash(entry: dict[str, object]) -> str:
    """A directory's path is shown with a trailing slash, as ls -F does."""
    return "/" if entry["kind"] == "dir" else ""
