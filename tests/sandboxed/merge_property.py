"""Run inside the sandbox only (tests/test_restore_safety.py starts it): the merge rules of a
forced restore, on about 200 seeded random pairs of small trees, straight through
rescue.placement (no duplicity: the staged tree stands for what duplicity restored).

After a forced placement, every old entry is still at DEST or in the undo directory, and every
restored entry is at DEST; a refusal changes nothing and has its reason (a non-empty directory
where the backup holds something else); the undo puts the old tree back, hash-identical.
Exit 0 when every example holds; hypothesis prints the smallest failing one otherwise.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/sandbox.py

from sandbox import Entry, tree_state

from rescue.errors import RestoreTargetExistsError
from rescue.placement.fsops import Attrs
from rescue.placement.guard import RestoreTarget
from rescue.placement.place import place
from rescue.placement.undo import apply_undo

SEEN: Counter[str] = Counter()  # what the examples exercised, printed at the end
NAMES = st.sampled_from(["a", "b", "c"])
# A node: ("f", content, mode) | ("l", target) | ("d", {name: node}, mode)
LEAF = st.one_of(
    st.tuples(st.just("f"), st.sampled_from(["x", "y", ""]), st.sampled_from([0o600, 0o644])),
    st.tuples(st.just("l"), st.sampled_from(["a", "../b", "/nowhere"])),
)
NODE = st.recursive(
    LEAF,
    lambda inner: st.tuples(
        st.just("d"), st.dictionaries(NAMES, inner, max_size=3), st.sampled_from([0o755, 0o700])
    ),
    max_leaves=8,
)
MAYBE = st.one_of(st.none(), NODE)


def build(path: Path, node: tuple, stamp: int) -> None:
    if node[0] == "f":
        path.write_text(node[1])
        path.chmod(node[2])
    elif node[0] == "l":
        os.symlink(node[1], path)
    else:
        path.mkdir()
        for name, child in node[1].items():
            build(path / name, child, stamp + 1)
        path.chmod(node[2])
    os.utime(path, ns=(stamp * 10**9, stamp * 10**9), follow_symlinks=False)


def clash(staged: tuple, dest: tuple | None) -> bool:
    """The rules refuse: somewhere a non-directory of the backup meets a non-empty directory."""
    if dest is None:
        return False
    if staged[0] == "d" and dest[0] == "d":
        return any(clash(child, dest[1].get(name)) for name, child in staged[1].items())
    return dest[0] == "d" and bool(dest[1])


def below(state: dict[str, Entry], top: str) -> dict[str, Entry]:
    return {k: v for k, v in state.items() if k == top or k.startswith(top + "/")}


@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(staged=NODE, dest=MAYBE)
def check(staged: tuple, dest: tuple | None) -> None:
    base = Path(tempfile.mkdtemp(dir="/srv"))
    build(base / "staged", staged, 1_600_000_000)
    if dest is not None:
        build(base / "dest", dest, 1_500_000_000)
    before = tree_state(base) if dest is not None else {}
    old = below(before, "dest")
    new = below(tree_state(base / "staged"), "")
    attrs = Attrs.of(base / "dest") if dest is not None else None
    target = RestoreTarget(base / "dest", True, base, attrs)
    try:
        placed = place(base / "staged", target, "item", "a property example")
    except RestoreTargetExistsError:
        SEEN["refused"] += 1
        assert clash(staged, dest), "refused without a non-empty directory in the way"
        assert tree_state(base) == before, "a refused merge changed something"
        return
    assert not clash(staged, dest), "a non-empty directory was replaced"
    SEEN["new" if dest is None else "replacing" if placed.replaced else "merged"] += 1
    after = tree_state(base / "dest")
    held: dict[str, Entry] = {}
    if placed.undo is not None and os.path.lexists(placed.undo / "tree"):
        held = tree_state(placed.undo / "tree")
    for rel, state in old.items():  # every old entry at DEST or in the undo directory
        inside = rel[len("dest/") :] if rel != "dest" else ""
        if state[0] == stat.S_IFDIR and after.get(inside, (None,))[0] == stat.S_IFDIR:
            continue  # merged into (its old attributes are journaled)
        assert state in (after.get(inside), held.get(inside)), f"{rel} is lost"
    for rel, state in new.items():  # every restored entry at DEST, as restored
        assert after.get(rel) == state, f"{rel}: {after.get(rel)} != {state}"
    if placed.undo is not None:
        apply_undo(placed.undo)
        assert mine(tree_state(base)) == mine(before), "the undo did not put the tree back"


def mine(state: dict[str, Entry]) -> dict[str, Entry]:
    """DEST and its parent: neither the staged tree nor the undo (and redo) directories."""
    return {k: v for k, v in state.items() if k == "" or k == "dest" or k.startswith("dest/")}


if __name__ == "__main__":
    if os.environ.get("RESCUE_SANDBOX") != "1":
        sys.exit("run this inside the sandbox only (tests/test_restore_safety.py starts it)")
    check()
    print("200 examples held: " + ", ".join(f"{k} {v}" for k, v in sorted(SEEN.items())))
