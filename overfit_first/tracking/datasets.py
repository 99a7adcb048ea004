"""A run's dataset inputs: each prepared split as an MLflow dataset, its digest the split's checksum and its
profile the split's sizes and where its data came from (data/raw/<dataset>/meta.json)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.schema import TensorDatasetSchema
from mlflow.types import Schema, TensorSpec

from overfit_first.config import Run, load_params
from overfit_first.data import fetch, raw
from overfit_first.data.splits import dataset_dir


class PreparedSplit(MetaDataset):
    """A prepared split as an MLflow dataset input: its digest is the split's checksum (summary.json), so two
    runs on the same data show the same digest; its profile holds the sizes and where the data came from."""

    def __init__(
        self, source: Any, name: str, digest: str, schema: TensorDatasetSchema, profile: dict[str, Any]
    ) -> None:
        self._profile = profile
        super().__init__(source, name=name, digest=digest)
        self._tensor_schema = schema

    @property
    def profile(self) -> dict[str, Any]:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {
            **super().to_dict(),
            "schema": json.dumps(self._tensor_schema.to_dict()),
            "profile": json.dumps(self._profile),
        }


def split_dataset(run: Run, summary: dict[str, Any], split: str) -> PreparedSplit:
    """`split` (train or valid) of the run's prepared data, as the run saw it: the training images are the
    first train.subset_size of every class (named `<dataset>-train-<n>` then), the validation split whole.

    Digest: the first 10 hex digits of the split file's SHA-256, as summary.json records it.
    """
    entry = summary["splits"][split]
    total = int(entry["count"])
    images = total if split != "train" else min(total, run.shared.subset_size or total)
    name = f"{run.dataset}-{split}" + (f"-{images}" if images < total else "")
    kind, location = data_origin(run.dataset)
    shape = tuple(int(size) for size in summary["image_shape"])
    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(np.uint8), (-1, *shape), "images")]),
        targets=Schema([TensorSpec(np.dtype(np.int64), (-1,), "labels")]),
    )
    profile = {
        "images": images,
        "split_images": total,
        "classes": int(summary["num_classes"]),
        "image_shape": "x".join(map(str, shape)),
        "split_sha256": entry["sha256"],
        "origin": kind,
        "location": location,
        "description": summary.get("source") or run.dataset,
    }
    return PreparedSplit(dataset_source(location), name, entry["sha256"][:10], schema, profile)


def dataset_source(location: str) -> Any:
    """An MLflow dataset source for a URL (type http) or a path (type local)."""
    kind = "http" if "://" in location else "local"
    # Only that type's source: MLflow would otherwise warn that a path matches two registered ones.
    candidates = [source for source in get_registered_sources() if source._get_source_type() == kind]
    return resolve_dataset_source(location, candidate_sources=candidates[:1])


def data_origin(dataset: str) -> tuple[str, str]:
    """(kind, location) of the files the prepared data was made from, read from data/raw/<dataset>/meta.json.

    kind: `image folder`; `mirror` (params data.mirror or OVERFIT_FIRST_MIRROR); `official archive` (downloaded
    from the official URLs); `local copy` (found on this machine: Debian's package, Keras' or the download
    cache). location: the common directory or base URL of those files. Without meta.json: `prepared data` and
    data/prepared/<dataset>.
    """
    try:
        meta = json.loads((raw.RAW_ROOT / dataset / "meta.json").read_text(encoding="utf-8"))
        origins = [str(file["origin"]) for file in meta["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        origins = []
    if not origins:  # data/raw not checked out: the prepared split itself is all there is to point at
        return "prepared data", str(dataset_dir(dataset).resolve())
    location = origins[0] if len(origins) == 1 else os.path.commonpath(origins)
    if len(origins) > 1 and "://" in origins[0]:
        location = origins[0].rsplit("/", 1)[0] + "/"  # the base URL: commonpath would fold its '//'
    mirror = fetch.mirror_setting(load_params().data.mirror)
    if str(meta.get("source", "")).startswith("image folder"):
        kind = "image folder"
    elif mirror and origins[0].startswith(mirror.rstrip("/")):
        kind = "mirror"
    elif "://" in origins[0]:
        kind = "official archive"
    else:
        kind = "local copy"
    return kind, location
