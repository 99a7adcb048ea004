"""The pipeline stages: each is `python -m stages.<name> ...`, run by DVC from the repository root.

Python runs this file first for every stage: TensorFlow's native start-up lines are hidden here, before any stage
imports it (overfit_first.native_logs; TF_CPP_MIN_LOG_LEVEL=0 shows them). It changes what a stage prints, never
what it writes, so no stage lists this file as a DVC dependency.
"""

from overfit_first import native_logs

native_logs.quiet()
