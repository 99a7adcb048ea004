"""The pipeline stages: each is `python -m stages.<name> ...`, run by DVC from the repository root."""
