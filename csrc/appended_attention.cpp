// appended_attention: K appended queries attend over a constant prefix cache (masked by
// prefix_mask, left padding) plus their own K keys causally; GQA without repeating K/V.
//
// GQA is packed: in a contiguous q [B, h, K, d] the G = h / hkv heads sharing one KV head are
// adjacent, so q viewed as [B, hkv, G*K, d] is free, and every product below is one batched GEMM
// over (B, hkv) with G*K rows: the cache is never copied, concatenated or repeated. Row r of a group
// is appended position i = r % K; it sees prefix keys where prefix_mask is true and appended keys
// j <= i. Scores against the prefix [B, hkv, GK, L] and against the appended keys [B, hkv, GK, K]
// stay separate (no [L + K] concatenation), share one row max, and the appended block always holds
// key 0, so no row is ever fully masked. Maths in fp32 (fp64 for fp64 inputs).
//
// Backward recomputes P from the saved LSE and returns dq, and dk, dv of the appended keys only:
// dk = scale * dS_app^T q and dv = P_app^T dO contract the G*K rows, which sums the G heads.
#include <ATen/ATen.h>

#include <limits>

#include "ops.h"

namespace l2vg {
namespace {

struct Packed {
  int64_t batch, heads, hkv, klen, dim, length;
  at::ScalarType acc;
};

Packed shapes(const at::Tensor& q, const at::Tensor& k_cache) {
  TORCH_CHECK(q.device().is_cpu(), "appended_attention: CPU tensors only");
  TORCH_CHECK(q.dim() == 4 && k_cache.dim() == 4, "appended_attention: q and k_cache must be rank 4");
  const int64_t hkv = k_cache.size(1);
  TORCH_CHECK(hkv > 0 && q.size(1) % hkv == 0, "appended_attention: h must be a multiple of hkv");
  const auto acc = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  return {q.size(0), q.size(1), hkv, q.size(2), q.size(3), k_cache.size(2), acc};
}

// q [B, h, K, d] -> [B, hkv, G*K, d] in the accumulation dtype.
at::Tensor pack(const at::Tensor& x, const Packed& s) {
  return x.to(s.acc).contiguous().view({s.batch, s.hkv, s.heads / s.hkv * s.klen, s.dim});
}

// [G*K, K] true where appended key j is hidden from row r (j > r % K).
at::Tensor causal_hidden(const Packed& s) {
  const auto opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor i = at::arange(s.heads / s.hkv * s.klen, opts).remainder_(s.klen).unsqueeze(1);
  return at::arange(s.klen, opts).unsqueeze(0).gt(i);
}

// Scaled, masked scores of the packed queries against the prefix and the appended keys.
std::pair<at::Tensor, at::Tensor> scores(const at::Tensor& qg, const at::Tensor& kc, const at::Tensor& ka,
                                         const at::Tensor& prefix_mask, const Packed& s, double scale) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor s_c = at::matmul(qg, kc.transpose(-1, -2)).mul_(scale);  // [B, hkv, GK, L]
  s_c.masked_fill_(prefix_mask.logical_not().view({s.batch, 1, 1, s.length}), neg_inf);
  at::Tensor s_a = at::matmul(qg, ka.transpose(-1, -2)).mul_(scale);  // [B, hkv, GK, K]
  s_a.masked_fill_(causal_hidden(s), neg_inf);
  return {s_c, s_a};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> appended_attention_forward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_cache,
    const at::Tensor& v_cache, const at::Tensor& prefix_mask, double scale) {
  const Packed s = shapes(q, k_cache);
  const at::Tensor qg = pack(q, s);
  const at::Tensor kc = k_cache.to(s.acc), vc = v_cache.to(s.acc);
  const at::Tensor ka = k.to(s.acc), va = v.to(s.acc);
  auto [s_c, s_a] = scores(qg, kc, ka, prefix_mask, s, scale);
  at::Tensor m = s_a.amax(-1, true);  // finite: key 0 is always visible
  if (s.length > 0) m = at::maximum(m, s_c.amax(-1, true));
  at::Tensor p_c = s_c.sub_(m).exp_();
  at::Tensor p_a = s_a.sub_(m).exp_();
  at::Tensor l = p_a.sum(-1, true).add_(p_c.sum(-1, true));
  at::Tensor out = at::matmul(p_a, va);
  if (s.length > 0) out.add_(at::matmul(p_c, vc));
  out.div_(l);
  at::Tensor lse = m.add_(l.log_()).view({s.batch, s.heads, s.klen});
  return {out.view({s.batch, s.heads, s.klen, s.dim}).to(q.scalar_type()), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> appended_attention_backward(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& k_cache,
    const at::Tensor& v_cache, const at::Tensor& prefix_mask, const at::Tensor& out,
    const at::Tensor& lse, const at::Tensor& grad_out, double scale) {
  const Packed s = shapes(q, k_cache);
  const at::Tensor qg = pack(q, s), og = pack(out, s), dog = pack(grad_out, s);
  const at::Tensor kc = k_cache.to(s.acc), vc = v_cache.to(s.acc);
  const at::Tensor ka = k.to(s.acc), va = v.to(s.acc);
  const at::Tensor lse_g = lse.to(s.acc).view({s.batch, s.hkv, -1, 1});
  auto [s_c, s_a] = scores(qg, kc, ka, prefix_mask, s, scale);
  const at::Tensor delta = (dog * og).sum(-1, true);  // rowsum(dO * O)
  // dS = P * (dP - delta), P = exp(S - lse); masked entries have S = -inf, so P = 0.
  at::Tensor p_a = s_a.sub_(lse_g).exp_();
  at::Tensor ds_a = at::matmul(dog, va.transpose(-1, -2)).sub_(delta).mul_(p_a);
  at::Tensor dq = at::matmul(ds_a, ka);
  if (s.length > 0) {
    at::Tensor p_c = s_c.sub_(lse_g).exp_();
    dq.add_(at::matmul(at::matmul(dog, vc.transpose(-1, -2)).sub_(delta).mul_(p_c), kc));
  }
  dq.mul_(scale);
  at::Tensor dk = at::matmul(ds_a.transpose(-1, -2), qg).mul_(scale);  // [B, hkv, K, d]
  at::Tensor dv = at::matmul(p_a.transpose(-1, -2), dog);
  const auto dtype = q.scalar_type();
  return {dq.view({s.batch, s.heads, s.klen, s.dim}).to(dtype), dk.to(dtype), dv.to(dtype)};
}

}  // namespace l2vg
