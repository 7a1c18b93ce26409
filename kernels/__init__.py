"""Triton kernels, one module per op, installed as ``llm2vec_gen.kernels``.

Each module ``<op>.py`` holds the ``@triton.jit`` kernels (``_<op>_forward_kernel`` ...) and the
launchers with the same names and signatures as the C++ functions in ``llm2vec_gen._C``.
On a machine without a GPU they run only with ``TRITON_INTERPRET=1`` set before import.
"""
