"""``python -m llm2vec_gen.serve CHECKPOINT [options]``: the same as ``llm2vec-gen serve``."""

import sys

from llm2vec_gen.serve.command import main

sys.exit(main())
