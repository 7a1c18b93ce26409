// Declarations of the C++ CPU kernels, one file per op in csrc/, bound in csrc/bindings.cpp.
// Every function mirrors the Triton launcher of the same name in kernels/<op>.py, except
// distill_loss_apply (the cpp backend's autograd node wraps the kernel itself).
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

// Row loops marked L2VG_MULTIVERSION are compiled for x86-64-v4 (AVX-512), v3 (AVX2+FMA) and the
// baseline, and the loader picks the best one for the running CPU (GCC function multiversioning),
// so one portable wheel still runs wide vectors. Other compilers/platforms get the baseline only.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define L2VG_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define L2VG_MULTIVERSION
#endif

namespace l2vg {

// distill_loss.cpp: the loss (fp32 scalar; fp64 for fp64) of student [B, K, D] or [B, D] against
// teacher [B, D] (weight [B] optional), as a differentiable op: the fused kernel computes the loss and
// the student's gradient in one pass, and the C++ autograd node's backward only scales the kept
// [B, D] gradient (no Python in the backward). The Triton launcher is distill_loss_forward.
at::Tensor distill_loss_apply(const at::Tensor& student, const at::Tensor& teacher,
                              const std::optional<at::Tensor>& weight, bool cosine, double eps);

// fused_linear_cross_entropy.cpp: cross-entropy of hidden [M, H] @ weight [V, H].T (+ bias [V])
// against labels [M] (int64, all in [0, V)), chunk_rows rows of logits at a time. Returns the loss
// (fp32 scalar; fp64 for fp64) = scale * sum of row losses, and the gradients of that loss (scaled
// by scale) asked for: grad_hidden [M, H], grad_weight [V, H], grad_bias [V] in the inputs' dtype,
// undefined (None) when not asked for.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_linear_cross_entropy_forward(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
    const std::optional<at::Tensor>& bias, double scale, int64_t chunk_rows, bool grad_hidden,
    bool grad_weight, bool grad_bias);

// special_token_embedding.cpp: out [B, T, H] (weight's dtype) and slot [B, T] int32 (k of the
// special id, -1 for a base id, -2 for an invalid id); input_ids [B, T] int64, weight [V, H],
// special_ids [K] int64, special_rows [K, H] in weight's dtype.
std::tuple<at::Tensor, at::Tensor> special_token_embedding_forward(const at::Tensor& input_ids,
                                                                   const at::Tensor& weight,
                                                                   const at::Tensor& special_ids,
                                                                   const at::Tensor& special_rows);
// grad_rows [K, H] fp32 (fp64 for fp64) = sum of grad_out [B, T, H] rows per slot [B, T] int32.
at::Tensor special_token_embedding_backward(const at::Tensor& grad_out, const at::Tensor& slot,
                                            int64_t k);

// encode_tail.cpp: [B, D] fp32 = weight [D, H] @ mean_k h [B, K, H] + bias [D], rows divided by
// max(|row|, eps) when normalize.
at::Tensor encode_tail_forward(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                               bool normalize, double eps);

// appended_attention.cpp: out [B, h, K, d] (q's dtype) and natural-log LSE [B, h, K] (fp32; fp64
// for fp64) of the K appended queries q over the prefix cache k_cache, v_cache [B, hkv, L, d]
// (prefix_mask [B, L] bool) and, causally, the appended keys k, v [B, hkv, K, d].
std::tuple<at::Tensor, at::Tensor> appended_attention_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_cache,
    const at::Tensor& v_cache, const at::Tensor& prefix_mask, double scale);
// dq [B, h, K, d], dk, dv [B, hkv, K, d] (inputs' dtype); the cache gets no gradient.
std::tuple<at::Tensor, at::Tensor, at::Tensor> appended_attention_backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_cache,
    const at::Tensor& v_cache, const at::Tensor& prefix_mask, const at::Tensor& out,
    const at::Tensor& lse, const at::Tensor& grad_out, double scale);

}  // namespace l2vg
