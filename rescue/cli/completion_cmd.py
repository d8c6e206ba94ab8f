"""`rescue completion SHELL`: the shell's tab-completion script, like `borgmatic --bash-completion`.

The script is click's own (the `_RESCUE_COMPLETE` protocol): on each Tab the shell runs `rescue`
with COMP_WORDS and COMP_CWORD in its environment, and click answers from the command tree, so
the completions never go stale: commands, options, the values of choices (`--after`), recovery
step names (`--from`, `--only`), configuration modules and paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click
from click.shell_completion import CompletionItem, get_completion_class

PROG = "rescue"
COMPLETE_VAR = "_RESCUE_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
# Where each shell loads a completion file from by itself (none of them is a package's file).
INSTALL_PATHS = {
    "bash": "/usr/local/share/bash-completion/completions/rescue",
    "zsh": "/usr/local/share/zsh/site-functions/_rescue",
    "fish": "/etc/fish/completions/rescue.fish",
}
INSTALL_LINES = "\n".join(
    f"  rescue completion {shell} > {path}" for shell, path in INSTALL_PATHS.items()
)

Completer = Callable[[click.Context, click.Parameter, str], list[CompletionItem]]


def complete_from(names: Iterable[str]) -> Completer:
    """A shell_complete callback offering the given names that start with what is typed."""
    choices = tuple(names)

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        return [CompletionItem(name) for name in choices if name.startswith(incomplete)]

    return complete


def complete_path(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The shell's own file-name completion, for a path option that click reads as a plain
    string (its checks are rescue's own, e.g. restore --to)."""
    return [CompletionItem(incomplete, type="file")]


@click.command(
    epilog=f"""\b
Install it where the shell finds it (as root), then open a new shell:
{INSTALL_LINES}

\b
Or for yourself only, in ~/.bashrc:
  eval "$(rescue completion bash)"

bash needs the bash-completion package (Debian installs it in a standard system); scripts/setup
installs the bash file."""
)
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the tab-completion script for SHELL (bash, zsh or fish).

    It completes commands, options and their values where they are known (choices, recovery
    steps, configuration modules, paths).
    """
    completer = get_completion_class(shell)
    assert completer is not None  # every name in SHELLS is one of click's
    script = completer(ctx.find_root().command, {}, PROG, COMPLETE_VAR)
    # The template filled in, as click's `source()` does, without the bash version check it
    # would start as a process: this script is for bash >= 4.4, which Debian 12 has.
    click.echo(script.source_template % script.source_vars(), nl=False)
