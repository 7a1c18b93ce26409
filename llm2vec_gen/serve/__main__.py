"""``python -m llm2vec_gen.serve CHECKPOINT [options]``: ``llm2vec-gen serve``."""

import sys

from llm2vec_gen.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
