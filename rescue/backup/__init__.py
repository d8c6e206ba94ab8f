"""The backup side: everything that makes, schedules, checks and keeps backups at a destination.

Why a package: these modules drive duplicity (engine, duplog, failures, selection), describe
the destination (destinations, remotedir, destlock, pinning) and the sets there (sets, cache,
timespec), and decide and record the runs (cadence, schedule_units, lock, history,
failure_hook, monitoring, drill); recovery and the CLI use them, they never use recovery.
"""
