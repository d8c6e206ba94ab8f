"""From [selection] to duplicity's file-selection arguments.

duplicity applies the first matching rule, so the order is: excludes (paths, then globs), then the
includes, then, when the includes do not cover the whole root, a final `--exclude **`. Paths that
lie outside the root cannot match anything there and duplicity refuses them, so they are dropped:
that is what lets the default excludes (/dev, /proc, ...) stand in a file that backs up /srv.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from rescue.config import Selection


def _inside(path: str, root: str) -> bool:
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p != r and (r == PurePosixPath("/") or r in p.parents)


def literal(path: str) -> str:
    """A path as a duplicity selection pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in path)


def glob_pattern(glob: str) -> str:
    """`*.avi` matches at any depth (`**/*.avi`); an absolute glob stays anchored."""
    return glob if glob.startswith(("/", "**")) else f"**/{glob}"


def filter_args(
    selection: Selection, extra_excludes: Iterable[str] = (), always: Iterable[str] = ()
) -> list[str]:
    """duplicity arguments that select exactly what the settings ask for.

    `always` names files that are backed up whatever the rules say (the manifest); they come
    first, as duplicity applies the first rule that matches.
    """
    root = str(selection.root)
    args: list[str] = []
    for path in [*extra_excludes, *selection.exclude]:
        if _inside(str(path), root):
            args += ["--exclude", str(path)]
    for glob in selection.exclude_globs:
        args += ["--exclude", glob_pattern(glob)]
    includes = [str(p) for p in selection.include]
    if not any(PurePosixPath(p) == PurePosixPath(root) for p in includes):
        for path in includes:
            args += ["--include", path]
        args += ["--exclude", "**"]
    if not args:
        return []  # everything is selected; duplicity refuses a lone, redundant include
    return [arg for path in always for arg in ("--include", str(path))] + args
