// distill_loss: mean-pool the student over K, compare with the teacher (MSE or 1 - cosine), and
// write the gradient in the same pass. The gradient is the same for all K rows of a batch row, so
// only grad_rows [B, D] = (d loss / d pooled) / K is written; autograd expands it to [B, K, D]
// without copying. Rows are split over threads; each thread's loss sum is reduced in fp64 here, so
// the op returns its scalar without a second tensor op.
//
// distill_loss_apply wraps the kernel in a C++ autograd node (torch::autograd::Function), so a
// training step never enters Python for this op's backward: it only scales the saved grad_rows.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <torch/csrc/autograd/custom_function.h>

#include "ops.h"

namespace l2vg {
namespace {

template <typename scalar_t>
struct DistillArgs {
  using acc_t = at::opmath_type<scalar_t>;
  const scalar_t* student;  // [B, K, D]
  const acc_t* teacher;     // [B, D]
  const float* weight;      // [B] or nullptr
  scalar_t* grad;           // [B, D] or nullptr
  int64_t batch, k, dim;
  bool cosine;
  double eps;
};

// Rows [begin, end): returns their weighted loss sum; `pooled` is [D] scratch.
template <typename scalar_t>
L2VG_MULTIVERSION double distill_range(const DistillArgs<scalar_t>& a, int64_t begin, int64_t end,
                                       at::opmath_type<scalar_t>* pooled) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t k = a.k, dim = a.dim;
  const acc_t inv_k = acc_t(1) / acc_t(k), eps = static_cast<acc_t>(a.eps);
  double total = 0;
  for (int64_t b = begin; b < end; ++b) {
    const scalar_t* s = a.student + b * k * dim;
    const acc_t* t = a.teacher + b * dim;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) pooled[d] = static_cast<acc_t>(s[d]);
    for (int64_t j = 1; j < k; ++j) {
      const scalar_t* sj = s + j * dim;
#pragma omp simd
      for (int64_t d = 0; d < dim; ++d) pooled[d] += static_cast<acc_t>(sj[d]);
    }
    const acc_t w = a.weight ? static_cast<acc_t>(a.weight[b]) : acc_t(1);
    // grad_p[d] = coef_p * p[d] + coef_t * t[d], then spread evenly over the K rows.
    acc_t coef_p, coef_t;
    if (a.cosine) {
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
      total += static_cast<double>(w * (acc_t(1) - cos));
      const acc_t scale = -w / acc_t(a.batch);
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
      total += static_cast<double>(w * sq / acc_t(dim));
      coef_p = acc_t(2) * w / acc_t(a.batch * dim);
      coef_t = -coef_p;
    }
    if (a.grad == nullptr) continue;
    scalar_t* g = a.grad + b * dim;
    coef_p *= inv_k;
    coef_t *= inv_k;
#pragma omp simd
    for (int64_t d = 0; d < dim; ++d) g[d] = static_cast<scalar_t>(coef_p * pooled[d] + coef_t * t[d]);
  }
  return total;
}

template <typename scalar_t>
double distill_rows(const DistillArgs<scalar_t>& a) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, a.k * a.dim));
  const int64_t chunks = std::min<int64_t>(at::get_num_threads(), at::divup(a.batch, grain));
  std::vector<double> partial(std::max<int64_t>(chunks, 1), 0.0);
  // One chunk per thread with a fixed split, so the fp64 sum order (and the loss) never depends on
  // scheduling.
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<acc_t> pooled(a.dim);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * a.batch / chunks, end = (c + 1) * a.batch / chunks;
      partial[c] = distill_range<scalar_t>(a, begin, end, pooled.data());
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  return total / static_cast<double>(a.batch);
}

// loss (fp32 scalar; fp64 for fp64) and grad_rows [B, D] (student's dtype; undefined without
// compute_grad), where d loss / d student[b, k] = grad_rows[b] for every k.
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
  double loss = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "distill_loss", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const DistillArgs<scalar_t> args{s.const_data_ptr<scalar_t>(),
                                     t.const_data_ptr<acc_t>(),
                                     w.defined() ? w.const_data_ptr<float>() : nullptr,
                                     compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr,
                                     batch, k, dim, cosine, eps};
    loss = distill_rows<scalar_t>(args);
  });
  return {at::scalar_tensor(loss, s.options().dtype(acc_dtype)), grad};
}

// The autograd node of distill_loss_apply: forward runs the fused kernel and keeps grad_rows
// [B, D]; backward returns grad_rows * grad_loss, expanded over K without a copy.
struct DistillLossFunction : public torch::autograd::Function<DistillLossFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& student,
                            const at::Tensor& teacher, const std::optional<at::Tensor>& weight,
                            bool cosine, double eps, bool compute_grad) {
    auto [loss, grad] = distill_loss_forward(student, teacher, weight, cosine, eps, compute_grad);
    ctx->save_for_backward({grad});
    ctx->saved_data["shape"] = student.sizes();
    return loss;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    at::Tensor grad = ctx->get_saved_variables()[0];
    const at::Tensor& grad_loss = grad_outputs[0];
    // A loss used as is (grad_loss == 1, the usual case) needs no pass over grad_rows.
    if (grad_loss.item<double>() != 1.0) grad = grad * grad_loss.to(grad.scalar_type());
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    if (shape.size() == 3) grad = grad.unsqueeze(1).expand(shape);
    return {grad, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor distill_loss_apply(const at::Tensor& student, const at::Tensor& teacher,
                              const std::optional<at::Tensor>& weight, bool cosine, double eps) {
  const bool compute_grad = at::GradMode::is_enabled() && student.requires_grad();
  return DistillLossFunction::apply(student, teacher, weight, cosine, eps, compute_grad);
}

}  // namespace l2vg
