"""The one way rescue reads a TOML file: the settings, the modules.d drop-ins and the plan.

Why one layer: an admin who mistyped a value must be sent to the line, whichever file it is in.
tomllib keeps no positions, so a line scanner (Locator) finds where each key is, and every
problem reads `file:line: key: message`; a pydantic model's errors are worded here once (never
showing the value: it may be a secret).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from rescue.errors import ConfigError

Loc = tuple[str | int, ...]
ModelT = TypeVar("ModelT", bound=BaseModel)


class Problems(ValueError):
    """Several cross-field problems of one section, each with the key it is about.

    pydantic reports a model validator's error at the section; carrying the keys lets the error
    name `destination.host` and its line instead of just `destination`.
    """

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems))
        self.problems = problems


# -- where each key is in the file ------------------------------------------------------------

# A key part: bare, or quoted without escapes ("/backup", "recover.erase").
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*')"""
_DOTTED = rf"{_PART}(?:\s*\.\s*{_PART})*"
_HEADER = re.compile(rf"\s*\[\s*({_DOTTED})\s*\]\s*(?:#.*)?")
_KEY = re.compile(rf"\s*({_DOTTED})\s*=")


class Locator:
    """Line numbers of `[section]` headers and `key =` lines; tomllib keeps no positions.

    A plain line scanner is enough for what rescue's files use: bare and quoted keys, dotted
    keys and headers (keys inside an inline table get the line of the table). A line inside a
    multi-line string that looks like a key only matters when it also names a real key, and
    then the first occurrence wins.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, ...], int] = {}
        section: tuple[str, ...] = ()
        for number, line in enumerate(text.splitlines(), start=1):
            if header := _HEADER.fullmatch(line):
                section = _split(header.group(1))
                self.lines.setdefault(section, number)
            elif key := _KEY.match(line):
                names = (*section, *_split(key.group(1)))
                for end in range(len(section) + 1, len(names) + 1):  # a.b = 1 also defines a
                    self.lines.setdefault(names[:end], number)

    def line(self, loc: Loc) -> int:
        """The line of the key; else of its nearest enclosing section; else 1."""
        names = tuple(part for part in loc if isinstance(part, str))
        for end in range(len(names), 0, -1):
            if names[:end] in self.lines:
                return self.lines[names[:end]]
        return 1


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in re.findall(_PART, dotted))


# -- turning pydantic's errors into ours ------------------------------------------------------


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _field(loc: Loc, root: type[BaseModel]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model that holds the last key of loc, and that key's FieldInfo (None if unknown)."""
    model: type[BaseModel] | None = root
    holder: type[BaseModel] | None = None
    info: FieldInfo | None = None
    for part in loc:
        if not isinstance(part, str):
            continue
        if model is None or part not in model.model_fields:
            return model, None
        holder, info = model, model.model_fields[part]
        model = info.annotation if _is_model(info.annotation) else None
    return holder, info


def dotted(loc: Loc) -> str:
    """A key path as the file spells it: `selection.include[0]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _short(info: FieldInfo | None) -> str:
    """The first sentence of a description, lower-cased: `missing (the directory ...)`."""
    if info is None or not info.description:
        return ""
    first = info.description.split(". ")[0].rstrip(".")
    return first[:1].lower() + first[1:]


def _bounds(info: FieldInfo | None) -> tuple[Any, Any]:
    low = high = None
    for meta in info.metadata if info else ():
        low = getattr(meta, "ge", low)
        high = getattr(meta, "le", high)
    return low, high


def _choices(info: FieldInfo | None) -> list[str]:
    if info is None:
        return []
    args = [a for a in get_args(info.annotation) if a is not type(None)]
    literal = next((a for a in args if get_args(a)), info.annotation)
    return [str(c) for c in get_args(literal) if isinstance(c, str)]


def _message(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One friendly line for one pydantic error; never shows the value (it may be a secret)."""
    kind, loc = error["type"], tuple(error["loc"])
    holder, info = _field(loc, root)
    if kind == "missing":
        short = _short(info)
        return f"missing ({short})" if short else "missing"
    if kind == "extra_forbidden":
        known = list(holder.model_fields) if holder is not None else []
        # at the top of a file made of tables only (the settings), a key is a section
        tables = all(_is_model(f.annotation) for f in root.model_fields.values())
        return unknown_key(str(loc[-1]), known, "section" if len(loc) == 1 and tables else "key")
    if kind == "literal_error":
        return "must be one of: " + ", ".join(_choices(info))
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(info)
        if low is not None and high is not None:
            return f"must be between {low} and {high}"
        return f"must be at least {low}" if low is not None else f"must be at most {high}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return "must be a whole number"
    if kind == "string_type":
        return "must be a string (in quotes)"
    if kind == "list_type":
        return 'must be a list, e.g. ["/etc", "/home"]'
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a table ([{loc[0]}])" if len(loc) == 1 else "must be a table"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return str(error["msg"])[:1].lower() + str(error["msg"])[1:]


def unknown_key(name: str, known: Iterable[str], what: str = "key") -> str:
    """`unknown key (did you mean time?)`, or the known keys when none is close."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
    return f"unknown {what} ({hint})"


def _problems(exc: ValidationError, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    found: list[tuple[Loc, str]] = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, Problems):
            found += [((*loc, *sub), msg) for sub, msg in cause.problems]
        else:
            found.append((loc, _message(error, root)))
    return found


def config_error(
    exc: ValidationError, path: Path | None, locator: Locator | None, root: type[BaseModel]
) -> ConfigError:
    """All problems as one ConfigError, a line each, in file order when there is a file."""
    problems = _problems(exc, root)
    if path is None or locator is None:
        return ConfigError("\n".join(f"{dotted(loc)}: {msg}" for loc, msg in problems))
    located = sorted(((locator.line(loc), loc, msg) for loc, msg in problems), key=lambda x: x[0])
    return ConfigError(
        "\n".join(f"{path}:{line}: {dotted(loc)}: {msg}" for line, loc, msg in located)
    )


# -- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TomlFile:
    """A TOML file as read: its data, and where each key is, for `file:line: key:` errors."""

    path: Path
    text: str
    data: dict[str, Any]
    locator: Locator

    def where(self, *loc: str | int) -> str:
        """`file:line: key`, the start of an error about that key."""
        return f"{self.path}:{self.locator.line(loc)}: {dotted(loc)}"

    def validate(self, model: type[ModelT]) -> ModelT:
        """The data as model; each problem is one `file:line: key: message` ConfigError line."""
        try:
            return model.__pydantic_validator__.validate_python(self.data)
        except ValidationError as exc:
            raise config_error(exc, self.path, self.locator, model) from None


def read_toml(path: Path, error: type[ConfigError] = ConfigError) -> TomlFile:
    """Read a TOML file; an unreadable or malformed one is one `error` line that names the file
    (and the line, for bad TOML). The caller picks the error class, so the exit code says
    which file was wrong (a plan's is PlanError)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"at line (\d+)", str(exc))
        line = where.group(1) if where else len(text.splitlines()) or 1  # "at end of document"
        raise error(f"{path}:{line}: invalid TOML: {exc}") from None
    return TomlFile(path, text, data, Locator(text))
