// One iteration of preconditioned conjugate gradients on one system, for a CSR
// matrix A and the diagonal preconditioner M r = d ∘ r (or none), in three
// passes over memory instead of the nine torch ops of PCG's lean step:
//   (1) q = A p (unless q is given) and p^T q;
//   (2) alpha = rz / p^T q, x' = x + alpha p, r' = r - alpha q, z = d ∘ r',
//       r'^T r' and r'^T z;
//   (3) beta = r'^T z / rz, p' = z + beta p (z recomputed from r', not stored).
//
// The inner products are accumulated in double, float32 ones too, in blocks
// of kStepBlock rows (kLanes accumulators each) whose sums are added in block
// order: the result depends on n alone, not on the number of threads, so that
// an iteration recomputed later (PCG's replay of a block) is bitwise the same.
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <type_traits>
#include <vector>

#include "op_checks.h"

namespace learnsolve {
namespace {

// Rows per block: the passes run block by block (in parallel where the work
// is large), each block's inner products summed apart and the blocks' sums
// added in block order. A block's vectors stay in L1 between its update and
// its sums, read again there rather than summed in the same loop, so that
// the loop of the sums stores nothing and is vectorised.
constexpr int64_t kStepBlock = 1024;
// Accumulators per inner product in a block: row i adds to lane i % kLanes,
// so that the adds are not one chain of dependent floating-point additions.
constexpr int kLanes = 8;

// Two lanes in one SSE2 register (a GCC and Clang vector extension), so that
// their adds are one instruction: with an array of scalar lanes the compiler
// vectorises the loop across its iterations instead, through shuffles that
// make a sum 3-4 times slower.
using Double2 = double __attribute__((vector_size(16)));

// The sum of term(i) (a double) over [begin, end) in kLanes accumulators, added
// pairwise at the end.
template <typename Term>
double lane_sum(int64_t begin, int64_t end, const Term& term) {
  Double2 pairs[kLanes / 2] = {};
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes) {
    for (int l = 0; l < kLanes / 2; ++l) {
      pairs[l] += Double2{term(i + 2 * l), term(i + 2 * l + 1)};
    }
  }
  double lane[kLanes];
  for (int l = 0; l < kLanes; ++l) lane[l] = pairs[l / 2][l % 2];
  for (int l = 0; i < end; ++i, ++l) lane[l] += term(i);
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) lane[l] += lane[l + width];
  }
  return lane[0];
}

// Runs block(begin, end) -> std::array<double, K> on the blocks of [0, n), in
// parallel where `parallel`; the sum of their results, added in block order.
template <int K, typename Block>
std::array<double, K> block_sums(int64_t n, bool parallel, const Block& block) {
  const int64_t blocks = (n + kStepBlock - 1) / kStepBlock;
  std::vector<std::array<double, K>> partial(blocks);
  at::parallel_for(0, blocks, parallel ? 1 : std::max<int64_t>(blocks, 1),
                   [&](int64_t b0, int64_t b1) {
                     for (int64_t b = b0; b < b1; ++b) {
                       partial[b] = block(b * kStepBlock, std::min(n, (b + 1) * kStepBlock));
                     }
                   });
  std::array<double, K> total = {};
  for (const auto& sums : partial) {
    for (int k = 0; k < K; ++k) total[k] += sums[k];
  }
  return total;
}

// u^T v over [begin, end), in double.
template <typename scalar_t>
double dot(const scalar_t* u, const scalar_t* v, int64_t begin, int64_t end) {
  return lane_sum(begin, end, [=](int64_t i) {
    return static_cast<double>(u[i]) * static_cast<double>(v[i]);
  });
}

// Pass 1: q = A p (row by row, summed as spmv sums them) unless `given`, and p^T q.
template <typename scalar_t, typename index_t>
double curvature(const int64_t* rp, const index_t* ci, const scalar_t* v, const scalar_t* p,
                 scalar_t* q, bool given, int64_t n, bool parallel) {
  return block_sums<1>(n, parallel, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end && !given; ++i) {
      scalar_t acc = 0;
      for (int64_t e = rp[i]; e < rp[i + 1]; ++e) acc += v[e] * p[ci[e]];
      q[i] = acc;
    }
    return std::array<double, 1>{dot(p, q, begin, end)};
  })[0];
}

// z_i = d_i r_i with a preconditioner, r_i without.
template <bool kDiagonal, typename scalar_t>
inline scalar_t preconditioned(const scalar_t* d, const scalar_t* r, int64_t i) {
  if constexpr (kDiagonal) {
    return d[i] * r[i];
  } else {
    return r[i];
  }
}

// Pass 2: x_out = x + alpha p, r_out = r - alpha q, and (r'^T r', r'^T z) of
// the new residual r' (the second 0 without a preconditioner).
template <bool kDiagonal, typename scalar_t>
std::array<double, 2> update(const scalar_t* x, const scalar_t* r, const scalar_t* p,
                             const scalar_t* q, const scalar_t* d, scalar_t alpha,
                             scalar_t* x_out, scalar_t* r_out, int64_t n, bool parallel) {
  return block_sums<2>(n, parallel, [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t r_new = r[i] - alpha * q[i];
      x_out[i] = x[i] + alpha * p[i];
      r_out[i] = r_new;
    }
    double rz = 0;
    if constexpr (kDiagonal) {
      rz = lane_sum(begin, end, [=](int64_t i) {
        return static_cast<double>(r_out[i]) * static_cast<double>(d[i] * r_out[i]);
      });
    }
    return std::array<double, 2>{dot(r_out, r_out, begin, end), rz};
  });
}

// Pass 3: p_out = z + beta p, z recomputed from r_out (the products of pass 2).
template <bool kDiagonal, typename scalar_t>
void direction(const scalar_t* r, const scalar_t* d, const scalar_t* p, scalar_t beta,
               scalar_t* p_out, int64_t n, bool parallel) {
  at::parallel_for(0, n, parallel ? kStepBlock : std::max<int64_t>(n, 1),
                   [=](int64_t i0, int64_t i1) {
                     for (int64_t i = i0; i < i1; ++i) {
                       p_out[i] = preconditioned<kDiagonal>(d, r, i) + beta * p[i];
                     }
                   });
}

// Passes 2 and 3 and the records, once p^T A p is known. alpha and beta are
// taken in the dtype of the solve from the recorded values, as the torch ops
// of the lean step divide them. A zero p^T A p or rz gives inf / NaN, as
// there: PCG's checks on the records stop before such an update.
template <bool kDiagonal, typename scalar_t>
void finish(const scalar_t* x, const scalar_t* r, const scalar_t* p, const scalar_t* q,
            const scalar_t* d, scalar_t rz, scalar_t pAp, scalar_t* x_out, scalar_t* r_out,
            scalar_t* p_out, const at::Tensor& dots, int64_t n, bool parallel) {
  const auto sums = update<kDiagonal>(x, r, p, q, d, rz / pAp, x_out, r_out, n, parallel);
  const scalar_t rr = static_cast<scalar_t>(sums[0]);
  const scalar_t rz_next = kDiagonal ? static_cast<scalar_t>(sums[1]) : rr;
  direction<kDiagonal>(r_out, d, p, rz_next / rz, p_out, n, parallel);
  scalar_t* out = dots.data_ptr<scalar_t>();
  const int64_t stride = dots.stride(0);
  out[0] = pAp;
  out[stride] = rr;
  if constexpr (kDiagonal) out[2 * stride] = rz_next;
}

template <typename T>
const T* data_or_null(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

void cg_step_cpu(const at::Tensor& crow, const at::Tensor& col, const at::Tensor& values,
                 const at::Tensor& x, const at::Tensor& r, const at::Tensor& p,
                 const at::Tensor& rz, const std::optional<at::Tensor>& d,
                 const std::optional<at::Tensor>& q, const at::Tensor& x_out,
                 const at::Tensor& r_out, const at::Tensor& p_out, const at::Tensor& dots) {
  check_cg_step(crow, col, values, x, r, p, rz, d, q, x_out, r_out, p_out, dots);
  const int64_t n = crow.numel() - 1;
  const bool parallel = col.numel() + n >= kSerialWork;
  // A p where q is not given: read by pass 2 after pass 1 has written all of it.
  const at::Tensor product = q ? *q : at::empty({n}, x.options());
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "cg_step_cpu", [&] {
    const scalar_t rz_value = *rz.data_ptr<scalar_t>();   // before dots may overwrite it
    const scalar_t* pp = p.data_ptr<scalar_t>();
    scalar_t* qp = product.data_ptr<scalar_t>();
    double pAp = 0;
    AT_DISPATCH_INDEX_TYPES(col.scalar_type(), "cg_step_cpu", [&] {
      pAp = curvature(crow.data_ptr<int64_t>(), col.data_ptr<index_t>(),
                      values.data_ptr<scalar_t>(), pp, qp, q.has_value(), n, parallel);
    });
    // kDiagonal as a type, so that each variant of the passes is compiled on its own.
    auto run = [&](auto diagonal) {
      finish<decltype(diagonal)::value>(
          x.data_ptr<scalar_t>(), r.data_ptr<scalar_t>(), pp, qp, data_or_null<scalar_t>(d),
          rz_value, static_cast<scalar_t>(pAp), x_out.data_ptr<scalar_t>(),
          r_out.data_ptr<scalar_t>(), p_out.data_ptr<scalar_t>(), dots, n, parallel);
    };
    if (d) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(learnsolve, CPU, m) { m.impl("cg_step", &cg_step_cpu); }

}  // namespace learnsolve
