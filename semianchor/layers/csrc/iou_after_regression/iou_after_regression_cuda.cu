// CUDA kernel of semianchor::iou_after_regression: one thread per (image, anchor), looping over the
// image's GTs in the max-over-GTs mode. Same arithmetic as the CPU kernel (box_math.h).
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "box_math.h"
#include "checks.h"
#include "cuda_utils.cuh"

namespace semianchor {
namespace {

__global__ void gt_area_kernel(const float* gts, int64_t n, float* areas) {
  SA_CUDA_LOOP(i, n) {
    areas[i] = box_area(gts + 4 * i);
  }
}

__global__ void iou_after_regression_kernel(const float* anchors, bool per_image_anchors,
                                            const float* reg, const float* gts, const float* areas,
                                            const int64_t* counts, const int64_t* matched,
                                            const float* scale, DecodeParams p, int64_t N,
                                            int64_t R, int64_t M, float* pred, float* iou,
                                            float* giou, int64_t* index) {
  SA_CUDA_LOOP(e, N * R) {
    const int64_t n = e / R, r = e % R;
    int64_t count = counts[n];
    count = count < 0 ? 0 : (count > M ? M : count);
    const float* a = anchors + 4 * (per_image_anchors ? e : r);
    iou_after_regression_one(a, reg + 4 * e, scale != nullptr ? scale[r] : 1.f, p, gts + 4 * M * n,
                             areas + M * n, count, matched != nullptr ? matched[e] : kMaxOverGts,
                             pred + 4 * e, iou + e, giou + e, index + e);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iou_after_regression_cuda(
    const at::Tensor& anchors, const at::Tensor& regression, const at::Tensor& gt_boxes,
    const at::Tensor& gt_counts, const std::optional<at::Tensor>& matched_gt,
    c10::string_view box_coder, at::ArrayRef<double> weights, double scale_clamp,
    const std::optional<at::Tensor>& ltrb_scale) {
  check_iou_after_regression(anchors, regression, gt_boxes, gt_counts, matched_gt, weights,
                             ltrb_scale);
  const DecodeParams p{parse_box_coder(box_coder),     static_cast<float>(weights[0]),
                       static_cast<float>(weights[1]), static_cast<float>(weights[2]),
                       static_cast<float>(weights[3]), static_cast<float>(scale_clamp)};
  const c10::cuda::CUDAGuard guard(regression.device());
  const int64_t N = regression.size(0), R = regression.size(1), M = gt_boxes.size(1);
  const auto anc = anchors.contiguous();
  const auto reg = regression.contiguous();
  const auto gts = gt_boxes.contiguous();
  const auto cnt = gt_counts.contiguous();
  const auto mat = matched_gt.has_value() ? matched_gt->contiguous() : at::Tensor();
  const auto scl = ltrb_scale.has_value() ? ltrb_scale->contiguous() : at::Tensor();
  auto pred = at::empty({N, R, 4}, regression.options());
  auto iou = at::empty({N, R}, regression.options());
  auto giou = at::empty({N, R}, regression.options());
  auto index = at::empty({N, R}, regression.options().dtype(at::kLong));
  auto areas = at::empty({N, M}, regression.options());
  if (N * R == 0) return {pred, iou, giou, index};
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (N * M > 0) {
    gt_area_kernel<<<blocks_for(N * M), kThreads, 0, stream>>>(gts.data_ptr<float>(), N * M,
                                                               areas.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  iou_after_regression_kernel<<<blocks_for(N * R), kThreads, 0, stream>>>(
      anc.data_ptr<float>(), anchors.dim() == 3, reg.data_ptr<float>(), gts.data_ptr<float>(),
      areas.data_ptr<float>(), cnt.data_ptr<int64_t>(),
      mat.defined() ? mat.data_ptr<int64_t>() : nullptr,
      scl.defined() ? scl.data_ptr<float>() : nullptr, p, N, R, M, pred.data_ptr<float>(),
      iou.data_ptr<float>(), giou.data_ptr<float>(), index.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {pred, iou, giou, index};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("iou_after_regression", &iou_after_regression_cuda);
}

}  // namespace semianchor
