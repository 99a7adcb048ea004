#!/usr/bin/env bash
# Set up overfit-first on a fresh Debian/Ubuntu machine: system packages, a virtualenv, the Python package.
#   scripts/setup.sh          what `dvc repro` needs
#   scripts/setup.sh --dev    plus what the tests need
# The Python packages are exactly those uv.lock pins (the versions the committed results came from).
# Environment: OVERFIT_FIRST_TF=gpu installs the CUDA build of TensorFlow instead of the CPU one;
#              OVERFIT_FIRST_EXTRAS="jax s3" adds optional extras of pyproject.toml (space-separated);
#              PYTHON=python3.11 picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=false
[[ "${1:-}" == "--dev" ]] && dev=true

apt_packages=(dataset-fashion-mnist)   # the embedded default dataset, official idx files
# --dev: chromium for the browser test of `dvc plots` pages, shellcheck for actionlint's checks of run: scripts.
$dev && apt_packages+=(git chromium shellcheck)
# npm fetches the vega libraries for the offline plots page; a Node.js from elsewhere brings its own npm.
$dev && ! command -v npm >/dev/null && apt_packages+=(npm)

# Root's apt (or sudo's) when there is one; without it the download stage fetches the official files.
apt_install() {
  local runner=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then runner=(sudo -n); else return 1; fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${runner[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
    || { "${runner[@]}" apt-get update -q >/dev/null && "${runner[@]}" apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}
missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null && apt_install "${missing[@]}"; then
    echo "setup: installed ${missing[*]} with apt"
  else
    echo "setup: could not apt-get install ${missing[*]}; the download stage will use the official URLs" >&2
  fi
fi

python=${PYTHON:-}
if [[ -z "$python" ]]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null \
      && "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 13))'; then
      python=$candidate; break
    fi
  done
fi
[[ -n "$python" ]] || { echo "setup: Python 3.11 or 3.12 is required (set PYTHON=...)" >&2; exit 1; }

tf=${OVERFIT_FIRST_TF:-cpu}
[[ "$tf" == cpu || "$tf" == gpu ]] || { echo "setup: OVERFIT_FIRST_TF must be cpu or gpu, not '$tf'" >&2; exit 1; }
read -r -a more <<< "${OVERFIT_FIRST_EXTRAS:-}"
$dev && more+=(dev)
# The sync below is exact, so a plain setup (make repro) after `--dev` (make test) would remove the test tools:
# the extras an earlier setup installed are kept, the TensorFlow build excepted (rm -r .venv drops them all).
installed=.venv/overfit-first-extras
[[ -f "$installed" ]] && read -r -a previous < "$installed" && more+=("${previous[@]}")
read -r -a more <<< "$(printf '%s\n' "${more[@]}" | grep -vx -e cpu -e gpu -e '' | sort -u | tr '\n' ' ')"
extras=("$tf" "${more[@]}")

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
# uv installs what uv.lock pins. It is pinned itself (a lock is read by the uv that wrote its format) and comes,
# like every package, from the index pip is configured with.
uv_version=0.13.9
read -r _ installed_uv _ <<< "$(.venv/bin/uv --version 2>/dev/null || true)"
[[ "${installed_uv:-}" == "$uv_version" ]] || .venv/bin/python -m pip install -q "uv==$uv_version"
# --locked: a uv.lock that no longer matches pyproject.toml stops the setup (run `uv lock`) instead of being
# re-resolved; the sync is exact (a package the lock does not list for these extras is removed) and installs
# the project itself editable, as `pip install -e .` did. UV_PYTHON_DOWNLOADS=never: .venv's interpreter, never
# a downloaded one. UV_NATIVE_TLS: the system's CA store, the one pip trusts (pip.conf's cert).
UV_PYTHON_DOWNLOADS=never UV_NATIVE_TLS=1 UV_PROJECT_ENVIRONMENT=.venv \
  .venv/bin/uv sync --locked --quiet "${extras[@]/#/--extra=}"
echo "${extras[*]}" > "$installed"
if $dev; then
  npm ci --prefix js --no-audit --no-fund --loglevel=error   # vega libraries for overfit_first.tools.plots_html
fi
echo "setup: ready (.venv with extras [${extras[*]}], as uv.lock pins them); activate it with: . .venv/bin/activate"
