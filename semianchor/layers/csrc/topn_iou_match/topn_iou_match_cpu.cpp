// CPU kernel of semianchor::topn_iou_match: per (image, GT) the topn anchors of highest IoU (ties
// to the lowest anchor index, IoU 0 never selected), found among the anchors that can overlap the
// GT (iou_match.h) with a bounded insertion buffer; each selected anchor is then claimed with a key
// that keeps the highest IoU and, among equal IoUs, the lowest GT index. Extra memory: the (N, R)
// keys, one topn buffer per thread and the O(R) plan; never an M x R matrix.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

#include "iou_match.h"

namespace semianchor {
namespace {

std::tuple<at::Tensor, at::Tensor> topn_iou_match_cpu(const at::Tensor& anchors,
                                                      const at::Tensor& gt_boxes,
                                                      const at::Tensor& gt_counts,
                                                      at::IntArrayRef num_anchors_per_level,
                                                      int64_t topn, bool grid) {
  const int64_t S = check_iou_match(anchors, gt_boxes, gt_counts, num_anchors_per_level);
  TORCH_CHECK(topn >= 0, "topn must be >= 0, got ", topn);
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(-2);
  at::Tensor anc, gts, cnt;
  std::tie(anc, gts, cnt) = contiguous_checked_inputs(anchors, gt_boxes, gt_counts);
  auto matched = at::empty({N, R}, gt_counts.options());
  auto iou = at::empty({N, R}, gt_boxes.options());
  if (N * R == 0) return {matched, iou};
  const int K = static_cast<int>(std::min<int64_t>({topn, R, int64_t(1) << 30}));

  const float* anc_p = anc.data_ptr<float>();
  const float* gts_p = gts.data_ptr<float>();
  const int64_t* cnt_p = cnt.data_ptr<int64_t>();
  std::vector<ClaimKey> keys(N * R, 0);
  if (K > 0) {
    std::vector<double> plan, ext;
    const int64_t L = build_plans(anc_p, S, R, num_anchors_per_level, grid, plan, ext);
    const int64_t tasks = std::min<int64_t>(N * M, at::get_num_threads());
    std::atomic<int64_t> next{0};
    // One worker per thread, each with its own buffer, taking GTs one at a time (their costs
    // differ by orders of magnitude).
    auto worker = [&](int64_t, int64_t) {
      std::vector<float> bd(K);  // -IoU: topk_insert keeps the K smallest (key, index) pairs
      std::vector<int64_t> bi(K);
      for (int64_t e; (e = next.fetch_add(1, std::memory_order_relaxed)) < N * M;) {
        const int64_t n = e / M, m = e % M;
        if (m >= cnt_p[n]) continue;
        int found = 0;
        visit_gt_overlaps(
            plan.data() + (S > 1 ? n : 0) * L * kPlanStride, L, ext.data(),
            anc_p + (S > 1 ? 4 * R * n : 0), gts_p + 4 * e, 0, 1,
            [&](int64_t r, float v) { topk_insert(bd.data(), bi.data(), found, K, -v, r); });
        ClaimKey* k = keys.data() + n * R;
        for (int c = 0; c < found; ++c) {
          const ClaimKey key = claim_key(-bd[c], m);
          std::atomic_ref<ClaimKey> ref(k[bi[c]]);
          ClaimKey cur = ref.load(std::memory_order_relaxed);
          while (key > cur && !ref.compare_exchange_weak(cur, key, std::memory_order_relaxed)) {
          }
        }
      }
    };
    if (tasks <= 1) {
      worker(0, 1);
    } else {
      at::parallel_for(0, tasks, 1, worker);
    }
  }

  int64_t* out_m = matched.data_ptr<int64_t>();
  float* out_v = iou.data_ptr<float>();
  at::parallel_for(0, N * R, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (keys[i] == 0) {
        out_m[i] = -1;
        out_v[i] = 0.f;
      } else {
        claim_unpack(keys[i], out_m + i, out_v + i);
      }
    }
  });
  return {matched, iou};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("topn_iou_match", &topn_iou_match_cpu);
}

}  // namespace semianchor
