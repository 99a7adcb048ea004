"""Switch params.yaml between run profiles (the quick default, the article at full scale, ...).

`python -m overfit_first.profiles article` merges profiles/article.yaml into params.yaml, keeping its
comments, so the switch is one reviewable diff; `dvc repro` then runs what changed. `git checkout
params.yaml` switches back.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

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
    profile_path = PROFILES_DIR / f"{name}.yaml"
    if not profile_path.is_file():
        raise PipelineError(f"no profile '{name}' ({profile_path} not found); available: {', '.join(available())}")
    yaml = YAML()  # round-trip mode keeps params.yaml's comments and key order
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    profile: dict[str, Any] = yaml.load(profile_path.read_text(encoding="utf-8"))
    params: dict[str, Any] = yaml.load(params_path.read_text(encoding="utf-8"))
    changed = merge(params, profile)
    buffer = io.StringIO()
    yaml.dump(params, buffer)
    validate(YAML(typ="safe").load(buffer.getvalue()), source=f"{params_path} with profile {name}")
    atomic.write_text(into or params_path, header + buffer.getvalue())
    return changed


def merge(params: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Merge a parsed profile into parsed params, in place; return the keys that changed.

    A profile's `runs` replaces the params' whole; its other sections are merged key by key.
    """
    changed = []
    for section, value in profile.items():
        if section in REPLACED_WHOLE or not isinstance(value, dict) or not isinstance(params.get(section), dict):
            if params.get(section) != value:
                params[section] = value
                changed.append(section)
            continue
        for key, sub_value in value.items():
            if params[section].get(key) != sub_value:
                params[section][key] = sub_value
                changed.append(f"{section}.{key}")
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first.profiles",
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
