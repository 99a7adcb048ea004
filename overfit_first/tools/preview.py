"""`python -m overfit_first preview -S model.dropout=0.3`: what `dvc exp run -S model.dropout=0.3` would run,
running nothing. DVC's own dry run (`dvc repro --dry`) of the workspace with the params set, the params files
restored byte for byte afterwards; then the stages that read what those stages write, which a dry run cannot
see change.

`dvc exp run --dry` is no preview in DVC 3 (3.67.1 included): it runs in a temporary copy where no output is
checked out, and DVC hashes every input of a stage it would run, to look the run up in the run-cache, so the
first such stage that reads another stage's output stops it with "No such file or directory" (treeverse/dvc#9021,
#9818). Here a stage with an input that is not there (a fresh clone, a removed dataset) is previewed as a run,
never looked up: every stage whose command reads another stage's output survives the preview.

The `sources` stage is listed on every preview (it checksums the image folders on every run); whether an image
folder changed is known only when it runs, so the stages after it are previewed against its last checksums.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from overfit_first.config import PARAMS_FILE, load_params
from overfit_first.errors import PipelineError, run_stage
from overfit_first.layout import require_repo_root


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m overfit_first preview",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-S",
        "--set-param",
        action="append",
        default=[],
        metavar="[FILE:]KEY=VALUE",
        help="a param as `dvc exp run -S` takes it (params.yaml unless FILE: is given); repeat for several",
    )
    parser.add_argument(
        "targets", nargs="*", help="stages or dvc.yaml files, as `dvc exp run` takes them (default: dvc.yaml)"
    )
    args = parser.parse_args()
    require_repo_root(Path.cwd())
    would_run, downstream = preview(args.set_param, args.targets)
    names = ", ".join(would_run) or "nothing"
    after = f"; then what reads their outputs, each rerun or restored from the run-cache: {', '.join(downstream)}"
    print(
        f"preview: `dvc exp run` would run {names}{after if downstream else ''}. Nothing was run or written. A stage "
        "that already ran with the same inputs is restored from DVC's run-cache instead, in seconds."
    )


def preview(set_params: Sequence[str], targets: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The stages a `dvc exp run -S <set_params> <targets>` would run (DVC's dry run prints each with its command)
    and, in pipeline order, the stages downstream of them; the params files are left as they were."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    overrides = to_path_overrides(set_params)
    for path in overrides:
        if not Path(path).is_file():
            raise PipelineError(f"-S {path}:...: {path} does not exist (a params file, relative to {Path.cwd()})")
    for path, items in overrides.items():
        _require_existing_keys(path, items)
    try:
        # Under DVC's repository lock, as `dvc exp run` changes params.yaml in the workspace. DVC lets go of that lock
        # while a stage's command runs, so a running `dvc repro` is found by its locks on its stages' files first:
        # the params files are not touched while any stage of another dvc command may read them.
        with Repo() as repo, lock_repo(repo):
            _refuse_while_stages_run(Path(repo.tmp_dir) / "rwlock")
            with _restored(list(overrides)):
                for path, items in overrides.items():
                    apply_overrides(path, items)
                if PARAMS_FILE.as_posix() in {Path(path).as_posix() for path in overrides}:
                    try:  # what every stage of the experiment would refuse first, before anything runs
                        load_params()
                    except PipelineError as error:
                        message = f"-S {' '.join(set_params)}: `dvc exp run` would stop at it: {error}"
                        raise PipelineError(message) from None
                with _missing_inputs_never_hashed(), _stale_run_cache_lines_dropped():
                    stages = repo.reproduce(list(targets) or None, dry=True)
                graph = repo.index.graph
            order = list(reversed(list(nx.topological_sort(graph))))  # what a stage reads comes before it
            # An always-changed stage (sources) reruns whatever happens; what follows it reruns only if its
            # output changes, which a dry run cannot tell.
            after = {
                consumer
                for stage in stages
                if not stage.always_changed
                for consumer in nx.ancestors(graph, stage)
                if consumer not in stages
            }
            return [stage.addressing for stage in stages], [stage.addressing for stage in order if stage in after]
    except DvcException as error:
        lock = next((e for e in (error, error.__cause__) if isinstance(e, LockError)), None)
        if lock is not None:  # held by a live process: DVC drops the entries of dead ones itself
            listed = str(lock).partition("blocked by:\n")[2].partition("\n\n")[0]  # lines "  (PID 1): dvc repro"
            blockers = [re.sub(r"^\(PID (\d+)\)", r"PID \1", line.strip()) for line in listed.splitlines()]
            raise _busy(blockers or ["the repository lock"]) from None
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        raise PipelineError(f"dvc: {error}{cause}") from error


def _busy(blockers: Sequence[str]) -> PipelineError:
    return PipelineError(
        f"another dvc command is running in this repository ({'; '.join(blockers)}): the preview reads what it "
        "writes; run the preview again when it has finished"
    )


def _refuse_while_stages_run(rwlock: Path) -> None:
    """Stop (`busy`) when a live process holds DVC's lock on a stage's files (.dvc/tmp/rwlock: a stage running)."""
    import psutil

    try:
        held = json.loads(rwlock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    infos = [*held.get("write", {}).values(), *(info for infos in held.get("read", {}).values() for info in infos)]
    live = sorted(
        {
            f"PID {info['pid']}: {info['cmd']}"
            for info in infos
            if info["pid"] != os.getpid() and psutil.pid_exists(info["pid"])
        }
    )
    if live:
        raise _busy(live)


def _require_existing_keys(path: str, items: Sequence[str]) -> None:
    """Stop on `-S KEY=VALUE` whose KEY the params file lacks, naming the nearest keys. DVC's own error for it,
    "Could not override 'KEY'. To append to your config use +KEY=VALUE", points at a key no stage accepts."""
    import difflib

    import yaml

    def keys(node: Any, prefix: str = "") -> Iterator[str]:
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in children:
            yield f"{prefix}{key}"
            yield from keys(value, f"{prefix}{key}.")

    if Path(path).suffix not in (".yaml", ".yml", ".json"):  # a TOML or Python params file: DVC's check alone
        return
    known = set(keys(yaml.safe_load(Path(path).read_text(encoding="utf-8"))))
    for item in items:
        key = item.partition("=")[0]
        if key[:1] not in "+~" and key not in known:
            ending = [name for name in sorted(known) if name.endswith(f".{key}")]  # dropout: model.dropout
            near = ending[:2] or difflib.get_close_matches(key, sorted(known), n=2, cutoff=0.8)
            hint = f"did you mean {' or '.join(near)}?" if near else "see the keys in it"
            raise PipelineError(f"-S {item}: {path} has no key {key} ({hint}); `dvc exp run` would stop at it")


@contextlib.contextmanager
def _restored(paths: list[str]) -> Iterator[None]:
    """Each file of `paths` as it was, byte for byte, however the body ends (an error, Ctrl-C, SIGTERM)."""
    saved = {Path(path): Path(path).read_bytes() for path in paths}
    try:
        yield
    finally:
        for path, content in saved.items():
            if path.read_bytes() != content:
                # Replaced in one rename: params.yaml is never seen half-written.
                handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
                with os.fdopen(handle, "wb") as file:
                    file.write(content)
                os.chmod(tmp, path.stat().st_mode)
                os.replace(tmp, path)


@contextlib.contextmanager
def _stale_run_cache_lines_dropped() -> Iterator[None]:
    """Without DVC's "Stage '...' is cached - skipping run" lines: a dry run looks a stage up in the run-cache with
    the inputs it last ran with (dvc.stage.cache: no dependency is hashed in a dry run), so it prints that line and,
    next, "Running stage" for the same stage."""
    import logging

    from dvc.stage import cache

    def not_stale(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Stage '%s' is cached")

    cache.logger.addFilter(not_stale)  # the logger that says it: a filter acts on the records logged to its own
    try:
        yield
    finally:
        cache.logger.removeFilter(not_stale)


@contextlib.contextmanager
def _missing_inputs_never_hashed() -> Iterator[None]:
    """DVC's run-cache look-up of a stage with an input that is not there says "not in the run-cache" instead of
    failing on hashing it (dvc.stage.cache._can_hash, which DVC consults before every look-up): a dry run then
    prints that stage's command, as for any stage it would run."""
    from dvc.stage import cache

    can_hash = cache._can_hash

    def inputs_present(stage: Any) -> bool:
        return all(dep.exists for dep in stage.deps if dep.protocol == "local") and can_hash(stage)

    cache._can_hash = inputs_present
    try:
        yield
    finally:
        cache._can_hash = can_hash


if __name__ == "__main__":
    run_stage(main)
