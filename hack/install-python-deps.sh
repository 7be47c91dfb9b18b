#!/usr/bin/env bash
# Installs the Python tools the end-to-end tests drive Pacer with, into a virtual environment
# under target/ (so nothing touches the system or user site-packages): today the Marathon
# client `marathon==0.13.0` (PyPI), which cli/tests/marathon.rs runs against `pacer dev`.
# Idempotent: an environment that already has the pinned version is left alone.
# Python: `python3` on PATH (the pyenv 3.11 on these machines); override with PYTHON=…
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="${PACER_PYTHON_VENV:-$root/target/python}"
python="${PYTHON:-python3}"
marathon_version=0.13.0

if "$venv/bin/python" -c "import marathon, importlib.metadata as m; \
assert m.version('marathon') == '$marathon_version'" 2>/dev/null; then
  exit 0
fi
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "marathon==$marathon_version"
"$venv/bin/python" -c "import marathon" ||
  { echo "hack/install-python-deps.sh: marathon did not install into $venv" >&2; exit 1; }
