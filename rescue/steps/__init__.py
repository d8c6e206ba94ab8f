"""The recovery steps, one module each, and the workflow: their order, as one explicit tuple.

Each step module has ID, TITLE, READ_ONLY (changes nothing on the machine: a dry run may run
it), REDO_ON_RESUME (its effect does not survive a reboot: resume runs it again), a pure
plan(ctx) and run(ctx); a step whose title depends on the run's options also has a pure
title(ctx) (finish: reboot, power off or not); see rescue.recovery.runner.
"""

from __future__ import annotations

from rescue.recovery.runner import Step
from rescue.steps import (
    bootloader,
    choose_backup,
    clean_runtime,
    detect_disks,
    finish,
    fix_fstab,
    load_manifest,
    map_disks,
    mount_target,
    network,
    recreate_excluded,
    recreate_layout,
    relink,
    replay_metadata,
    restore_full,
    restore_identity,
    verify,
)

RECOVER: tuple[Step, ...] = (
    detect_disks,
    network,
    choose_backup,
    load_manifest,
    map_disks,
    recreate_layout,
    mount_target,
    restore_identity,
    restore_full,
    recreate_excluded,
    clean_runtime,
    relink,
    replay_metadata,
    fix_fstab,
    bootloader,
    verify,
    finish,
)
