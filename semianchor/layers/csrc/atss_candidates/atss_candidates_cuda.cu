// CUDA kernel of semianchor::atss_candidates: one thread per (image, GT, level) runs the same
// selection as the CPU kernel (box_math.h: grid window or exhaustive scan), using its slice of the
// outputs as the insertion-sorted top-K buffer, then writes the candidates' IoUs.
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <torch/library.h>

#include <vector>

#include "box_math.h"
#include "checks.h"
#include "cuda_utils.cuh"

namespace semianchor {
namespace {

__global__ void anchor_centers_kernel(const float* anchors, int64_t R, float* centers) {
  SA_CUDA_LOOP(r, R) {
    centers[2 * r] = center_x(anchors + 4 * r);
    centers[2 * r + 1] = center_y(anchors + 4 * r);
  }
}

// level_info: per level (begin, R_l, K_l, offset, A); grid: 7 doubles per level.
__global__ void atss_candidates_kernel(const float* anchors, const float* centers, const float* gts,
                                       const int64_t* counts, const int64_t* level_info,
                                       const double* grid, int64_t N, int64_t M, int64_t L,
                                       int64_t C, int64_t* cand_idx, float* cand_iou) {
  SA_CUDA_LOOP(t, N * M * L) {
    const int64_t l = t % L, e = t / L, n = e / M, m = e % M;
    const int64_t* info = level_info + 5 * l;
    const int64_t begin = info[0], R_l = info[1], K = info[2], offset = info[3], A = info[4];
    int64_t* out_idx = cand_idx + e * C + offset;
    float* out_iou = cand_iou + e * C + offset;
    if (m >= counts[n]) {
      for (int64_t c = 0; c < K; ++c) {
        out_idx[c] = -1;
        out_iou[c] = 0.f;
      }
      continue;
    }
    if (K == 0) continue;
    const float* g = gts + 4 * e;
    const float gcx = center_x(g), gcy = center_y(g), garea = box_area(g);
    select_level_topk(centers, begin, R_l, static_cast<int>(K), level_grid_from(grid + 7 * l), A,
                      gcx, gcy, out_iou, out_idx);
    for (int64_t c = 0; c < K; ++c) {
      const float* a = anchors + 4 * out_idx[c];
      out_iou[c] = iou_with_areas(a, box_area(a), g, garea, nullptr);
    }
  }
}

std::tuple<at::Tensor, at::Tensor> atss_candidates_cuda(
    const at::Tensor& anchors, const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
    at::IntArrayRef num_anchors_per_level, int64_t k_per_level, int64_t anchors_per_location,
    at::ArrayRef<double> given) {
  const int64_t C = check_atss_candidates(anchors, gt_boxes, gt_counts, num_anchors_per_level,
                                          k_per_level, anchors_per_location, given);
  const c10::cuda::CUDAGuard guard(anchors.device());
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(0);
  const int64_t L = static_cast<int64_t>(num_anchors_per_level.size());
  auto cand_idx = at::empty({N, M, C}, gt_counts.options());
  auto cand_iou = at::empty({N, M, C}, gt_boxes.options());
  if (N * M * L == 0 || C == 0) return {cand_idx, cand_iou};

  const auto anc = anchors.contiguous();
  auto centers = at::empty({R, 2}, anchors.options());
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (R > 0) {
    anchor_centers_kernel<<<blocks_for(R), kThreads, 0, stream>>>(anc.data_ptr<float>(), R,
                                                                  centers.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // grid: [] -> recognised on the host from the (bit-identical) device centres; else as given.
  std::vector<double> inferred;
  if (given.empty()) {
    const auto host_centers = centers.cpu();
    inferred.resize(7 * L);
    for (int64_t l = 0, b = 0; l < L; b += num_anchors_per_level[l], ++l) {
      infer_level_grid(host_centers.data_ptr<float>() + 2 * b, num_anchors_per_level[l],
                       anchors_per_location, inferred.data() + 7 * l);
    }
  }
  const at::ArrayRef<double> grid = given.empty() ? at::ArrayRef<double>(inferred) : given;
  std::vector<int64_t> info(5 * L);
  std::vector<double> grid_host(7 * L, 0.0);
  for (int64_t l = 0, b = 0, o = 0; l < L; ++l) {
    const int64_t R_l = num_anchors_per_level[l];
    const int64_t K = std::min<int64_t>(R_l, k_per_level);
    int64_t A = 1;
    if (!grid.empty()) {
      std::copy(grid.begin() + 7 * l, grid.begin() + 7 * (l + 1), grid_host.begin() + 7 * l);
      const int64_t W = static_cast<int64_t>(grid[7 * l + 4]);
      const int64_t H = static_cast<int64_t>(grid[7 * l + 5]);
      if (W > 0) A = R_l / (W * H);
    }
    info[5 * l] = b, info[5 * l + 1] = R_l, info[5 * l + 2] = K, info[5 * l + 3] = o;
    info[5 * l + 4] = A;
    b += R_l;
    o += K;
  }
  const auto info_dev = at::from_blob(info.data(), {5 * L}, at::kLong).to(anchors.device());
  const auto grid_dev = at::from_blob(grid_host.data(), {7 * L}, at::kDouble).to(anchors.device());
  const auto gts = gt_boxes.contiguous();
  const auto cnt = gt_counts.contiguous();
  atss_candidates_kernel<<<blocks_for(N * M * L), kThreads, 0, stream>>>(
      anc.data_ptr<float>(), centers.data_ptr<float>(), gts.data_ptr<float>(),
      cnt.data_ptr<int64_t>(), info_dev.data_ptr<int64_t>(), grid_dev.data_ptr<double>(), N, M, L,
      C, cand_idx.data_ptr<int64_t>(), cand_iou.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {cand_idx, cand_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("atss_candidates", &atss_candidates_cuda);
}

}  // namespace semianchor
