// special_token_embedding: gather rows from a frozen [V, H] table, except for the K special ids,
// whose rows come from special_rows [K, H] (already cast to the table's dtype by the caller).
//
// forward:  one task per block of the N = B*T tokens; each token's row is one memcpy of H elements
//           from its source, and its slot is written beside it (k for special_ids[k], -1 for a base
//           id, -2 for an id outside [0, V) that is not special: its row is zeroed and the caller
//           raises). Nothing of size V is touched beyond the rows read.
// backward: grad_out [N, H] -> grad_rows [K, H] (fp32; fp64 for fp64). Positions are grouped by slot
//           once (a counting sort, O(N)); then each (k, H-chunk) task owns its output and sums its
//           rows in position order, so the result is deterministic for any thread count.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops.h"

namespace l2vg {
namespace {

// grad_rows[j, h0:h0+chunk] = sum over p in [start[j], start[j+1]) of grad[order[p], h0:h0+chunk],
// one task per (j, chunk), rows summed in position order.
template <typename scalar_t>
void sum_slot_rows(const scalar_t* grad, const std::vector<int64_t>& order,
                   const std::vector<int64_t>& start, at::opmath_type<scalar_t>* out, int64_t k,
                   int64_t hidden, int64_t chunk) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t chunks = (hidden + chunk - 1) / chunk;
  at::parallel_for(0, k * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t j = task / chunks;
      const int64_t h0 = (task % chunks) * chunk;
      const int64_t width = std::min(chunk, hidden - h0);
      acc_t* o = out + j * hidden + h0;
      for (int64_t p = start[j]; p < start[j + 1]; ++p) {
        const scalar_t* g = grad + order[p] * hidden + h0;
#pragma omp simd
        for (int64_t h = 0; h < width; ++h) o[h] += static_cast<acc_t>(g[h]);
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> special_token_embedding_forward(const at::Tensor& input_ids,
                                                                   const at::Tensor& weight,
                                                                   const at::Tensor& special_ids,
                                                                   const at::Tensor& special_rows) {
  TORCH_CHECK(input_ids.device().is_cpu(), "special_token_embedding_forward: CPU tensors only");
  TORCH_CHECK(input_ids.scalar_type() == at::kLong && special_ids.scalar_type() == at::kLong,
              "input_ids and special_ids must be int64");
  TORCH_CHECK(weight.dim() == 2 && special_rows.dim() == 2 && special_rows.size(1) == weight.size(1),
              "weight [V, H] and special_rows [K, H] must share H");
  TORCH_CHECK(special_rows.scalar_type() == weight.scalar_type(),
              "special_rows must already have weight's dtype");
  const at::Tensor ids = input_ids.contiguous();
  // Rows must be dense; the row stride may be anything (e.g. 0 for an expanded test table).
  const at::Tensor table = weight.stride(1) == 1 ? weight : weight.contiguous();
  const at::Tensor sids = special_ids.contiguous();
  const at::Tensor rows = special_rows.contiguous();
  const int64_t n = ids.numel(), vocab = table.size(0), hidden = table.size(1), k = sids.numel();
  TORCH_CHECK(rows.size(0) == k, "special_ids and special_rows must hold the same K");

  std::vector<int64_t> out_shape(ids.sizes().begin(), ids.sizes().end());
  out_shape.push_back(hidden);
  at::Tensor out = at::empty(out_shape, table.options());
  at::Tensor slot = at::empty(ids.sizes(), ids.options().dtype(at::kInt));

  const int64_t* id = ids.const_data_ptr<int64_t>();
  const int64_t* sid = sids.const_data_ptr<int64_t>();
  const auto* src_table = static_cast<const char*>(table.const_data_ptr());
  const auto* src_rows = static_cast<const char*>(rows.const_data_ptr());
  auto* dst = static_cast<char*>(out.mutable_data_ptr());
  int32_t* slot_p = slot.mutable_data_ptr<int32_t>();
  const int64_t row_bytes = hidden * table.element_size();
  const int64_t table_stride = table.stride(0) * table.element_size();
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, row_bytes));

  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t tok = id[i];
      int32_t s = -1;
      for (int64_t j = 0; j < k; ++j) {
        if (sid[j] == tok) {
          s = static_cast<int32_t>(j);
          break;
        }
      }
      char* d = dst + i * row_bytes;
      if (s >= 0) {
        std::memcpy(d, src_rows + s * row_bytes, row_bytes);
      } else if (tok >= 0 && tok < vocab) {
        std::memcpy(d, src_table + tok * table_stride, row_bytes);
      } else {
        s = -2;
        std::memset(d, 0, row_bytes);
      }
      slot_p[i] = s;
    }
  });
  return {out, slot};
}

at::Tensor special_token_embedding_backward(const at::Tensor& grad_out, const at::Tensor& slot,
                                            int64_t k) {
  TORCH_CHECK(grad_out.device().is_cpu(), "special_token_embedding_backward: CPU tensors only");
  TORCH_CHECK(slot.scalar_type() == at::kInt, "slot must be int32");
  const at::Tensor slots = slot.contiguous().view(-1);
  const int64_t n = slots.numel();
  const at::Tensor grad = grad_out.contiguous().view({n, -1});
  const int64_t hidden = grad.size(1);
  const auto acc_dtype = grad.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor grad_rows = at::zeros({k, hidden}, grad.options().dtype(acc_dtype));

  // Counting sort of the special positions by slot: positions of slot j are order[start[j]:start[j+1]].
  const int32_t* sp = slots.const_data_ptr<int32_t>();
  std::vector<int64_t> start(k + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    if (sp[i] >= 0) ++start[sp[i] + 1];
  }
  for (int64_t j = 0; j < k; ++j) start[j + 1] += start[j];
  std::vector<int64_t> order(start[k]);
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    if (sp[i] >= 0) order[fill[sp[i]]++] = i;
  }

  constexpr int64_t kChunk = 256;  // H-chunk of one task: its fp32 partials stay in L1
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad.scalar_type(), "special_token_embedding", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    sum_slot_rows<scalar_t>(grad.const_data_ptr<scalar_t>(), order, start,
                            grad_rows.mutable_data_ptr<acc_t>(), k, hidden, kChunk);
  });
  return grad_rows;
}

}  // namespace l2vg
