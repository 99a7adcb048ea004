"""overfit_first.unused_imports: what every stage skips at start-up, and what it keeps (JAX when Keras runs on it).
The stages themselves run with it in every test that runs one; bench/startup.py measures the time it saves."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from overfit_first import unused_imports

from conftest import stage_env

PROBE = (
    "from overfit_first import unused_imports; unused_imports.skip()\n"
    "import importlib\n"
    "for name in ('sklearn', 'jax'):\n"
    "    try:\n"
    "        importlib.import_module(name)\n"
    "        print(name, 'imported')\n"
    "    except ImportError:\n"
    "        print(name, 'skipped')\n"
)


def probe(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=stage_env(**env), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_stage_on_tensorflow_skips_scikit_learn_and_jax() -> None:
    assert probe(KERAS_BACKEND="tensorflow") == ["sklearn skipped", "jax skipped"]


@pytest.mark.slow  # imports JAX
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed (the jax extra)")
def test_a_stage_on_jax_keeps_jax() -> None:
    assert probe(KERAS_BACKEND="jax") == ["sklearn skipped", "jax imported"]


@pytest.mark.parametrize(
    ("environment", "config", "expected"),
    [
        ({"KERAS_BACKEND": "jax"}, {"backend": "tensorflow"}, "jax"),  # the variable wins, as in Keras
        ({}, {"backend": "jax"}, "jax"),
        ({}, None, "tensorflow"),  # no keras.json: Keras' default
        ({}, "not json", "tensorflow"),
    ],
)
def test_the_backend_is_read_as_keras_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], config: object, expected: str
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    if config is not None:
        text = config if isinstance(config, str) else json.dumps(config)
        (tmp_path / "keras.json").write_text(text, encoding="utf-8")
    assert unused_imports.keras_backend() == expected
