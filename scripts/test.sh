#!/usr/bin/env bash
# Install recsae with its test extras into .venv (CPU torch only) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# constraints/cpu.txt pins the CPU build of torch, so no CUDA wheel is ever pulled.
.venv/bin/python -m pip install -q -c constraints/cpu.txt -e '.[test]'
# the report's browser test needs Debian's Chromium; without root it is skipped, but never in CI
if ! bash scripts/install_browser.sh; then
    [[ "${CI:-}" == "true" ]] && exit 1
    echo "could not install chromium: the browser test will be skipped" >&2
fi
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest
