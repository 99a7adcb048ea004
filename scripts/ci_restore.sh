#!/usr/bin/env bash
# CI: bring back what an earlier run of the pipeline produced, so that `dvc repro` runs only what changed.
#   scripts/ci_restore.sh cache-key [REV]   the GitHub Actions cache key of REV's dvc.lock (default HEAD)
#   scripts/ci_restore.sh restore           fill the workspace from the team's remote, or from .dvc/cache
#   scripts/ci_restore.sh repro [STAGE...]  then `dvc repro [STAGE...]`, with --pull when a remote is set
# Run from anywhere in the repository, with the virtualenv's dvc on PATH (`. .venv/bin/activate`).
#
# restore: with DVC_REMOTE_URL set (a repository secret: s3://bucket/path, or any URL DVC knows), that remote
# becomes this clone's default in .dvc/config.local (never committed), DVC_REMOTE_ENDPOINT sets its endpointurl
# (an S3-compatible server), the credentials come from the environment (AWS_ACCESS_KEY_ID, ...), and
# `dvc pull --run-cache dvc.yaml` fetches the outputs dvc.lock names plus the run-cache. Without it the workflow has
# put the main branch's .dvc/cache (outputs and run-cache) in place from the Actions cache, and `dvc checkout`
# links what dvc.lock names. Only the default pipeline (dvc.yaml), the one CI reproduces: cifar/dvc.lock names
# outputs that exist only where someone ran the CIFAR pipeline. Either way, whatever is missing is left to
# `dvc repro`: a stage whose dependencies match a run-cache entry is restored from it, and only a stage the pull
# request changed runs.
# A remote that cannot be read costs time, not correctness: a warning, and `dvc repro` retrains.
#
# repro: `dvc pull --run-cache` brings the run-cache's entries but not the outputs they name, unless dvc.lock names
# them too; a pull request that changes a param without a new dvc.lock (a change a teammate tried with
# `dvc exp run` and pushed with `dvc push --run-cache dvc.yaml`) needs those. `dvc repro --pull` fetches the
# outputs of a matching entry from the default remote, then restores the stage instead of running it.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"

# Bump the version to drop every cache saved so far (say, after a change of DVC's cache layout).
key_prefix=dvc-cache-v1-

cache_key() {  # git's blob id of dvc.lock: its content only, so the same lock at two commits shares one cache
  local rev=$1 blob
  git rev-parse --verify --quiet "$rev^{commit}" >/dev/null \
    || { echo "ci_restore: $rev is not a commit of this repository (fetched? fetch-depth: 0)" >&2; exit 1; }
  blob=$(git rev-parse --verify --quiet "$rev:dvc.lock") || blob=none
  echo "$key_prefix${blob:0:16}"
}

warn() {  # a GitHub annotation in CI, a plain line elsewhere
  if [[ -n "${GITHUB_ACTIONS:-}" ]]; then echo "::warning title=DVC restore::$*"; else echo "ci_restore: warning: $*" >&2; fi
}

restore() {
  if [[ -n "${DVC_REMOTE_URL:-}" ]]; then
    dvc remote add --local --force ci "$DVC_REMOTE_URL"
    dvc remote default --local ci
    if [[ -n "${DVC_REMOTE_ENDPOINT:-}" ]]; then dvc remote modify --local ci endpointurl "$DVC_REMOTE_ENDPOINT"; fi
    echo "ci_restore: pulling outputs and run-cache from the team's remote"
    dvc pull --run-cache --allow-missing dvc.yaml || warn "dvc pull from the team's remote failed; dvc repro will rerun what it could not restore"
  elif [[ -d .dvc/cache ]]; then
    echo "ci_restore: checking out the outputs found in .dvc/cache (the Actions cache of the main branch)"
    dvc checkout --allow-missing dvc.yaml || warn "dvc checkout failed; dvc repro will rerun what it could not restore"
  else
    warn "no team remote (secret DVC_REMOTE_URL) and no cached .dvc/cache: dvc repro reruns the whole pipeline"
  fi
}

repro() {
  if dvc remote default >/dev/null 2>&1; then dvc repro --pull "$@"; else dvc repro "$@"; fi
}
case "${1:-}" in
  cache-key) cache_key "${2:-HEAD}" ;;
  restore) restore ;;
  repro) shift; repro "$@" ;;
  *) echo "usage: scripts/ci_restore.sh cache-key [REV] | restore | repro [STAGE...]" >&2; exit 2 ;;
esac
