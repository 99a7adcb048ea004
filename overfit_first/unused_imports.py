"""Libraries that Keras and TensorFlow import at start-up although no stage uses them, kept out of the stages.

Keras imports scikit-learn for its scikit-learn wrappers (`keras.wrappers`), and TensorFlow Lite imports JAX for
converting JAX functions (`tensorflow.lite.python.util`), each when it is installed: MLflow requires
scikit-learn, and the `jax` and `dev` extras install JAX. Both imports sit in a `try: ... except ImportError`,
so `skip` marks the packages as absent (None in sys.modules: an import of them raises ModuleNotFoundError),
which saves every stage that imports Keras about 1.5 s per package (bench/startup.py). JAX stays importable when
Keras runs on JAX (KERAS_BACKEND=jax, or `backend` in keras.json).

For stage processes only: a module marked absent is still a key of sys.modules, and scipy (the noise rule's
t-tests) probes sys.modules for JAX arrays and fails on the None it finds there.

What this module does changes when a stage starts, never a number: no stage lists it as a DVC dependency.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

ALWAYS = ("sklearn",)
UNLESS_KERAS_ON_JAX = ("jax", "jaxlib")


def keras_backend() -> str:
    """The backend Keras will choose: KERAS_BACKEND, else `backend` of keras.json ($KERAS_HOME or ~/.keras), else
    tensorflow (keras.src.backend.config)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return str(json.loads((home / "keras.json").read_text(encoding="utf-8")).get("backend") or "tensorflow")
    return "tensorflow"


def skip() -> None:
    """Mark the unused packages absent in this process; call it before Keras is imported. One already imported
    stays."""
    names = ALWAYS + (UNLESS_KERAS_ON_JAX if keras_backend() == "tensorflow" else ())
    for name in names:
        sys.modules.setdefault(name, None)
