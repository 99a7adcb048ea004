"""Benchmarks of the pipeline's hot paths, each against a baseline measured in the same run: `python -m bench`.

Timings on a shared machine are noisy, so every figure comes with a ratio to a baseline taken moments
before or after it, in the same conditions; nothing here is a test, and no test asserts a timing.
"""
