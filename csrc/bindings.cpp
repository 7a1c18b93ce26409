// The one bindings file: exposes every C++ kernel as llm2vec_gen._C.<op>_<name>.
#include <torch/extension.h>

#include "ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "llm2vec_gen C++ CPU kernels";
  m.def("distill_loss_apply", &l2vg::distill_loss_apply,
        "distill_loss: the loss with a C++ autograd node", py::arg("student"), py::arg("teacher"),
        py::arg("weight"), py::arg("cosine"), py::arg("eps"));
  m.def("fused_linear_cross_entropy_forward", &l2vg::fused_linear_cross_entropy_forward,
        "fused_linear_cross_entropy: chunked loss and gradients", py::arg("hidden"),
        py::arg("weight"), py::arg("labels"), py::arg("bias"), py::arg("scale"),
        py::arg("chunk_rows"), py::arg("grad_hidden"), py::arg("grad_weight"),
        py::arg("grad_bias"));
  m.def("special_token_embedding_forward", &l2vg::special_token_embedding_forward,
        "special_token_embedding: rows and slots", py::arg("input_ids"), py::arg("weight"),
        py::arg("special_ids"), py::arg("special_rows"));
  m.def("special_token_embedding_backward", &l2vg::special_token_embedding_backward,
        "special_token_embedding: grad of special_rows", py::arg("grad_out"), py::arg("slot"),
        py::arg("k"));
  m.def("encode_tail_forward", &l2vg::encode_tail_forward, "encode_tail: pool, affine, normalize",
        py::arg("h"), py::arg("weight"), py::arg("bias"), py::arg("normalize"), py::arg("eps"));
  m.def("appended_attention_forward", &l2vg::appended_attention_forward,
        "appended_attention: out and LSE", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("k_cache"), py::arg("v_cache"), py::arg("prefix_mask"), py::arg("scale"));
  m.def("appended_attention_backward", &l2vg::appended_attention_backward,
        "appended_attention: dq, dk, dv", py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("k_cache"), py::arg("v_cache"), py::arg("prefix_mask"), py::arg("out"),
        py::arg("lse"), py::arg("grad_out"), py::arg("scale"));
}
