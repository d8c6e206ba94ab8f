"""The recovery side: what a bare-metal recovery reads and how its workflow runs.

Why a package: manifest and manifest_model (the host description written at backup time and
loaded at recovery), runner (the resumable workflow of rescue.steps), recovery_plan (the
unattended plan file) and mounts (idempotent mounts under the target root) serve the recovery
of a whole host, apart from the file-level backup and restore of rescue.backup.
"""
