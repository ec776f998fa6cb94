// CPU kernel of semianchor::atss_candidates: per (image, GT), per level, the K = min(k*A, R_l)
// anchors nearest to the GT centre, found in a growing window of the level's grid (O(K) per GT and
// level) or by an exhaustive scan with a bounded insertion buffer (levels without a grid).
// Memory: the (N, M, C) outputs and the (R, 2) anchor centres; the selection buffer is the output
// slice itself (cand_iou holds squared distances until the IoUs overwrite them).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "box_math.h"
#include "checks.h"

namespace semianchor {
namespace {

std::tuple<at::Tensor, at::Tensor> atss_candidates_cpu(
    const at::Tensor& anchors, const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
    at::IntArrayRef num_anchors_per_level, int64_t k_per_level, int64_t anchors_per_location,
    at::ArrayRef<double> given) {
  const int64_t C = check_atss_candidates(anchors, gt_boxes, gt_counts, num_anchors_per_level,
                                          k_per_level, anchors_per_location, given);
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(0);
  const int64_t L = static_cast<int64_t>(num_anchors_per_level.size());
  at::Tensor anc, gts, cnt;
  std::tie(anc, gts, cnt) = contiguous_checked_inputs(anchors, gt_boxes, gt_counts);
  auto cand_idx = at::empty({N, M, C}, gt_counts.options());
  auto cand_iou = at::empty({N, M, C}, gt_boxes.options());

  const float* anc_p = anc.data_ptr<float>();
  std::vector<float> centers(2 * R);
  std::vector<float> anchor_area(R);
  for (int64_t r = 0; r < R; ++r) {
    centers[2 * r] = center_x(anc_p + 4 * r);
    centers[2 * r + 1] = center_y(anc_p + 4 * r);
    anchor_area[r] = box_area(anc_p + 4 * r);
  }
  // grid: [] -> recognise each level's grid here (O(R)); else as given (W = 0: exhaustive).
  std::vector<double> inferred;
  if (given.empty()) {
    inferred.resize(7 * L);
    for (int64_t l = 0, b = 0; l < L; b += num_anchors_per_level[l], ++l) {
      infer_level_grid(centers.data() + 2 * b, num_anchors_per_level[l], anchors_per_location,
                       inferred.data() + 7 * l);
    }
  }
  const at::ArrayRef<double> grid = given.empty() ? at::ArrayRef<double>(inferred) : given;
  std::vector<int64_t> begin(L), K(L), offset(L), A(L, 1);
  std::vector<LevelGrid> level_grid(L);
  for (int64_t l = 0, b = 0, o = 0; l < L; ++l) {
    begin[l] = b;
    K[l] = std::min<int64_t>(num_anchors_per_level[l], k_per_level);
    offset[l] = o;
    level_grid[l] = LevelGrid{0, 0, 1, 1, 0, 0, 0};
    if (!grid.empty()) level_grid[l] = level_grid_from(grid.data() + 7 * l);
    if (level_grid[l].W > 0) A[l] = num_anchors_per_level[l] / (level_grid[l].W * level_grid[l].H);
    b += num_anchors_per_level[l];
    o += K[l];
  }

  const float* gts_p = gts.data_ptr<float>();
  const int64_t* cnt_p = cnt.data_ptr<int64_t>();
  int64_t* idx_p = cand_idx.data_ptr<int64_t>();
  float* iou_p = cand_iou.data_ptr<float>();
  // Work per GT: ~16 steps per candidate on grid levels, R_l on exhaustive ones (ATen-like grain).
  int64_t per_gt = 0;
  for (int64_t l = 0; l < L; ++l)
    per_gt += level_grid[l].W > 0 ? 16 * K[l] : num_anchors_per_level[l];
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, per_gt));
  at::parallel_for(0, N * M, grain, [&](int64_t first, int64_t last) {
    for (int64_t e = first; e < last; ++e) {
      const int64_t n = e / M, m = e % M;
      int64_t* out_idx = idx_p + e * C;
      float* out_iou = iou_p + e * C;
      if (m >= cnt_p[n]) {
        std::fill(out_idx, out_idx + C, int64_t(-1));
        std::fill(out_iou, out_iou + C, 0.f);
        continue;
      }
      const float* g = gts_p + 4 * e;
      const float gcx = center_x(g), gcy = center_y(g), garea = box_area(g);
      for (int64_t l = 0; l < L; ++l) {
        if (K[l] == 0) continue;
        select_level_topk(centers.data(), begin[l], num_anchors_per_level[l],
                          static_cast<int>(K[l]), level_grid[l], A[l], gcx, gcy,
                          out_iou + offset[l], out_idx + offset[l]);
      }
      for (int64_t c = 0; c < C; ++c) {
        const int64_t r = out_idx[c];
        out_iou[c] = iou_with_areas(anc_p + 4 * r, anchor_area[r], g, garea, nullptr);
      }
    }
  });
  return {cand_idx, cand_iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("atss_candidates", &atss_candidates_cpu);
}

}  // namespace semianchor
