"""Reading params.yaml: each stage reads only its own sections, like DVC's example-get-started."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from overfit_first.errors import PipelineError
from overfit_first.validation import validate

PARAMS_FILE = Path(os.environ.get("OVERFIT_FIRST_PARAMS", "params.yaml"))


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Any]:
    """The whole params.yaml, validated (overfit_first.validation) before any stage does work."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path} not found: run the stage from the repository root (where dvc.yaml is)")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(params, dict):
        raise PipelineError(f"{path} must hold a mapping of sections (data, prepare, train, ...)")
    validate(params, source=str(path))
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """One top-level section of params.yaml, with an error that names the missing key."""
    if name not in params or not isinstance(params[name], dict):
        raise PipelineError(f"params.yaml: missing section '{name}' (a mapping); see README 'Parameters'")
    return params[name]
