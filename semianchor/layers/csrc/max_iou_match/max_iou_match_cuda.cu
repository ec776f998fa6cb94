// CUDA kernel of semianchor::max_iou_match, the CPU kernel's steps on the device (same plan, same
// visit, same IoU arithmetic from iou_match.h): one block per (image, GT) whose threads share the
// GT's windows; each positive IoU raises the anchor's 64-bit claim key with atomicMax (highest IoU,
// then lowest GT index, independent of thread order) and the GT's best IoU (atomicMax on the bits
// of a non-negative float, which order like the floats). A second pass marks the anchors that reach
// their GT's best IoU; a last one writes the outputs. The plan is built on the host from a copy of
// the anchors (O(R) transfer), as atss_candidates does.
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "cuda_utils.cuh"
#include "iou_match.h"

namespace semianchor {
namespace {

constexpr int kBlockThreads = 128;

inline unsigned int blocks_for_gts(int64_t n) {
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(n, 1), 65535 * 8));
}

struct MatchArgs {
  const double* plan;
  const double* ext;
  const float* anchors;
  const float* gts;
  const int64_t* counts;
  int64_t N, M, R, L, S;
};

__device__ __forceinline__ const double* set_plan(const MatchArgs& a, int64_t n) {
  return a.plan + (a.S > 1 ? n : 0) * a.L * kPlanStride;
}
__device__ __forceinline__ const float* set_anchors(const MatchArgs& a, int64_t n) {
  return a.anchors + (a.S > 1 ? 4 * a.R * n : 0);
}

__global__ void claim_kernel(MatchArgs a, ClaimKey* keys, unsigned int* gt_best) {
  for (int64_t e = blockIdx.x; e < a.N * a.M; e += gridDim.x) {
    const int64_t n = e / a.M, m = e % a.M;
    if (m >= a.counts[n]) continue;
    ClaimKey* k = keys + n * a.R;
    float best = 0.f;
    visit_gt_overlaps(set_plan(a, n), a.L, a.ext, set_anchors(a, n), a.gts + 4 * e, threadIdx.x,
                      blockDim.x, [&](int64_t r, float v) {
                        atomicMax(k + r, claim_key(v, m));
                        best = v > best ? v : best;
                      });
    if (best > 0.f) atomicMax(gt_best + e, __float_as_uint(best));
  }
}

__global__ void low_quality_kernel(MatchArgs a, const unsigned int* gt_best, uint8_t* lowq,
                                   uint8_t* all_positive) {
  for (int64_t e = blockIdx.x; e < a.N * a.M; e += gridDim.x) {
    const int64_t n = e / a.M, m = e % a.M;
    if (m >= a.counts[n]) continue;
    const float best = __uint_as_float(gt_best[e]);
    if (best == 0.f) {  // overlaps nothing: every anchor reaches this GT's best IoU (0)
      if (threadIdx.x == 0) all_positive[n] = 1;
      continue;
    }
    uint8_t* q = lowq + n * a.R;
    visit_gt_overlaps(set_plan(a, n), a.L, a.ext, set_anchors(a, n), a.gts + 4 * e, threadIdx.x,
                      blockDim.x, [&](int64_t r, float v) {
                        if (v == best) q[r] = 1;  // concurrent writes all store 1
                      });
  }
}

__global__ void finalize_kernel(const ClaimKey* keys, const uint8_t* lowq,
                                const uint8_t* all_positive, const float* thr, int64_t T,
                                const int8_t* labels, bool allow_low_quality, int64_t N, int64_t R,
                                int64_t* matched, int8_t* match_labels, float* max_iou) {
  SA_CUDA_LOOP(i, N * R) {
    int64_t m = 0;
    float v = 0.f;
    if (keys[i] != 0) claim_unpack(keys[i], &m, &v);  // else: all IoUs 0, argmax = GT 0
    matched[i] = m;
    max_iou[i] = v;
    int8_t label = matcher_label(v, thr, T, labels);
    if (allow_low_quality && (all_positive[i / R] || lowq[i])) label = 1;
    match_labels[i] = label;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> max_iou_match_cuda(
    const at::Tensor& anchors, const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
    at::IntArrayRef num_anchors_per_level, at::ArrayRef<double> thresholds, at::IntArrayRef labels,
    bool allow_low_quality_matches, bool grid) {
  const int64_t S = check_iou_match(anchors, gt_boxes, gt_counts, num_anchors_per_level);
  std::vector<float> thr = check_matcher(thresholds, labels);
  std::vector<int8_t> lab(labels.begin(), labels.end());
  const c10::cuda::CUDAGuard guard(gt_boxes.device());
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(-2);
  const int64_t T = static_cast<int64_t>(thr.size());
  const auto dev = gt_boxes.device();
  auto matched = at::empty({N, R}, gt_counts.options());
  auto match_labels = at::empty({N, R}, gt_counts.options().dtype(at::kChar));
  auto max_iou = at::empty({N, R}, gt_boxes.options());
  if (N * R == 0) return {matched, match_labels, max_iou};

  const auto anc = anchors.contiguous();
  const auto gts = gt_boxes.contiguous();
  const auto cnt = gt_counts.contiguous();
  const auto host_anchors = anc.cpu();
  std::vector<double> plan, ext;
  const int64_t L =
      build_plans(host_anchors.data_ptr<float>(), S, R, num_anchors_per_level, grid, plan, ext);
  if (plan.empty()) plan.push_back(0.0);
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const auto plan_dev = at::from_blob(plan.data(), {int64_t(plan.size())}, f64).to(dev);
  const auto ext_dev = at::from_blob(ext.data(), {int64_t(ext.size())}, f64).to(dev);
  const auto thr_dev = at::from_blob(thr.data(), {T}, at::kFloat).to(dev);
  const auto lab_dev = at::from_blob(lab.data(), {T + 1}, at::kChar).to(dev);

  auto keys = at::zeros({N, R}, gt_counts.options());  // int64 storage for the 64-bit keys
  auto gt_best = at::zeros({N, std::max<int64_t>(M, 1)}, gt_counts.options().dtype(at::kInt));
  auto lowq = at::zeros({N, R}, gt_counts.options().dtype(at::kByte));
  auto all_positive = at::zeros({N}, gt_counts.options().dtype(at::kByte));
  ClaimKey* keys_p = reinterpret_cast<ClaimKey*>(keys.data_ptr<int64_t>());
  unsigned int* best_p = reinterpret_cast<unsigned int*>(gt_best.data_ptr<int32_t>());
  MatchArgs args{plan_dev.data_ptr<double>(),
                 ext_dev.data_ptr<double>(),
                 anc.data_ptr<float>(),
                 gts.data_ptr<float>(),
                 cnt.data_ptr<int64_t>(),
                 N,
                 M,
                 R,
                 L,
                 S};
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (N * M > 0) {
    claim_kernel<<<blocks_for_gts(N * M), kBlockThreads, 0, stream>>>(args, keys_p, best_p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (allow_low_quality_matches) {
      low_quality_kernel<<<blocks_for_gts(N * M), kBlockThreads, 0, stream>>>(
          args, best_p, lowq.data_ptr<uint8_t>(), all_positive.data_ptr<uint8_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  finalize_kernel<<<blocks_for(N * R), kThreads, 0, stream>>>(
      keys_p, lowq.data_ptr<uint8_t>(), all_positive.data_ptr<uint8_t>(), thr_dev.data_ptr<float>(),
      T, lab_dev.data_ptr<int8_t>(), allow_low_quality_matches, N, R, matched.data_ptr<int64_t>(),
      match_labels.data_ptr<int8_t>(), max_iou.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {matched, match_labels, max_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("max_iou_match", &max_iou_match_cuda);
}

}  // namespace semianchor
