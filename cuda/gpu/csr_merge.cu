// Union or intersection of two canonical CSR patterns on the GPU, parallel
// over stored entries rather than rows (so long rows are no bottleneck):
//  1. each entry of A looks for its column in the same row of B (binary
//     search): found[a] (0/1); an exclusive scan gives match[a], the number
//     of matched entries of A before a (over the whole array);
//  2. the length of row r of the result is m_r (intersection) or
//     len_A + len_B - m_r (union), m_r the matches of the row; a scan of the
//     lengths gives crow_c and, read back to the host, nnz(C);
//  3. each entry finds its position from ranks alone: in a union, the entry
//     of column j lands after the entries of A and of B of columns < j, less
//     the matched pairs among them (counted once); in an intersection, after
//     the matched entries of A before it. Entries of B look up the same
//     quantities in A by binary search; a matched pair computes the same
//     position from both sides.
// Deterministic, and the same result as the CPU's row merge.
#include <torch/library.h>

#include <tuple>

#include "common.cuh"

namespace learnsolve {
namespace gpu {
namespace {

// found[a + 1] = 1 if the column of entry a of A is in the same row of B.
__global__ void merge_find_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                                  const int64_t* __restrict__ rows_a,
                                  const int64_t* __restrict__ rb, const int64_t* __restrict__ cb,
                                  int64_t* __restrict__ found, int64_t nnz_a) {
  for (int64_t a = global_thread(); a < nnz_a; a += thread_count()) {
    const int64_t r = rows_a[a];
    found[a + 1] = find_sorted(cb, rb[r], rb[r + 1], ca[a]) >= 0 ? 1 : 0;
  }
}

// counts[r + 1] = length of row r of the result; match has nnz_a + 1 entries.
__global__ void merge_count_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ rb,
                                   const int64_t* __restrict__ match, int64_t* __restrict__ counts,
                                   int64_t nrows, bool intersect) {
  for (int64_t r = global_thread(); r < nrows; r += thread_count()) {
    const int64_t m = match[ra[r + 1]] - match[ra[r]];
    counts[r + 1] = intersect ? m : (ra[r + 1] - ra[r]) + (rb[r + 1] - rb[r]) - m;
  }
}

__global__ void merge_place_a_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                                     const int64_t* __restrict__ rows_a,
                                     const int64_t* __restrict__ rb,
                                     const int64_t* __restrict__ cb,
                                     const int64_t* __restrict__ match,
                                     const int64_t* __restrict__ rc, int64_t* __restrict__ cc,
                                     int64_t* __restrict__ map_a, int64_t nnz_a, bool intersect) {
  for (int64_t a = global_thread(); a < nnz_a; a += thread_count()) {
    const int64_t r = rows_a[a];
    const int64_t a0 = ra[r];
    const int64_t j = ca[a];
    const int64_t matched_before = match[a] - match[a0];
    int64_t q;
    if (intersect) {
      if (match[a + 1] == match[a]) {  // not in B
        map_a[a] = -1;
        continue;
      }
      q = rc[r] + matched_before;
    } else {
      const int64_t b_before = lower_bound(cb, rb[r], rb[r + 1], j) - rb[r];
      q = rc[r] + (a - a0) + b_before - matched_before;
    }
    cc[q] = j;
    map_a[a] = q;
  }
}

__global__ void merge_place_b_kernel(const int64_t* __restrict__ ra, const int64_t* __restrict__ ca,
                                     const int64_t* __restrict__ rb, const int64_t* __restrict__ cb,
                                     const int64_t* __restrict__ rows_b,
                                     const int64_t* __restrict__ match,
                                     const int64_t* __restrict__ rc, int64_t* __restrict__ cc,
                                     int64_t* __restrict__ map_b, int64_t nnz_b, bool intersect) {
  for (int64_t b = global_thread(); b < nnz_b; b += thread_count()) {
    const int64_t r = rows_b[b];
    const int64_t a0 = ra[r], a1 = ra[r + 1];
    const int64_t j = cb[b];
    const int64_t lb = lower_bound(ca, a0, a1, j);  // entries of A before column j: lb - a0
    const bool in_a = lb < a1 && ca[lb] == j;
    const int64_t matched_before = match[lb] - match[a0];
    if (intersect) {
      map_b[b] = in_a ? rc[r] + matched_before : -1;  // A's kernel writes the column
      continue;
    }
    const int64_t q = rc[r] + (lb - a0) + (b - rb[r]) - matched_before;
    map_b[b] = q;
    if (!in_a) cc[q] = j;  // a matched pair's column is written by A's kernel
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> csr_merge_cuda(
    const at::Tensor& crow_a, const at::Tensor& col_a, const at::Tensor& crow_b,
    const at::Tensor& col_b, bool intersect) {
  check_csr_merge(crow_a, col_a, crow_b, col_b);
  const at::Device device = crow_a.device();
  c10::cuda::CUDAGuard guard(device);
  const int64_t nrows = crow_a.numel() - 1;
  const int64_t nnz_a = col_a.numel(), nnz_b = col_b.numel();
  const auto ra_c = crow_a.contiguous(), ca_c = col_a.contiguous();
  const auto rb_c = crow_b.contiguous(), cb_c = col_b.contiguous();
  const int64_t* ra = ra_c.data_ptr<int64_t>();
  const int64_t* ca = ca_c.data_ptr<int64_t>();
  const int64_t* rb = rb_c.data_ptr<int64_t>();
  const int64_t* cb = cb_c.data_ptr<int64_t>();
  const at::Tensor rows_a = entry_rows(ra_c, nnz_a);
  const at::Tensor rows_b = entry_rows(rb_c, nnz_b);

  // 1. matches of A in B, and their exclusive scan (nnz_a + 1 entries).
  auto found = at::zeros({nnz_a + 1}, crow_a.options());
  if (nnz_a > 0) {
    merge_find_kernel<<<thread_blocks(nnz_a), kThreads, 0, stream()>>>(
        ra, ca, rows_a.data_ptr<int64_t>(), rb, cb, found.data_ptr<int64_t>(), nnz_a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  const at::Tensor match = at::cumsum(found, 0);
  const int64_t* mp = match.data_ptr<int64_t>();

  // 2. row lengths and row pointers of the result.
  auto counts = at::zeros({nrows + 1}, crow_a.options());
  if (nrows > 0) {
    merge_count_kernel<<<thread_blocks(nrows), kThreads, 0, stream()>>>(
        ra, rb, mp, counts.data_ptr<int64_t>(), nrows, intersect);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  auto [crow_c, nnz_c] = scan_counts(counts);

  // 3. columns of the result and the two maps.
  auto col_c = at::empty({nnz_c}, crow_a.options());
  auto map_a = at::empty({nnz_a}, crow_a.options());
  auto map_b = at::empty({nnz_b}, crow_a.options());
  if (nnz_a > 0) {
    merge_place_a_kernel<<<thread_blocks(nnz_a), kThreads, 0, stream()>>>(
        ra, ca, rows_a.data_ptr<int64_t>(), rb, cb, mp, crow_c.data_ptr<int64_t>(),
        col_c.data_ptr<int64_t>(), map_a.data_ptr<int64_t>(), nnz_a, intersect);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (nnz_b > 0) {
    merge_place_b_kernel<<<thread_blocks(nnz_b), kThreads, 0, stream()>>>(
        ra, ca, rb, cb, rows_b.data_ptr<int64_t>(), mp, crow_c.data_ptr<int64_t>(),
        col_c.data_ptr<int64_t>(), map_b.data_ptr<int64_t>(), nnz_b, intersect);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {crow_c, col_c, map_a, map_b};
}

}  // namespace
}  // namespace gpu

TORCH_LIBRARY_IMPL(learnsolve, CUDA, m) { m.impl("csr_merge", &gpu::csr_merge_cuda); }

}  // namespace learnsolve
