"""What a module is: named configuration paths, state commands, and the modules it needs.

Why modules rather than one list of paths: an admin restores `ssh` without touching `network`,
and `ssh` only makes sense with the users its files belong to. Dependencies make the order of a
partial restore explicit, and a module that needs one that is not restored is refused by name.
Built-in modules cover a Debian server; an admin adds more in modules.d, one TOML file each,
checked as strictly as the settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from rescue.config import read_toml
from rescue.config.fields import full_match
from rescue.errors import ConfigError

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def _abs_path(value: str) -> str:
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ValueError(f"must be an absolute path without '..', not {value!r}")
    return str(path)


ModulePath = Annotated[str, AfterValidator(_abs_path)]


Name = Annotated[
    str, AfterValidator(full_match(_NAME, "must be lower-case letters, digits, - or _ (up to 40)"))
]


class StateCommand(BaseModel):
    """State that is not a file: `export` prints it, `import` reads it back from {state}.

    Both are shell commands; {root} becomes the system's root and {state} the saved output, each
    quoted for the shell. `when` names a path under the root that must exist for the export to
    run (dpkg's database, say), so a host without it is read as it is.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = Field(description="A file name for the saved output, e.g. selections.")
    export: str = Field(description="A shell command that prints the state on stdout.")
    import_: str = Field(
        default="",
        alias="import",
        description="A shell command that applies {state}; empty: the state is kept as a record.",
    )
    when: ModulePath | None = Field(
        default=None, description="Export only when this path exists under the root."
    )
    empty_exit: int | None = Field(
        default=None,
        description="An exit code that means 'nothing to export' when the command printed "
        "nothing (grep and systemctl list-unit-files exit 1 when nothing matches): the state "
        "is saved empty, not reported as a failure.",
    )


class Module(BaseModel):
    """One module: a drop-in file is exactly this, `name` defaulting to the file's stem."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)
    help: ClassVar[str] = "A configuration module for `rescue config-backup`."

    name: Name = Field(description="The module's name: lower-case letters, digits, - or _.")
    description: str = Field(default="", description="One line on what the module holds.")
    paths: list[ModulePath] = Field(
        default_factory=list,
        description="Files and directories (whole trees) or globs; missing ones are skipped.",
    )
    data_dirs: list[ModulePath] = Field(
        default_factory=list,
        description="Data directories, only in archives of type full.",
    )
    depends: list[str] = Field(
        default_factory=list, description="Modules that must be restored with (before) this one."
    )
    state: list[StateCommand] = Field(
        default_factory=list, description="State that is not a file, exported by commands."
    )
    source: str = Field(default="built in", exclude=True)


def _state(
    name: str,
    export: str,
    import_: str = "",
    when: str | None = None,
    empty_exit: int | None = None,
) -> StateCommand:
    return StateCommand.model_validate(
        {"name": name, "export": export, "import": import_, "when": when, "empty_exit": empty_exit}
    )


_DPKG = "dpkg --admindir={root}/var/lib/dpkg"
# apt-get needs the system it installs into to be running: in a mounted system, through chroot.
_DSELECT = (
    "if [ {root} = / ]; then apt-get -y -q dselect-upgrade; "
    "elif [ -x {root}/usr/bin/apt-get ]; then chroot {root} apt-get -y -q dselect-upgrade; "
    'else echo "not run: apt-get dselect-upgrade ({root} has no apt-get)"; fi'
)
_ENABLE = (
    "for unit in $(cut -d' ' -f1 {state}); do "
    'systemctl --root={root} enable "$unit" >/dev/null 2>&1 '
    '|| echo "could not enable $unit (is its package installed?)"; done'
)

BUILTIN: tuple[Module, ...] = (
    Module(
        name="users",
        description="accounts and groups, their passwords, sudo rules",
        paths=[
            "/etc/passwd",
            "/etc/group",
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/sudoers",
            "/etc/sudoers.d",
        ],
    ),
    Module(
        name="network",
        description="interfaces, netplan, NetworkManager, systemd-networkd, hosts, DNS",
        paths=[
            "/etc/network/interfaces",
            "/etc/network/interfaces.d",
            "/etc/netplan",
            "/etc/NetworkManager/NetworkManager.conf",
            "/etc/NetworkManager/conf.d",
            "/etc/NetworkManager/system-connections",
            "/etc/systemd/network",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
        ],
    ),
    Module(
        name="ssh",
        description="the SSH server's settings and host keys",
        paths=["/etc/ssh/sshd_config", "/etc/ssh/sshd_config.d", "/etc/ssh/ssh_host_*"],
        depends=["users"],
    ),
    Module(
        name="firewall",
        description="nftables and iptables rules",
        paths=["/etc/nftables.conf", "/etc/nftables.d", "/etc/iptables"],
        depends=["network"],
    ),
    Module(
        name="cron",
        description="system and user crontabs",
        paths=[
            "/etc/crontab",
            "/etc/cron.d",
            "/etc/cron.hourly",
            "/etc/cron.daily",
            "/etc/cron.weekly",
            "/etc/cron.monthly",
            "/var/spool/cron/crontabs",
        ],
    ),
    Module(
        name="packages",
        description="APT sources and the package selection (dpkg --get-selections)",
        paths=[
            "/etc/apt/sources.list",
            "/etc/apt/sources.list.d",
            "/etc/apt/preferences.d",
            "/etc/apt/apt.conf.d",
            "/etc/apt/trusted.gpg.d",
            "/etc/apt/keyrings",
        ],
        state=[
            _state(
                "selections",
                f"{_DPKG} --get-selections",
                f"{_DPKG} --set-selections < {{state}} && {_DSELECT}",
                when="/var/lib/dpkg/status",
            )
        ],
    ),
    Module(
        name="services",
        description="local units, drop-ins and which units are enabled",
        paths=["/etc/systemd/system"],
        depends=["packages"],
        state=[
            _state(
                "enabled-units",
                "systemctl --root={root} list-unit-files --state=enabled --no-legend --no-pager",
                _ENABLE,
                when="/etc/systemd/system",
                empty_exit=1,  # systemctl: no unit is enabled
            )
        ],
    ),
    Module(
        name="rescue",
        description="this tool's own settings, secret files and modules",
        paths=["/etc/rescue"],
    ),
)


def load_dropin(path: Path) -> Module:
    """One modules.d file; its problems are `file:line: key: message` lines (exit 3)."""
    toml = read_toml(path)
    toml.data.setdefault("name", path.stem)
    module = toml.validate(Module)
    module.source = str(path)
    return module


def load_modules(modules_dir: Path | None) -> dict[str, Module]:
    """The built-in modules plus the drop-ins, checked as a whole (names, dependencies)."""
    modules = {m.name: m for m in BUILTIN}
    if modules_dir is not None and modules_dir.is_dir():
        for path in sorted(modules_dir.glob("*.toml")):
            module = load_dropin(path)
            if module.name in modules:
                raise ConfigError(
                    f"{path}: module {module.name} is already defined "
                    f"({modules[module.name].source}); choose another name"
                )
            modules[module.name] = module
    check_graph(modules.values())
    return modules


def check_graph(modules: Iterable[Module]) -> None:
    """Every dependency exists and none is circular; a problem names the module's file."""
    by_name = {m.name: m for m in modules}
    for module in by_name.values():
        unknown = [d for d in module.depends if d not in by_name]
        if unknown:
            raise ConfigError(
                f"{module.source}: module {module.name} depends on unknown module(s) "
                f"{', '.join(unknown)} (known: {', '.join(by_name)})"
            )
    dependency_order(graph(by_name.values()), list(by_name))


def graph(modules: Iterable[Module]) -> dict[str, list[str]]:
    """name -> the names it depends on: all that ordering needs (an archive's manifest keeps it)."""
    return {m.name: list(m.depends) for m in modules}


def dependency_order(deps: Mapping[str, Sequence[str]], selected: Sequence[str]) -> list[str]:
    """selected, each after the selected modules it depends on; ties keep the given order.

    Dependencies outside the selection are ignored here: missing_dependencies() says which.
    """
    wanted = list(dict.fromkeys(selected))
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise ConfigError(f"modules depend on each other in a circle: {cycle}")
        visiting.append(name)
        for dep in deps.get(name, ()):
            if dep in wanted:
                visit(dep)
        visiting.pop()
        done.append(name)

    for name in wanted:
        visit(name)
    return done


def missing_dependencies(deps: Mapping[str, Sequence[str]], selected: Sequence[str]) -> list[str]:
    """The modules the selection needs but does not hold, transitively, in dependency order."""
    missing: list[str] = []
    todo = list(selected)
    while todo:
        for dep in deps.get(todo.pop(0), ()):
            if dep not in selected and dep not in missing:
                missing.append(dep)
                todo.append(dep)
    return dependency_order(deps, missing)
