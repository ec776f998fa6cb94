// CUDA kernel of semianchor::topn_iou_match, the CPU kernel's steps on the device (same plan,
// visit, IoU and insertion buffer from iou_match.h / box_math.h): one thread per (image, GT)
// selects its top-N into a slice of an (N, M, K) scratch buffer and claims the selected anchors
// with a 64-bit atomicMax on the anchor's key (highest IoU, then lowest GT index, independent of
// thread order); a last pass writes the outputs. Extra memory O(N*R + N*M*K), K = min(topn, R).
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "cuda_utils.cuh"
#include "iou_match.h"

namespace semianchor {
namespace {

__global__ void topn_select_kernel(const double* plan, const double* ext, const float* anchors,
                                   const float* gts, const int64_t* counts, int64_t N, int64_t M,
                                   int64_t R, int64_t L, int64_t S, int K, float* buf_d,
                                   int64_t* buf_i, ClaimKey* keys) {
  SA_CUDA_LOOP(e, N * M) {
    const int64_t n = e / M, m = e % M;
    if (m >= counts[n]) continue;
    float* bd = buf_d + e * K;  // -IoU: topk_insert keeps the K smallest (key, index) pairs
    int64_t* bi = buf_i + e * K;
    int found = 0;
    visit_gt_overlaps(plan + (S > 1 ? n : 0) * L * kPlanStride, L, ext,
                      anchors + (S > 1 ? 4 * R * n : 0), gts + 4 * e, 0, 1,
                      [&](int64_t r, float v) { topk_insert(bd, bi, found, K, -v, r); });
    ClaimKey* k = keys + n * R;
    for (int c = 0; c < found; ++c) atomicMax(k + bi[c], claim_key(-bd[c], m));
  }
}

__global__ void topn_finalize_kernel(const ClaimKey* keys, int64_t n, int64_t* matched,
                                     float* iou) {
  SA_CUDA_LOOP(i, n) {
    if (keys[i] == 0) {
      matched[i] = -1;
      iou[i] = 0.f;
    } else {
      claim_unpack(keys[i], matched + i, iou + i);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> topn_iou_match_cuda(const at::Tensor& anchors,
                                                       const at::Tensor& gt_boxes,
                                                       const at::Tensor& gt_counts,
                                                       at::IntArrayRef num_anchors_per_level,
                                                       int64_t topn, bool grid) {
  const int64_t S = check_iou_match(anchors, gt_boxes, gt_counts, num_anchors_per_level);
  TORCH_CHECK(topn >= 0, "topn must be >= 0, got ", topn);
  const c10::cuda::CUDAGuard guard(gt_boxes.device());
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(-2);
  const auto dev = gt_boxes.device();
  auto matched = at::empty({N, R}, gt_counts.options());
  auto iou = at::empty({N, R}, gt_boxes.options());
  if (N * R == 0) return {matched, iou};
  const int K = static_cast<int>(std::min<int64_t>({topn, R, int64_t(1) << 30}));

  auto keys = at::zeros({N, R}, gt_counts.options());  // int64 storage for the 64-bit keys
  ClaimKey* keys_p = reinterpret_cast<ClaimKey*>(keys.data_ptr<int64_t>());
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (K > 0 && N * M > 0) {
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
    auto buf_d = at::empty({N, M, K}, gt_boxes.options());
    auto buf_i = at::empty({N, M, K}, gt_counts.options());
    topn_select_kernel<<<blocks_for(N * M), kThreads, 0, stream>>>(
        plan_dev.data_ptr<double>(), ext_dev.data_ptr<double>(), anc.data_ptr<float>(),
        gts.data_ptr<float>(), cnt.data_ptr<int64_t>(), N, M, R, L, S, K, buf_d.data_ptr<float>(),
        buf_i.data_ptr<int64_t>(), keys_p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  topn_finalize_kernel<<<blocks_for(N * R), kThreads, 0, stream>>>(
      keys_p, N * R, matched.data_ptr<int64_t>(), iou.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {matched, iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("topn_iou_match", &topn_iou_match_cuda);
}

}  // namespace semianchor
