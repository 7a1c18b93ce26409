// distill_loss: mean-pool the student over K, compare with the teacher (MSE or 1 - cosine), and
// write the gradient in the same pass. The gradient is the same for all K rows of a batch row, so
// only grad_rows [B, D] = (d loss / d pooled) / K is written; autograd expands it to [B, K, D]
// without copying. One task per batch row; per-row losses are reduced afterwards by one sum.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops.h"

namespace l2vg {
namespace {

template <typename scalar_t>
void distill_rows(const scalar_t* student, const at::opmath_type<scalar_t>* teacher,
                  const float* weight, scalar_t* grad, at::opmath_type<scalar_t>* row_loss,
                  int64_t batch, int64_t k, int64_t dim, bool cosine, double eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t inv_k = acc_t(1) / acc_t(k);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k * dim));
  at::parallel_for(0, batch, grain, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> pooled(dim);
    for (int64_t b = begin; b < end; ++b) {
      const scalar_t* s = student + b * k * dim;
      const acc_t* t = teacher + b * dim;
      std::fill(pooled.begin(), pooled.end(), acc_t(0));
      for (int64_t j = 0; j < k; ++j) {
        const scalar_t* sj = s + j * dim;
#pragma omp simd
        for (int64_t d = 0; d < dim; ++d) pooled[d] += static_cast<acc_t>(sj[d]);
      }
      const acc_t w = weight ? static_cast<acc_t>(weight[b]) : acc_t(1);
      // grad_p[d] = coef_p * p[d] + coef_t * t[d], then spread evenly over the K rows.
      acc_t coef_p, coef_t;
      if (cosine) {
        acc_t dot = 0, pp = 0, tt = 0;
#pragma omp simd reduction(+ : dot, pp, tt)
        for (int64_t d = 0; d < dim; ++d) {
          const acc_t p = pooled[d] * inv_k;
          pooled[d] = p;
          dot += p * t[d];
          pp += p * p;
          tt += t[d] * t[d];
        }
        const acc_t np = std::max<acc_t>(std::sqrt(pp), eps);
        const acc_t nt = std::max<acc_t>(std::sqrt(tt), eps);
        const acc_t cos = dot / (np * nt);
        row_loss[b] = w * (acc_t(1) - cos);
        const acc_t scale = -w / acc_t(batch);
        coef_t = scale / (np * nt);
        coef_p = std::sqrt(pp) > eps ? -scale * cos / pp : acc_t(0);
      } else {
        acc_t sq = 0;
#pragma omp simd reduction(+ : sq)
        for (int64_t d = 0; d < dim; ++d) {
          const acc_t p = pooled[d] * inv_k;
          pooled[d] = p;
          sq += (p - t[d]) * (p - t[d]);
        }
        row_loss[b] = w * sq / acc_t(dim);
        coef_p = acc_t(2) * w / acc_t(batch * dim);
        coef_t = -coef_p;
      }
      if (grad == nullptr) continue;
      scalar_t* g = grad + b * dim;
      coef_p *= inv_k;
      coef_t *= inv_k;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) g[d] = static_cast<scalar_t>(coef_p * pooled[d] + coef_t * t[d]);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> distill_loss_forward(const at::Tensor& student,
                                                        const at::Tensor& teacher,
                                                        const std::optional<at::Tensor>& weight,
                                                        bool cosine, double eps, bool compute_grad) {
  TORCH_CHECK(student.device().is_cpu(), "distill_loss_forward: CPU tensors only");
  TORCH_CHECK(student.dim() == 2 || student.dim() == 3, "student must be [B, K, D] or [B, D]");
  const at::Tensor s = student.contiguous();
  const int64_t batch = s.size(0);
  const int64_t k = s.dim() == 3 ? s.size(1) : 1;
  const int64_t dim = s.size(-1);
  const auto acc_dtype = s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor t = teacher.to(acc_dtype).contiguous();
  TORCH_CHECK(t.size(0) == batch && t.size(1) == dim, "teacher must be [B, D]");
  at::Tensor w;
  if (weight.has_value()) w = weight->to(at::kFloat).contiguous();
  at::Tensor grad = compute_grad ? at::empty({batch, dim}, s.options()) : at::Tensor();
  at::Tensor row_loss = at::empty({batch}, s.options().dtype(acc_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "distill_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    distill_rows<scalar_t>(s.const_data_ptr<scalar_t>(), t.const_data_ptr<acc_t>(),
                           w.defined() ? w.const_data_ptr<float>() : nullptr,
                           compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr,
                           row_loss.mutable_data_ptr<acc_t>(), batch, k, dim, cosine, eps);
  });
  at::Tensor loss = row_loss.sum().div_(static_cast<double>(batch));
  if (acc_dtype != at::kDouble) loss = loss.to(at::kFloat);
  return {loss, grad};
}

}  // namespace l2vg
