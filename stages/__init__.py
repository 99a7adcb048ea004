"""The pipeline stages: each is `python -m stages.<name> ...`, run by DVC from the repository root.

Python runs this file first for every stage, before any stage imports TensorFlow: TensorFlow's native start-up
lines are hidden (overfit_first.native_logs; TF_CPP_MIN_LOG_LEVEL=0 shows them), and the libraries Keras imports
without using them are skipped (overfit_first.unused_imports). It changes what a stage prints and how fast it
starts, never what it writes, so no stage lists this file as a DVC dependency.
"""

from overfit_first import native_logs, unused_imports

native_logs.quiet()
unused_imports.skip()
