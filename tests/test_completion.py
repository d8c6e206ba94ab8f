"""Tab completion: `rescue completion SHELL` prints click's own script, and a real bash that
sourced it completes commands, options and their known values by running the real `rescue`
with COMP_WORDS and COMP_CWORD (click's protocol), as it does on every Tab."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import RESCUE, rescue

from rescue.recovery.runner import step_ids
from rescue.steps import RECOVER

# pip's console script for `rescue = "rescue.launch:main"`, for this interpreter: the real
# entry point, found on PATH as `rescue` (the completion script runs the command by that name).
LAUNCHER = f"""#!{sys.executable}
import re
import sys
from rescue.launch import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


@pytest.fixture
def path_with_rescue(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rescue").write_text(LAUNCHER)
    (bin_dir / "rescue").chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.fixture
def bash_script(path_with_rescue: str, tmp_path: Path) -> Path:
    """`rescue completion bash`, written once, as scripts/setup installs it."""
    script = tmp_path / "rescue.bash"
    with script.open("w") as out:
        subprocess.run(
            ["rescue", "completion", "bash"],
            env={**os.environ, "PATH": path_with_rescue},
            stdout=out,
            check=True,
        )
    return script


def test_the_scripts_are_clicks_own_for_each_shell() -> None:
    bash = rescue(None, "completion", "bash")
    assert bash.code == 0, bash.err
    sourced = subprocess.run(
        RESCUE,
        env={**os.environ, "_RESCUE_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
    )
    assert bash.out == sourced.stdout
    assert "complete -o nosort -F _rescue_completion rescue" in bash.out
    assert "_RESCUE_COMPLETE=bash_complete" in bash.out
    zsh = rescue(None, "completion", "zsh")
    assert zsh.code == 0 and zsh.out.startswith("#compdef rescue\n")
    fish = rescue(None, "completion", "fish")
    assert fish.code == 0 and "complete --no-files --command rescue" in fish.out
    wrong = rescue(None, "completion", "tcsh")
    assert wrong.code == 2 and wrong.out == ""
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in wrong.err


def bash_complete(path: str, script_file: Path, *words: str) -> list[str]:
    """What bash's COMPREPLY holds after the Tab at the end of words ('' = after a space)."""
    script = f"""
set -e
source {script_file}
[ "$(complete -p rescue)" = "complete -o nosort -F _rescue_completion rescue" ]
COMP_WORDS=("$@")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_rescue_completion rescue "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(
        ["bash", "-c", script, "bash", *words],
        env={**os.environ, "PATH": path},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_real_bash_completes_commands_options_and_values(
    path_with_rescue: str, bash_script: Path
) -> None:
    def complete(*words: str) -> list[str]:
        return bash_complete(path_with_rescue, bash_script, *words)

    assert complete("rescue", "st") == ["status"]
    assert complete("rescue", "config-backup", "cr") == ["create"]
    options = complete("rescue", "recover", "--")
    assert {"--after", "--only", "--from", "--dry-run", "--resume", "--plan"} <= set(options)
    assert complete("rescue", "recover", "--after", "") == [
        "reboot",
        "poweroff",
        "shell",
        "none",
    ]
    steps = [step for step in step_ids(RECOVER) if step.startswith("re")]
    assert len(steps) > 3
    assert complete("rescue", "recover", "--only", "re") == steps
    assert complete("rescue", "completion", "") == ["bash", "zsh", "fish"]
    module = ["rescue", "config-backup", "create", "--module", "us"]
    assert complete(*module) == ["users"]
    assert complete("rescue", "no-such-") == []


def test_a_path_option_asks_bash_for_file_names(path_with_rescue: str) -> None:
    """The protocol itself: bash's function gets `file,` and lets bash complete the name."""
    done = subprocess.run(
        ["rescue"],
        env={
            **os.environ,
            "PATH": path_with_rescue,
            "COMP_WORDS": "rescue restore /etc/hosts --to /tm",
            "COMP_CWORD": "4",
            "_RESCUE_COMPLETE": "bash_complete",
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "file,/tm\n", "")
