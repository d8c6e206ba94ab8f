"""The commented sample `rescue config init` writes, and settings shown as TOML.

Why generated: each field's description and example live in the model, so the sample cannot
drift from what load_settings() accepts (tests load the sample as it is).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from rescue.config.destination import Destination
from rescue.config.encryption import Encryption
from rescue.config.fields import Section
from rescue.config.sections import ConfigBackup, Duplicity, Monitoring, Schedule, Selection


def toml_value(value: Any) -> str:
    """A TOML literal for the plain values settings hold (strings, ints, bools, lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _comment(text: str, width: int = 98) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent="# ", subsequent_indent="# ")


SECTIONS: tuple[tuple[str, type[Section]], ...] = (
    ("destination", Destination),
    ("encryption", Encryption),
    ("schedule", Schedule),
    ("selection", Selection),
    ("duplicity", Duplicity),
    ("config_backup", ConfigBackup),
    ("monitoring", Monitoring),
)


def sample_settings() -> str:
    """The commented sample `rescue config init` writes, generated from the model.

    Required keys are written with their first example (a local directory: it loads as is);
    optional keys are commented out with their default, or an example when there is none.
    """
    out = [
        "# rescue settings. Check with: rescue config check",
        "# Keep this file mode 0600 when it holds a password. Unknown keys are errors.",
        "",
    ]
    for name, model in SECTIONS:
        out += _comment(model.help)
        out.append(f"[{name}]")
        for key, info in model.model_fields.items():
            example = (info.examples or [""])[0]
            extra = info.json_schema_extra
            if info.is_required() or (isinstance(extra, dict) and extra.get("in_sample")):
                out += _comment(f"{info.description}{'' if extra else ' Required.'}")
                out.append(f"{key} = {toml_value(example)}")
                continue
            out += _comment(info.description or "")
            default = info.get_default(call_default_factory=True)
            shown = example if default is None or default == [] else default
            out.append(f"# {key} = {toml_value(shown)}")
        out.append("")
    return "\n".join(out)


def render_toml(data: Mapping[str, Any]) -> str:
    """Plain settings data (as redacted() gives) as TOML; unset keys are left out."""
    out: list[str] = []
    for section, keys in data.items():
        if not isinstance(keys, Mapping):
            continue
        out.append(f"[{section}]")
        out += [f"{k} = {toml_value(v)}" for k, v in keys.items() if v is not None]
        out.append("")
    return "\n".join(out)
