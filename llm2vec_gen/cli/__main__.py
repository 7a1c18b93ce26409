"""``python -m llm2vec_gen.cli`` (what torchrun launches): the ``llm2vec-gen`` command."""

import sys

from llm2vec_gen.cli import main

sys.exit(main())
