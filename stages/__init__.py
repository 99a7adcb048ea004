"""The pipeline stages: each is `python -m stages.<name> ...`, run by DVC from the repository root.

Python runs this file first for every stage, before any stage imports TensorFlow: TensorFlow's native start-up
lines are hidden (overfit_first.native_logs; TF_CPP_MIN_LOG_LEVEL=0 shows them), the libraries Keras imports
without using them are skipped (overfit_first.unused_imports), and a stop signal during the imports ends the
stage with the usual line instead of a traceback (overfit_first.errors). It changes what a stage prints and how
fast it starts, never what it writes, so no stage lists this file as a DVC dependency.
"""

from overfit_first import errors, native_logs, unused_imports

errors.exit_on_stop_while_starting()
native_logs.quiet()
unused_imports.skip()
