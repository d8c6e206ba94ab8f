"""`rescue config-backup restore`: put a configuration archive back, whole or by module, in
dependency order. Its own module because the plan it shows and the question it asks are the
biggest part of the config-backup commands."""

from __future__ import annotations

from pathlib import Path

import click

from rescue.backup import lock
from rescue.cli.configbackup_cmd import (
    ROOT_OPTION,
    SHOWN_PER_MODULE,
    config_backup_group,
    module_option,
    settings_of,
)
from rescue.cli.main import App
from rescue.configbackup import archive, create, restore
from rescue.configbackup.store import Store
from rescue.errors import ConfigRestoreRefused
from rescue.prompts import Answers, Question


@config_backup_group.command("restore")
@click.argument("archive_name", metavar="ARCHIVE")
@module_option("Only this module (repeat for more). Default: all in the archive.")
@click.option(
    "--ignore-dependencies",
    is_flag=True,
    help="Restore the modules even when modules they depend on are not selected.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List every path the modules hold and what a restore would do with it, with the "
    "modules in restore order (dependencies included); write nothing, ask nothing.",
)
@click.option("--yes", is_flag=True, help="Do not ask before replacing the configuration.")
@click.option(
    "--no-imports",
    is_flag=True,
    help="Restore files only; do not run the modules' state imports (apt-get dselect-upgrade).",
)
@ROOT_OPTION
@click.pass_obj
def restore_cmd(
    app: App,
    archive_name: str,
    modules: tuple[str, ...],
    ignore_dependencies: bool,
    dry_run: bool,
    yes: bool,
    no_imports: bool,
    root: Path,
) -> None:
    """Restore ARCHIVE whole or by module, in dependency order.

    \b
    1. every member is checked against the manifest (a damaged archive is refused whole);
    2. a module whose dependencies are not selected is refused (or, at a terminal, offered
       them), unless --ignore-dependencies;
    3. the diff is shown and confirmed (--yes skips the question);
    4. the touched modules' current state is saved as a pre-restore archive: restoring that
       one undoes this restore, removing what this one added;
    5. files are written (each beside its target, then renamed over it), owners by name in
       the restored users, then the state imports run.
    """
    settings = settings_of(app)
    store = Store(settings)
    path = store.resolve(archive_name)
    answers = Answers()
    restoring = lock.exclusive(store.ensure(), f"config-backup restore of {archive_name}")
    with restoring, store.work_dir() as work:
        opened = archive.open_verified(path, settings, work, stage=True)
        planned = restore.plan(opened, root, modules, ignore_dependencies, answers, dry_run=dry_run)
        _show_plan(planned, no_imports, every_path=dry_run)
        if not planned.changes and (no_imports or not planned.imports):
            click.echo("nothing to restore: the system already matches the archive")
            return
        if dry_run:
            click.echo("dry run: nothing was written")
            return
        if not yes:
            _confirm(answers)
        host = create.host_name(root)

        def save(definitions: dict, absent: dict[str, list[str]]) -> str:
            made = create.create(
                settings,
                root,
                "pre-restore",
                list(definitions),
                restore.pre_restore_name(host),
                modules=definitions,
                absent=absent,
            )
            return made.stored.name

        done = restore.apply(
            planned, settings, run_imports=not no_imports, save_pre_restore=save, say=click.echo
        )
    for warning in [*planned.warnings, *done.warnings]:
        click.echo(f"  {warning}")
    click.echo(
        f"restored {', '.join(planned.order)}: {done.written} path(s) written, "
        f"{done.removed} removed"
    )
    click.echo(f"undo: rescue config-backup restore {done.pre_restore}")
    if done.import_problems:
        for problem in done.import_problems:
            click.echo(f"warning: {problem}", err=True)


def _show_plan(planned: restore.Plan, no_imports: bool, every_path: bool) -> None:
    """The diff per module; every_path (a dry run) lists every path, unchanged ones too."""
    manifest = planned.opened.manifest
    click.echo(
        f"{manifest['name']} ({manifest['type']} of {manifest['host']}, {manifest['created']}) "
        f"into {planned.root}:"
    )
    for warning in planned.warnings:
        click.echo(f"warning: {warning}")
    if every_path:
        click.echo(f"modules, in restore order: {', '.join(planned.order)}")
    for module in planned.order:
        changes = [c for c in planned.changes if c.module == module]
        counts = {a: sum(1 for c in changes if c.action == a) for a in ("new", "change", "remove")}
        click.echo(
            f"  {module}: {counts['new']} new, {counts['change']} changed, "
            f"{counts['remove']} to remove, {planned.unchanged.get(module, 0)} unchanged"
        )
        shown = len(changes) if every_path else SHOWN_PER_MODULE
        for change in changes[:shown]:
            click.echo(f"    {change.action:<6} {change.path} ({change.detail})")
        if len(changes) > shown:
            click.echo(f"    ... and {len(changes) - shown} more (--dry-run lists them all)")
        if every_path:
            for same in (c for c in planned.same if c.module == module):
                click.echo(f"    same   {same.path} ({same.detail})")
    for item in planned.imports:
        how = "skipped (--no-imports)" if no_imports else "will run"
        click.echo(f"  {item.module}: state {item.name}: {how}")


def _confirm(answers: Answers) -> None:
    if not answers.interactive:
        raise ConfigRestoreRefused(
            "not confirmed: nothing was written (run it at a terminal, or add --yes; "
            "--dry-run shows the diff)"
        )
    question = Question("config_backup.confirm", "confirm", "Replace the configuration as shown?")
    if not answers.ask(question):
        raise ConfigRestoreRefused("not confirmed: nothing was written")
