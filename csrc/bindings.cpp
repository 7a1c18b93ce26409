// The one bindings file: exposes every C++ kernel as llm2vec_gen._C.<op>_<name>.
#include <torch/extension.h>

#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "llm2vec_gen C++ CPU kernels";
  m.def("distill_loss_forward", &l2vg::distill_loss_forward, "distill_loss: loss and student grad",
        py::arg("student"), py::arg("teacher"), py::arg("weight"), py::arg("cosine"),
        py::arg("eps"), py::arg("compute_grad"));
}
