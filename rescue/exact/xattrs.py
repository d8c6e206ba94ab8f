"""Extended attributes, in every namespace, and the kinds an admin tells apart.

POSIX ACLs and file capabilities are xattrs too (system.posix_acl_*, security.capability), so
one raw copy keeps them all, with numeric ids, exactly. They are reported by kind, because a
file system can support one and not the other.
"""

from __future__ import annotations

import os
import struct
from typing import Literal

Kind = Literal["acl", "capability", "xattr"]

ACL_NAMES = ("system.posix_acl_access", "system.posix_acl_default")
CAPABILITY = "security.capability"

_ACL_TAGS = {0x01: "user", 0x02: "user", 0x04: "group", 0x08: "group", 0x10: "mask", 0x20: "other"}


def kind(name: str) -> Kind:
    if name in ACL_NAMES:
        return "acl"
    return "capability" if name == CAPABILITY else "xattr"


def read_all(path: str) -> dict[str, bytes]:
    """Every xattr of path (not followed), or {} where the file system has none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue  # removed in between, or unreadable: nothing to keep
    return values


def acl_text(value: bytes) -> str:
    """A POSIX ACL xattr as getfacl writes it in short form (user:1001:r--,mask::r-x,...)."""
    if len(value) < 4:
        return f"<{len(value)} bytes>"
    entries = []
    for offset in range(4, len(value) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, offset)
        name = _ACL_TAGS.get(tag, f"tag{tag:#x}")
        qualifier = str(ident) if tag in (0x02, 0x08) else ""
        bits = "".join(c if perm & b else "-" for c, b in (("r", 4), ("w", 2), ("x", 1)))
        entries.append(f"{name}:{qualifier}:{bits}")
    return ",".join(entries)


def show(name: str, value: bytes | None) -> str:
    """One value, readable: ACLs in getfacl's words, text as text, the rest as hex."""
    if value is None:
        return "none"
    if kind(name) == "acl":
        return acl_text(value)
    try:
        text = value.decode()
        if text.isprintable():
            return repr(text)
    except UnicodeDecodeError:
        pass
    return "0x" + value.hex()
