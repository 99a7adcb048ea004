"""The `download` stage's work: resolve a dataset, obtain and verify its files, parse, write data/raw/<name>/."""

from __future__ import annotations

from pathlib import Path

from overfit_first.config import DataConfig
from overfit_first.data import fetch, image_folder, raw, sources
from overfit_first.data.raw import RawData


def download(dataset: str, settings: DataConfig, root: Path = raw.RAW_ROOT) -> Path:
    """Build `root/<dataset>/` from params section `data`; return the directory written."""
    source = sources.resolve(dataset, settings.image_folders)
    data, files = _acquire(source, fetch.mirror_setting(settings.mirror))
    raw.check(data, source.description)
    meta = {
        "dataset": dataset,
        "source": source.description,
        "class_names": data.class_names,
        "superclass_names": data.superclass_names,
        "files": files,
    }
    directory = root / dataset
    raw.write(directory, data, meta)
    return directory


def _acquire(source: sources.Source, mirror: str | None) -> tuple[RawData, list[dict[str, str]]]:
    if source.local_path is not None:
        path = source.local_path
        print(f"{source.name}: reading {path}")
        entry = {"name": path.name, "checksum": image_folder.tree_checksum(path), "origin": str(path)}
        return source.parse({}), [entry]
    locator = fetch.Locator(source.name, mirror)
    fetched = []
    for file in source.files:
        found = locator.fetch(file)
        print(f"{source.name}: {found.name} verified, from {found.origin}")
        fetched.append(found)
    # Only now, with every checksum verified, may the parsers open (and for CIFAR, unpickle) the files.
    data = source.parse({found.name: found.path for found in fetched})
    files = [{"name": f.name, "checksum": f"sha256:{f.sha256}", "origin": f.origin} for f in fetched]
    return data, files
