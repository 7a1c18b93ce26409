// fused_linear_cross_entropy: cross-entropy of hidden @ weight.T (+ bias) in chunks of rows, never
// holding more than one chunk of logits [C, V]. Per chunk:
//   logits = hidden[chunk] @ weight.T (+ bias)          one GEMM (MKL / oneDNN through at::mm_out)
//   per row, in place: lse, loss = lse - x[label], grad = (softmax - onehot) * scale
//   grad_hidden[chunk] = grad @ weight                   one GEMM
//   grad_weight += grad.T @ hidden[chunk]; grad_bias += column sums   (only when asked for)
// The row kernel is the only code here that is not a GEMM: three passes over a row that stays in L2
// (max; sum of exp; grad), a polynomial exp that the compiler vectorises, and L2VG_MULTIVERSION
// (csrc/ops.h) so one build runs AVX-512 / AVX2 code where the CPU has it.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "ops.h"

namespace l2vg {
namespace {

// exp(x) for x <= 0 (x - row max): 2^n * p(r), |r| <= ln2 / 2, p the degree-6 Taylor polynomial
// (relative error < 2e-7); 0 below -87 where float underflows. Branch-free, so loops vectorise.
inline float exp_nonpositive(float x) {
  const float t = x * 1.44269504f + 12582912.0f;  // 1.5 * 2^23: round x / ln2 into the low bits
  const float n = t - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = hi - lo, n * hi exact
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t bits;
  std::memcpy(&bits, &t, sizeof(bits));
  bits = (bits - 0x4B400000 + 127) << 23;  // 2^n as float bits
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }

// Loss of one row x [V] (lse - x[label]); with write_grad, x becomes (softmax(x) - onehot) * scale.
template <typename acc_t>
__attribute__((always_inline)) inline acc_t ce_row_impl(acc_t* x, int64_t vocab, int64_t label,
                                                        acc_t scale, bool write_grad) {
  acc_t m = -std::numeric_limits<acc_t>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < vocab; ++v) m = std::max(m, x[v]);
  const acc_t target = x[label];
  acc_t sum = 0;
  if (write_grad) {
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < vocab; ++v) {
      const acc_t e = exp_nonpositive(x[v] - m);
      x[v] = e;
      sum += e;
    }
    const acc_t coef = scale / sum;
#pragma omp simd
    for (int64_t v = 0; v < vocab; ++v) x[v] *= coef;
    x[label] -= scale;
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < vocab; ++v) sum += exp_nonpositive(x[v] - m);
  }
  return (m - target) + std::log(sum);
}

L2VG_MULTIVERSION float ce_row(float* x, int64_t vocab, int64_t label, float scale, bool write_grad) {
  return ce_row_impl<float>(x, vocab, label, scale, write_grad);
}

double ce_row(double* x, int64_t vocab, int64_t label, double scale, bool write_grad) {
  return ce_row_impl<double>(x, vocab, label, scale, write_grad);
}

// Every row of logits [rows, V]: row_loss[r] and, with write_grad, the gradient over the logits.
// Rows of bf16 / fp16 go through one fp32 row buffer per thread.
template <typename scalar_t>
void ce_rows(scalar_t* logits, const int64_t* labels, at::opmath_type<scalar_t>* row_loss,
             int64_t rows, int64_t vocab, at::opmath_type<scalar_t> scale, bool write_grad) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> buffer(std::is_same_v<scalar_t, acc_t> ? 0 : vocab);
    for (int64_t r = begin; r < end; ++r) {
      scalar_t* row = logits + r * vocab;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        row_loss[r] = ce_row(row, vocab, labels[r], scale, write_grad);
      } else {
        for (int64_t v = 0; v < vocab; ++v) buffer[v] = static_cast<acc_t>(row[v]);
        row_loss[r] = ce_row(buffer.data(), vocab, labels[r], scale, write_grad);
        if (write_grad) {
          for (int64_t v = 0; v < vocab; ++v) row[v] = static_cast<scalar_t>(buffer[v]);
        }
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_linear_cross_entropy_forward(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& labels,
    const std::optional<at::Tensor>& bias, double scale, int64_t chunk_rows, bool grad_hidden,
    bool grad_weight, bool grad_bias) {
  TORCH_CHECK(hidden.device().is_cpu(), "fused_linear_cross_entropy_forward: CPU tensors only");
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              "hidden must be [M, H] and weight [V, H]");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == hidden.size(0) && labels.scalar_type() == at::kLong,
              "labels must be int64 [M]");
  TORCH_CHECK(chunk_rows > 0, "chunk_rows must be positive");
  const at::Tensor h = hidden.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor y = labels.contiguous();
  const int64_t rows = h.size(0), vocab = w.size(0);
  TORCH_CHECK(rows == 0 || (y.min().item<int64_t>() >= 0 && y.max().item<int64_t>() < vocab),
              "labels must lie in [0, ", vocab, ")");
  const auto dtype = h.scalar_type();
  const auto acc_dtype = dtype == at::kDouble ? at::kDouble : at::kFloat;
  const bool low_precision = dtype != acc_dtype;
  TORCH_CHECK(w.scalar_type() == dtype && (!bias.has_value() || bias->scalar_type() == dtype),
              "weight and bias must have hidden's dtype");
  const bool any_grad = grad_hidden || grad_weight || grad_bias;

  at::Tensor logits = at::empty({std::min(chunk_rows, std::max<int64_t>(rows, 1)), vocab}, h.options());
  at::Tensor row_loss = at::empty({rows}, h.options().dtype(acc_dtype));
  at::Tensor gh = grad_hidden ? at::empty_like(h) : at::Tensor();
  // Weight / bias gradients sum over chunks: in fp32 for bf16 / fp16, cast once at the end.
  at::Tensor gw = grad_weight ? at::zeros(w.sizes(), w.options().dtype(acc_dtype)) : at::Tensor();
  at::Tensor gb = grad_bias ? at::zeros({vocab}, w.options().dtype(acc_dtype)) : at::Tensor();

  for (int64_t start = 0; start < rows; start += chunk_rows) {
    const int64_t c = std::min(chunk_rows, rows - start);
    const at::Tensor hc = h.narrow(0, start, c);
    at::Tensor z = logits.narrow(0, 0, c);  // [c, V]
    if (bias.has_value()) {
      at::addmm_out(z, *bias, hc, w.t());
    } else {
      at::mm_out(z, hc, w.t());
    }
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "fused_linear_cross_entropy", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      ce_rows<scalar_t>(z.mutable_data_ptr<scalar_t>(), y.const_data_ptr<int64_t>() + start,
                        row_loss.mutable_data_ptr<acc_t>() + start, c, vocab,
                        static_cast<acc_t>(scale), any_grad);
    });
    if (grad_hidden) {
      at::Tensor ghc = gh.narrow(0, start, c);
      at::mm_out(ghc, z, w);
    }
    if (grad_weight) {
      if (low_precision) {
        gw.addmm_(z.t().to(acc_dtype), hc.to(acc_dtype));
      } else {
        gw.addmm_(z.t(), hc);
      }
    }
    if (grad_bias) gb.add_(z.sum(0, false, acc_dtype));
  }

  at::Tensor loss = row_loss.sum().mul_(scale);
  if (grad_weight && low_precision) gw = gw.to(dtype);
  if (grad_bias) gb = gb.to(dtype);
  return {loss, gh, gw, gb};
}

}  // namespace l2vg
