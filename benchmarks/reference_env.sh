#!/usr/bin/env bash
# Builds the reference environment for benchmarks/bench_reference.py: a separate venv holding the
# reference implementation (PyPI llm2vec-gen==0.1.3) with the versions it was released against.
#
#   bash benchmarks/reference_env.sh            # creates benchmarks/.refenv (gitignored)
#   REFENV=/some/dir bash benchmarks/reference_env.sh
#
# The wheel pins flash-attn, mteb 1.x, hydra, wandb ...; none of them is imported by the encoder and
# decoder, so the package goes in with --no-deps and only what `import llm2vec_gen` needs is added.
# torch 2.13.0 (not its pinned 2.6.0) keeps both sides of the comparison on the same kernels; pin it
# so pip takes the CPU wheel instead of a multi-GB CUDA build.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
refenv="${REFENV:-$here/.refenv}"
python="${PYTHON:-python3}"

"$python" -m venv "$refenv"
"$refenv/bin/pip" install -q --upgrade pip
"$refenv/bin/pip" install -q "torch==2.13.0" "transformers==4.56.2" "peft==0.18.0" \
    "pyyaml>=6" "safetensors>=0.4" "numpy" "accelerate" "protobuf"
"$refenv/bin/pip" install -q --no-deps "llm2vec-gen==0.1.3"
"$refenv/bin/python" -c "import llm2vec_gen, transformers, peft, torch; \
print('reference env ok:', 'llm2vec-gen 0.1.3', 'transformers', transformers.__version__, \
'peft', peft.__version__, 'torch', torch.__version__)"
