"""overfit-first: the library the pipeline stages share (data, models, training, tracking)."""
