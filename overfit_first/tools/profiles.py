"""Switch params.yaml between run profiles (the quick default, the article at full scale, ...).

`python -m overfit_first profiles article` merges profiles/article.yaml into params.yaml, keeping its
comments, so the switch is one reviewable diff; `dvc repro` then runs what changed. `git checkout
params.yaml` switches back, and so does `python -m overfit_first profiles default`: whatever profile was applied
before, a switch leaves params.yaml as applying the target profile alone would (its comments, none of another's).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from overfit_first import atomic, layout
from overfit_first.config import PARAMS_FILE, validate
from overfit_first.errors import PipelineError, run_stage

PROFILES_DIR = Path("profiles")
REPLACED_WHOLE = {"runs"}  # a profile's run list replaces the current one; other sections are merged


def available() -> list[str]:
    return sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def apply(name: str, params_path: Path = PARAMS_FILE, into: Path | None = None, header: str = "") -> list[str]:
    """Merge profile `name` into params.yaml (or into a copy of it at `into`, after `header`); return the keys
    that changed.

    ruamel.yaml's round-trip mode reads YAML 1.2 as DVC and overfit_first.config do; the merged file is
    validated before it is written, so a profile never leaves an invalid params file behind.
    """
    text, changed = merged_text(name, params_path)
    validate(YAML(typ="safe").load(text), source=f"{params_path} with profile {name}")
    atomic.write_text(into or params_path, header + text)
    return changed


def merged_text(name: str, params_path: Path = PARAMS_FILE) -> tuple[str, list[str]]:
    """params.yaml with profile `name` merged in (`merge`), as text with its comments, and the keys that changed;
    not validated (`apply` validates)."""
    profile_path = PROFILES_DIR / f"{name}.yaml"
    if not profile_path.is_file():
        raise PipelineError(f"no profile '{name}' ({profile_path} not found); available: {', '.join(available())}")
    yaml = YAML()  # round-trip mode keeps params.yaml's comments and key order
    yaml.width = 4096  # never fold a line: a run's {dataset: ..., epochs: ...} stays one line, as it was written
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    profile: dict[str, Any] = yaml.load(profile_path.read_text(encoding="utf-8"))
    params: dict[str, Any] = yaml.load(params_path.read_text(encoding="utf-8"))
    changed = merge(params, profile)
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    return buffer.getvalue(), changed


def merge(params: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Merge a parsed profile into parsed params, in place; return the keys that changed.

    A profile's `runs` replaces the params' whole; its other sections are merged key by key. Parsed round-trip
    (ruamel), a replaced value takes its comments along (`replace`).
    """
    changed = []
    for section, value in profile.items():
        if section in REPLACED_WHOLE or not isinstance(value, dict) or not isinstance(params.get(section), dict):
            if params.get(section) != value:
                replace(params, section, value, profile)
                changed.append(section)
            continue
        for key, sub_value in value.items():
            if params[section].get(key) != sub_value:
                replace(params[section], key, sub_value, value)
                changed.append(f"{section}.{key}")
    return changed


def replace(target: dict[str, Any], key: str, value: Any, source: dict[str, Any]) -> None:
    """target[key] = value, where value is source[key]; in round-trip mode with the comments where they belong.

    ruamel keeps the comment lines between `key:` and its value's first entry on the key, in the mapping holding it,
    and the lines after a value (up to the next key: that key's description) on the value's last entry. So, left
    alone, an assignment kept the old value's leading comments above the new value (a CIFAR run's note above the
    default runs, after `profiles cifar` then `profiles default`), dropped the description of the key after it,
    and brought the profile's own trailing lines in. Now the leading comments are the profile's (or none) and the
    trailing lines stay the target's; an end-of-line comment stays with its line.
    """
    old = target.get(key)
    target[key] = value
    if not isinstance(target, CommentedMap):  # plain dicts (overfit_first.tools.article_gpu): no comments to place
        return
    leading = source.ca.items.get(key, [None] * 4)[3] if isinstance(source, CommentedMap) else None
    slots = target.ca.items.setdefault(key, [None] * 4)
    slots[3] = leading
    if isinstance(value, CommentedBase) and value.ca.comment:  # the same lines, as the value also holds them
        value.ca.comment[1] = leading
    if not any(slots):
        del target.ca.items[key]
    if isinstance(value, CommentedMap | CommentedSeq):
        _set_after(value, _after(old))


def _tail(node: Any) -> tuple[list[Any], int] | None:
    """The comment slot that holds the lines after a block collection `node` (its deepest last entry's)."""
    while isinstance(node, CommentedMap | CommentedSeq) and len(node) and not node.fa.flow_style():
        last: Any = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
        child = node[last]
        if isinstance(child, CommentedMap | CommentedSeq) and len(child) and not child.fa.flow_style():
            node = child
            continue
        return node.ca.items.setdefault(last, [None] * 4), (2 if isinstance(node, CommentedMap) else 0)
    return None


def _split(token: CommentToken | None) -> tuple[str, str]:
    """A trailing comment token's text as (its end-of-line comment, the lines after it: '\n' and on)."""
    text = token.value if token is not None else ""
    head, newline, rest = text.partition("\n")
    return head, newline + rest


def _after(node: Any) -> str:
    """The lines after a block collection `node`, its end-of-line comment excluded; '' when none."""
    tail = _tail(node)
    return _split(tail[0][tail[1]])[1] if tail else ""


def _set_after(node: Any, lines: str) -> None:
    """Make `lines` the lines after block collection `node`, keeping its last line's end-of-line comment."""
    tail = _tail(node)
    if tail is None:
        return
    slots, index = tail
    token = slots[index]
    head = _split(token)[0]
    text = head + (lines or ("\n" if head else ""))
    if not text.strip():
        slots[index] = None
    elif token is not None:
        token.value = text
    else:
        slots[index] = CommentToken(text, CommentMark(0), None)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first profiles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("profile", help=f"one of: {', '.join(available())}")
    args = parser.parse_args()
    layout.require_repo_root()
    changed = apply(args.profile)
    print(f"params.yaml: profile '{args.profile}' applied; changed: {', '.join(changed) or 'nothing'}")
    print("next: dvc repro   (or dvc exp run, to keep it as an experiment)")


if __name__ == "__main__":
    run_stage(main)
