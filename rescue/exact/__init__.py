"""Exact restores: what duplicity drops, recorded beside the manifest and replayed after a restore.

duplicity keeps content, owners, modes and whole-second mtimes, and loses xattrs (with them file
capabilities and SELinux labels), POSIX ACLs, sparseness, sub-second and symlink mtimes and hard
links. `capture` records them in one streamed, compressed sidecar inside every backup
(`records`), `replay` puts them back after a restore, `holes` keeps a sparse file sparse even
while duplicity writes it, and `deep` compares a restored tree with the records.
"""
