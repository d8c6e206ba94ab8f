"""Configuration backups: small per-module archives of a server's configuration.

Why apart from the duplicity backups: an admin moving a configuration to a new server, undoing a
bad change or sending it to support wants a single portable file, restorable module by module,
not a whole-system backup chain. `modules` says what a module is, `collect` reads one from a
root, `redact` makes a bug report safe to send, `archive` writes and verifies the file, `crypt`
encrypts it like the backups, `store` keeps the archives, `remote` copies them to the backup
destination, and `restore` puts modules back in dependency order, undoably.
"""
