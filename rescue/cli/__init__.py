"""The `rescue` command line: one click group, one module per command group, one error handler."""

from __future__ import annotations

from rescue.cli import (
    backup_cmd,
    completion_cmd,
    config_cmd,
    configbackup_cmd,
    configbackup_restore_cmd,  # noqa: F401  (adds `config-backup restore` to the group)
    drill_cmd,
    layout_cmd,
    live_cmd,
    manifest_cmd,
    net_cmd,
    recover_cmd,
    restore_cmd,
    schedule_cmd,
    status_cmd,
    undo_cmd,
    unlock_cmd,
    verify_cmd,
)
from rescue.cli.main import cli

cli.add_command(config_cmd.config)
cli.add_command(backup_cmd.backup)
cli.add_command(status_cmd.status)
cli.add_command(schedule_cmd.schedule_group)
cli.add_command(status_cmd.files)
cli.add_command(status_cmd.versions)
cli.add_command(restore_cmd.restore)
cli.add_command(undo_cmd.undo_group)
cli.add_command(unlock_cmd.unlock)
cli.add_command(verify_cmd.verify)
cli.add_command(drill_cmd.drill)
cli.add_command(manifest_cmd.manifest_group)
cli.add_command(layout_cmd.layout_group)
cli.add_command(recover_cmd.recover)
cli.add_command(net_cmd.net_group)
cli.add_command(live_cmd.live_group)
cli.add_command(configbackup_cmd.config_backup_group)
cli.add_command(completion_cmd.completion)


def main() -> None:
    """The console script."""
    cli.main(prog_name="rescue")
