// CPU kernel of semianchor::atss_assign: per image (parallel over images), the GTs' thresholds,
// then a scan of the candidates in GT order that keeps, per anchor, the best (score, lowest GT)
// positive.
// Memory: O(N*M*C + N*R), the inputs and outputs.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

#include "box_math.h"
#include "checks.h"

namespace semianchor {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> atss_assign_cpu(
    const at::Tensor& cand_idx, const at::Tensor& cand_scores, const at::Tensor& anchors,
    const at::Tensor& gt_boxes, const at::Tensor& gt_counts, double center_eps) {
  check_atss_assign(cand_idx, cand_scores, anchors, gt_boxes, gt_counts);
  const int64_t N = cand_idx.size(0), M = cand_idx.size(1), C = cand_idx.size(2);
  const int64_t R = anchors.size(0);
  const auto idx = cand_idx.contiguous();
  const auto sco = cand_scores.contiguous();
  const auto anc = anchors.contiguous();
  const auto gts = gt_boxes.contiguous();
  const auto cnt = gt_counts.contiguous();
  check_gt_values(gts, cnt);
  check_candidates(idx, sco, cnt, R);
  // at::empty + filling inside the one parallel region below: every ATen fill or parallel_for is
  // a thread-pool wake-up, which dominates small problems on a busy machine.
  auto matched = at::empty({N, R}, cand_idx.options());
  auto matched_score = at::empty({N, R}, cand_scores.options());
  auto threshold = at::empty({N, M}, cand_scores.options());

  const int64_t* idx_p = idx.data_ptr<int64_t>();
  const float* sco_p = sco.data_ptr<float>();
  const float* anc_p = anc.data_ptr<float>();
  const float* gts_p = gts.data_ptr<float>();
  const int64_t* cnt_p = cnt.data_ptr<int64_t>();
  int64_t* matched_p = matched.data_ptr<int64_t>();
  float* score_p = matched_score.data_ptr<float>();
  float* thr_p = threshold.data_ptr<float>();
  const float eps = static_cast<float>(center_eps);

  // One task per image (ATen's grain: ~32k elements of work per task).
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, R + M * C));
  at::parallel_for(0, N, grain, [&](int64_t first, int64_t last) {
    for (int64_t n = first; n < last; ++n) {
      int64_t* best_gt = matched_p + n * R;
      float* best_score = score_p + n * R;
      std::fill(best_gt, best_gt + R, int64_t(-1));
      std::fill(best_score, best_score + R, 0.f);
      const int64_t count = std::min<int64_t>(cnt_p[n], M);
      for (int64_t m = 0; m < M; ++m) {
        const int64_t e = n * M + m;
        thr_p[e] = m < count ? atss_threshold(idx_p + e * C, sco_p + e * C, C) : 0.f;
      }
      for (int64_t m = 0; m < count; ++m) {  // increasing m + strict '>' = ties to lowest GT
        const int64_t e = n * M + m;
        const float thr = thr_p[e];
        const float* g = gts_p + 4 * e;
        for (int64_t c = 0; c < C; ++c) {
          const int64_t r = idx_p[e * C + c];
          const float s = sco_p[e * C + c];
          if (r < 0 || r >= R || !(s >= thr) || !center_inside(anc_p + 4 * r, g, eps)) continue;
          if (best_gt[r] < 0 || s > best_score[r]) {
            best_gt[r] = m;
            best_score[r] = s;
          }
        }
      }
    }
  });
  return {matched, matched_score, threshold};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("atss_assign", &atss_assign_cpu);
}

}  // namespace semianchor
