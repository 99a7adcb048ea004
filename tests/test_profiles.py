"""Profile switches (`python -m overfit_first profiles <name>`) on copies of params.yaml: whatever profile was applied
before, the file holds the comments that applying the target alone gives it, none of the other profile's; the
switch back to `default` gives the very file `default` alone gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from overfit_first.tools import profiles

from conftest import REPO


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def comments(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip().startswith("#")}


def test_a_switch_leaves_only_the_target_profiles_comments(project: Path) -> None:
    params = project / "params.yaml"
    names = profiles.available()
    assert {"default", "cifar", "article"} <= set(names)
    alone = {}
    for name in names:
        shutil.copy(REPO / "params.yaml", params)
        profiles.apply(name, params)
        alone[name] = params.read_text(encoding="utf-8")
    cifar = (project / "profiles" / "cifar.yaml").read_text(encoding="utf-8")
    cifar_notes = comments(cifar[cifar.index("\nruns:") :])  # its runs' notes, which its runs bring along
    assert "# article: early stopping near epoch 50 (of 150)" in cifar_notes and cifar_notes <= comments(alone["cifar"])
    for before in names:
        for target in names:
            shutil.copy(REPO / "params.yaml", params)
            profiles.apply(before, params)
            profiles.apply(target, params)
            switched = params.read_text(encoding="utf-8")
            assert comments(switched) == comments(alone[target]), f"{before}, then {target}"
            if target == "default":  # it sets every key another profile changes: the switch back is whole
                assert switched == alone["default"], f"{before}, then default"
    # The committed params.yaml is the default profile applied, to the byte: no line folded or re-wrapped.
    assert alone["default"] == (REPO / "params.yaml").read_text(encoding="utf-8")
    assert not cifar_notes & comments(alone["default"])  # the issue: a CIFAR run's note above the default runs


PARAMS = """\
train:
  seed: 0
  # How many training images.
  subset_size: 1000  # null: all
  augmentation:
    # The old block's note.
    flip: true

# The runs: one train stage each.
runs:
  # The old first run's note.
  a-mlp: {dataset: a, model: mlp}
  a-cnn: {dataset: a, model: cnn}

# The evaluation's thresholds.
evaluate:
  gap: 0.1
"""

PROFILE = """\
# The profile's header.
runs:
  # The new first run's note.
  b-mlp: {dataset: b, model: mlp}
  b-cnn: {dataset: b, model: cnn}  # the last run's note

# The profile's description of train: not params.yaml's.
train:
  subset_size: 50
  augmentation:
    # The new block's note.
    rotate: 3
"""

MERGED = """\
train:
  seed: 0
  # How many training images.
  subset_size: 50    # null: all
  augmentation:
    # The new block's note.
    rotate: 3

# The runs: one train stage each.
runs:
  # The new first run's note.
  b-mlp: {dataset: b, model: mlp}
  b-cnn: {dataset: b, model: cnn}  # the last run's note

# The evaluation's thresholds.
evaluate:
  gap: 0.1
"""


def test_a_replaced_value_takes_its_own_comments_and_leaves_the_next_keys(project: Path) -> None:
    """A replaced section (runs) or value (a block under a merged section) brings the profile's comments inside it;
    the old ones go, and the description of the key that follows it stays params.yaml's."""
    (project / "profiles" / "switch.yaml").write_text(PROFILE, encoding="utf-8")
    params = project / "params.yaml"
    params.write_text(PARAMS, encoding="utf-8")
    text, _ = profiles.merged_text("switch", params)
    assert text == MERGED
