// CUDA kernel of semianchor::atss_assign. Thresholds: one thread per GT (same sequential double
// accumulation as the CPU kernel and the reference). Conflicts: one thread per candidate does a
// 64-bit atomicMax on a per-anchor key (orderable score bits << 32 | ~gt), which selects the
// highest score and, among equal scores, the lowest GT index, independently of thread order.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "box_math.h"
#include "checks.h"
#include "cuda_utils.cuh"

namespace semianchor {
namespace {

using Key = unsigned long long;

__device__ __forceinline__ Key pack_key(float s, int64_t m) {
  unsigned int u = __float_as_uint(__fadd_rn(s, 0.f));  // -0 -> +0: equal scores tie
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);       // monotone float -> uint map
  return (static_cast<Key>(u) << 32) | static_cast<Key>(0xFFFFFFFFu - static_cast<unsigned>(m));
}

__device__ __forceinline__ void unpack_key(Key k, int64_t* m, float* s) {
  const unsigned int u = static_cast<unsigned int>(k >> 32);
  *s = __uint_as_float((u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u);
  *m = static_cast<int64_t>(0xFFFFFFFFu - static_cast<unsigned int>(k & 0xFFFFFFFFull));
}

__global__ void threshold_kernel(const int64_t* idx, const float* scores, const int64_t* counts,
                                 int64_t N, int64_t M, int64_t C, float* thr) {
  SA_CUDA_LOOP(e, N * M) {
    thr[e] = (e % M < counts[e / M]) ? atss_threshold(idx + e * C, scores + e * C, C) : 0.f;
  }
}

__global__ void claim_kernel(const int64_t* idx, const float* scores, const float* thr,
                             const float* anchors, const float* gts, const int64_t* counts,
                             int64_t N, int64_t M, int64_t C, int64_t R, float eps, Key* keys) {
  SA_CUDA_LOOP(t, N * M * C) {
    const int64_t e = t / C, n = e / M, m = e % M;
    const int64_t r = idx[t];
    const float s = scores[t];
    if (m >= counts[n] || r < 0 || r >= R || !(s >= thr[e])) continue;
    if (!center_inside(anchors + 4 * r, gts + 4 * e, eps)) continue;
    atomicMax(keys + n * R + r, pack_key(s, m));
  }
}

__global__ void finalize_kernel(const Key* keys, int64_t n, int64_t* matched, float* score) {
  SA_CUDA_LOOP(i, n) {
    const Key k = keys[i];
    if (k == 0) {  // no positive claimed this anchor (every real key has its top bits set)
      matched[i] = -1;
      score[i] = 0.f;
    } else {
      unpack_key(k, matched + i, score + i);
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> atss_assign_cuda(
    const at::Tensor& cand_idx, const at::Tensor& cand_scores, const at::Tensor& anchors,
    const at::Tensor& gt_boxes, const at::Tensor& gt_counts, double center_eps) {
  check_atss_assign(cand_idx, cand_scores, anchors, gt_boxes, gt_counts);
  const c10::cuda::CUDAGuard guard(anchors.device());
  const int64_t N = cand_idx.size(0), M = cand_idx.size(1), C = cand_idx.size(2);
  const int64_t R = anchors.size(0);
  TORCH_CHECK(M < (int64_t(1) << 31), "gt_boxes must have fewer than 2^31 GTs per image");
  const auto idx = cand_idx.contiguous();
  const auto sco = cand_scores.contiguous();
  const auto anc = anchors.contiguous();
  const auto gts = gt_boxes.contiguous();
  const auto cnt = gt_counts.contiguous();
  auto matched = at::empty({N, R}, cand_idx.options());
  auto matched_score = at::empty({N, R}, cand_scores.options());
  auto threshold = at::zeros({N, M}, cand_scores.options());
  auto keys = at::zeros({N, R}, cand_idx.options());  // int64 storage for the 64-bit keys
  auto stream = c10::cuda::getCurrentCUDAStream();
  Key* keys_p = reinterpret_cast<Key*>(keys.data_ptr<int64_t>());
  if (N * M > 0) {
    threshold_kernel<<<blocks_for(N * M), kThreads, 0, stream>>>(
        idx.data_ptr<int64_t>(), sco.data_ptr<float>(), cnt.data_ptr<int64_t>(), N, M, C,
        threshold.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (N * M * C > 0 && R > 0) {
    claim_kernel<<<blocks_for(N * M * C), kThreads, 0, stream>>>(
        idx.data_ptr<int64_t>(), sco.data_ptr<float>(), threshold.data_ptr<float>(),
        anc.data_ptr<float>(), gts.data_ptr<float>(), cnt.data_ptr<int64_t>(), N, M, C, R,
        static_cast<float>(center_eps), keys_p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (N * R > 0) {
    finalize_kernel<<<blocks_for(N * R), kThreads, 0, stream>>>(
        keys_p, N * R, matched.data_ptr<int64_t>(), matched_score.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {matched, matched_score, threshold};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("atss_assign", &atss_assign_cuda);
}

}  // namespace semianchor
