"""The `download` stage's work: resolve a dataset, obtain and verify its files, parse, write data/raw/<name>/;
and the `sources` stage's: data/sources/<name>.json, the checksum of each image folder, for DVC to compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overfit_first import atomic
from overfit_first.config import DataConfig
from overfit_first.data import fetch, image_folder, raw, sources
from overfit_first.data.raw import RawData
from overfit_first.errors import PipelineError

SOURCES_ROOT = Path("data/sources")


def download(dataset: str, settings: DataConfig, root: Path = raw.RAW_ROOT) -> Path:
    """Build `root/<dataset>/` from params section `data`; return the directory written."""
    source = sources.resolve(dataset, settings.image_folders)
    data, files, description = _acquire(source, fetch.mirror_setting(settings.mirror))
    raw.check(data, description)
    meta = {
        "dataset": dataset,
        "source": description,
        "class_names": data.class_names,
        "superclass_names": data.superclass_names,
        "files": files,
    }
    directory = root / dataset
    raw.write(directory, data, meta)
    return directory


def write_sources(settings: DataConfig, root: Path = SOURCES_ROOT) -> Path:
    """Write `root/<dataset>.json` for each dataset of `settings.datasets` (atomically, as one directory).

    DVC cannot track an image folder as a dependency: a relative path outside the repository (or one with ~)
    names another place, or nothing, in the copy of the repository where `dvc exp run --queue` / `--temp`
    runs the stages. So this file stands for it: {dataset, source, checksum} with the checksum of the folder's
    content (an archive's bytes, or every file of a directory), and `download@<dataset>` depends on it. A
    built-in dataset's file lists its published files and checksums (its cache is verified on download).
    """
    with atomic.atomic_path(root) as tmp:
        tmp.mkdir()
        for dataset in settings.datasets:
            source = sources.resolve(dataset, settings.image_folders)
            record: dict[str, Any] = {"dataset": dataset, "source": source.description}
            if source.local_path is not None:
                record["checksum"] = image_folder.tree_checksum(source.local_path)
            else:
                record["files"] = [
                    {"name": file.name, "checksums": list(file.checksums)}
                    for published in source.formats()
                    for file in published.files
                ]
            atomic.write_json(tmp / f"{dataset}.json", record)
    return root


def _acquire(source: sources.Source, mirror: str | None) -> tuple[RawData, list[dict[str, str]], str]:
    """The parsed data, its files {name, checksum, origin}, and the description of the format read."""
    if source.local_path is not None:
        path = source.local_path
        print(f"{source.name}: reading {path}")
        entry = {"name": path.name, "checksum": image_folder.tree_checksum(path), "origin": str(path)}
        return source.parse({}), [entry], source.description
    published, fetched = _fetch(source, fetch.Locator(source.name, mirror))
    for found in fetched:
        print(f"{source.name}: {found.name} verified, from {found.origin}")
    # Only now, with every checksum verified, may the parsers open (and for CIFAR, unpickle) the files.
    data = published.parse({found.name: found.path for found in fetched})
    files = [{"name": f.name, "checksum": f"sha256:{f.sha256}", "origin": f.origin} for f in fetched]
    return data, files, published.description


def _fetch(source: sources.Source, locator: fetch.Locator) -> tuple[sources.Format, list[fetch.Fetched]]:
    """The verified files of one published format: a complete local copy of any format first, so that no
    download happens while one is at hand; then each format in order, downloading what is missing."""
    formats = source.formats()
    for published in formats:
        local = []
        for file in published.files:
            found = locator.find_local(file)
            if found is None:
                break
            local.append(found)
        else:
            return published, local
    failures: list[tuple[str, PipelineError]] = []
    for published in formats:
        try:
            return published, [locator.fetch(file) for file in published.files]
        except PipelineError as failure:
            failures.append((published.description, failure))
    if len(failures) == 1:
        raise failures[0][1]
    listed = "\n".join(f"{description}: {failure}" for description, failure in failures)
    raise PipelineError(f"cannot obtain dataset {source.name} in any of its {len(formats)} formats:\n{listed}")
