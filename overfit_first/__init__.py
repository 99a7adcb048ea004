"""overfit-first: the library the pipeline stages share (data, models, training, tracking)."""

import os

# TensorFlow's oneDNN CPU kernels: TensorFlow turns them on by itself only on CPUs with AVX-512 or AMX, yet on
# a 2-core AVX2 machine they train cnn_simplified about 1.4x faster, still deterministically (BENCHMARKS.md).
# TensorFlow reads the variable once, when it is imported: hence here, before any module imports Keras.
# TF_ENABLE_ONEDNN_OPTS=0 in the environment turns them off. TensorFlow then prints "oneDNN custom operations
# are on" at import, whatever TF_CPP_MIN_LOG_LEVEL says.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
