// encode_tail: out[b] = W mean_k h[b, k] + bias, optionally divided by max(|out[b]|, eps).
//
// Pooling comes first (one task per block of batch rows, fp32 accumulation, h read once), so the
// projection is one [B, H] x [H, D] addmm instead of K times as many flops on [B*K, H]; the
// normalisation is one more pass over the [B, D] result, row-parallel.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>

#include "ops.h"

namespace l2vg {
namespace {

template <typename scalar_t>
void pool_rows(const scalar_t* h, float* pooled, int64_t batch, int64_t k, int64_t hidden) {
  const float inv_k = 1.0f / static_cast<float>(k);
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, k * hidden));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      float* p = pooled + b * hidden;
      const scalar_t* hb = h + b * k * hidden;
      std::fill(p, p + hidden, 0.0f);
      for (int64_t j = 0; j < k; ++j) {
        const scalar_t* hj = hb + j * hidden;
#pragma omp simd
        for (int64_t d = 0; d < hidden; ++d) p[d] += static_cast<float>(hj[d]);
      }
#pragma omp simd
      for (int64_t d = 0; d < hidden; ++d) p[d] *= inv_k;
    }
  });
}

}  // namespace

at::Tensor encode_tail_forward(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias,
                               bool normalize, double eps) {
  TORCH_CHECK(h.device().is_cpu(), "encode_tail_forward: CPU tensors only");
  TORCH_CHECK(h.dim() == 3 && weight.dim() == 2 && bias.dim() == 1, "h [B, K, H], weight [D, H], bias [D]");
  TORCH_CHECK(weight.size(1) == h.size(2) && bias.size(0) == weight.size(0), "shape mismatch");
  const at::Tensor x = h.contiguous();
  const int64_t batch = x.size(0), k = x.size(1), hidden = x.size(2);
  at::Tensor pooled = at::empty({batch, hidden}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "encode_tail_pool", [&] {
    pool_rows<scalar_t>(x.const_data_ptr<scalar_t>(), pooled.mutable_data_ptr<float>(), batch, k, hidden);
  });
  at::Tensor out = at::addmm(bias.to(at::kFloat), pooled, weight.to(at::kFloat).t());
  if (normalize) {
    const int64_t dim = out.size(1);
    float* o = out.mutable_data_ptr<float>();
    const float min_norm = static_cast<float>(eps);
    at::parallel_for(0, batch, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, dim)), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        float* row = o + b * dim;
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int64_t d = 0; d < dim; ++d) sq += row[d] * row[d];
        const float inv = 1.0f / std::max(std::sqrt(sq), min_norm);
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) row[d] *= inv;
      }
    });
  }
  return out;
}

}  // namespace l2vg
