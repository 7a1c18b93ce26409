// Declarations of the C++ CPU kernels, one file per op in csrc/, bound in csrc/bindings.cpp.
// Every function mirrors the Triton launcher of the same name in kernels/<op>.py.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace l2vg {

// distill_loss.cpp: loss (fp32 scalar; fp64 for fp64) and grad_rows [B, D] (student's dtype; empty
// when compute_grad is false) in one pass, where d loss / d student[b, k] = grad_rows[b] for every k;
// student [B, K, D] or [B, D], teacher [B, D], weight [B] fp32.
std::tuple<at::Tensor, at::Tensor> distill_loss_forward(const at::Tensor& student,
                                                        const at::Tensor& teacher,
                                                        const std::optional<at::Tensor>& weight,
                                                        bool cosine, double eps, bool compute_grad);

}  // namespace l2vg
