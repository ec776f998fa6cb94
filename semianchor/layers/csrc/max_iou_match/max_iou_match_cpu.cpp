// CPU kernel of semianchor::max_iou_match: detectron2's pairwise_iou + Matcher without the M x R
// IoU matrix. Per (image, GT) the anchors that can overlap the GT are visited (iou_match.h: a
// window per level and anchor shape on grid levels, every anchor elsewhere); each positive IoU
// raises the anchor's claim key (highest IoU, then lowest GT index: torch's first-max argmax) and
// the GT's best IoU. A second visit marks the anchors that reach their GT's best IoU (the
// low-quality matches, ties included). Extra memory: the (N, R) keys and flags, O(N * M) per-GT
// state and the O(R) plan.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>
#include <vector>

#include "iou_match.h"

namespace semianchor {
namespace {

// Runs body(e) for e in [0, n) on torch's intra-op threads, handing out one index at a time: the
// cost of a GT varies by orders of magnitude with its size, so static chunks would leave a thread
// idle. Serial when there is a single task.
template <class F>
void parallel_over(int64_t n, F&& body) {
  const int64_t tasks = std::min<int64_t>(n, at::get_num_threads());
  if (tasks <= 1) {
    for (int64_t e = 0; e < n; ++e) body(e);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, tasks, 1, [&](int64_t, int64_t) {
    for (int64_t e; (e = next.fetch_add(1, std::memory_order_relaxed)) < n;) body(e);
  });
}

inline void claim_max(ClaimKey* slot, ClaimKey k) {
  std::atomic_ref<ClaimKey> ref(*slot);
  ClaimKey cur = ref.load(std::memory_order_relaxed);
  while (k > cur && !ref.compare_exchange_weak(cur, k, std::memory_order_relaxed)) {
  }
}

inline void set_flag(uint8_t* slot) {
  std::atomic_ref<uint8_t>(*slot).store(1, std::memory_order_relaxed);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> max_iou_match_cpu(
    const at::Tensor& anchors, const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
    at::IntArrayRef num_anchors_per_level, at::ArrayRef<double> thresholds, at::IntArrayRef labels,
    bool allow_low_quality_matches, bool grid) {
  const int64_t S = check_iou_match(anchors, gt_boxes, gt_counts, num_anchors_per_level);
  const std::vector<float> thr = check_matcher(thresholds, labels);
  std::vector<int8_t> lab(labels.begin(), labels.end());
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1), R = anchors.size(-2);
  const int64_t T = static_cast<int64_t>(thr.size());
  at::Tensor anc, gts, cnt;
  std::tie(anc, gts, cnt) = contiguous_checked_inputs(anchors, gt_boxes, gt_counts);
  auto matched = at::empty({N, R}, gt_counts.options());
  auto match_labels = at::empty({N, R}, gt_counts.options().dtype(at::kChar));
  auto max_iou = at::empty({N, R}, gt_boxes.options());
  if (N * R == 0) return {matched, match_labels, max_iou};

  const float* anc_p = anc.data_ptr<float>();
  const float* gts_p = gts.data_ptr<float>();
  const int64_t* cnt_p = cnt.data_ptr<int64_t>();
  std::vector<double> plan, ext;
  const int64_t L = build_plans(anc_p, S, R, num_anchors_per_level, grid, plan, ext);
  auto set_anchors = [&](int64_t n) { return anc_p + (S > 1 ? 4 * R * n : 0); };
  auto set_plan = [&](int64_t n) { return plan.data() + (S > 1 ? n : 0) * L * kPlanStride; };

  std::vector<ClaimKey> keys(N * R, 0);
  std::vector<float> gt_best(N * M, 0.f);
  std::vector<int64_t> gt_ties(N * M, 0), gt_first(N * M, -1);
  parallel_over(N * M, [&](int64_t e) {
    const int64_t n = e / M, m = e % M;
    if (m >= cnt_p[n]) return;
    ClaimKey* k = keys.data() + n * R;
    float best = 0.f;
    int64_t ties = 0, first = -1;
    visit_gt_overlaps(set_plan(n), L, ext.data(), set_anchors(n), gts_p + 4 * e, 0, 1,
                      [&](int64_t r, float v) {
                        claim_max(k + r, claim_key(v, m));
                        if (v > best) {
                          best = v, ties = 1, first = r;
                        } else if (v == best) {
                          ++ties;
                        }
                      });
    gt_best[e] = best, gt_ties[e] = ties, gt_first[e] = first;
  });

  // Low-quality matches (detectron2's set_low_quality_matches_): every anchor whose IoU with a GT
  // equals that GT's best IoU. A GT whose best IoU is 0 overlaps nothing, so that "best" is
  // reached by every anchor: the whole image becomes positive (detectron2 does the same).
  std::vector<uint8_t> lowq, all_positive(N, 0);
  if (allow_low_quality_matches) {
    lowq.assign(N * R, 0);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t m = 0; m < cnt_p[n]; ++m) {
        if (gt_best[n * M + m] == 0.f) all_positive[n] = 1;
      }
    }
    parallel_over(N * M, [&](int64_t e) {
      const int64_t n = e / M, m = e % M;
      if (m >= cnt_p[n] || all_positive[n]) return;
      uint8_t* q = lowq.data() + n * R;
      if (gt_ties[e] == 1) {  // a single anchor reaches the best IoU: no second visit
        set_flag(q + gt_first[e]);
        return;
      }
      const float best = gt_best[e];
      visit_gt_overlaps(set_plan(n), L, ext.data(), set_anchors(n), gts_p + 4 * e, 0, 1,
                        [&](int64_t r, float v) {
                          if (v == best) set_flag(q + r);
                        });
    });
  }

  int64_t* out_m = matched.data_ptr<int64_t>();
  int8_t* out_l = match_labels.data_ptr<int8_t>();
  float* out_v = max_iou.data_ptr<float>();
  at::parallel_for(0, N * R, 16384, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      int64_t m = 0;
      float v = 0.f;
      if (keys[i] != 0) claim_unpack(keys[i], &m, &v);  // else: all IoUs 0, argmax = GT 0
      out_m[i] = m;
      out_v[i] = v;
      int8_t label = matcher_label(v, thr.data(), T, lab.data());
      if (allow_low_quality_matches && (all_positive[i / R] || lowq[i])) label = 1;
      out_l[i] = label;
    }
  });
  return {matched, match_labels, max_iou};
}

at::Tensor iou_match_plan_cpu(const at::Tensor& anchors, at::IntArrayRef num_anchors_per_level,
                              bool grid) {
  TORCH_CHECK(anchors.scalar_type() == at::kFloat && (anchors.dim() == 2 || anchors.dim() == 3) &&
                  anchors.size(-1) == 4,
              "anchors must be float32 of shape (R, 4) or (S, R, 4), got ", anchors.scalar_type(),
              " ", anchors.sizes());
  const auto anc = anchors.contiguous();
  const int64_t S = anchors.dim() == 3 ? anchors.size(0) : 1, R = anchors.size(-2);
  if (!num_anchors_per_level.empty()) {
    int64_t total = 0;
    for (int64_t n : num_anchors_per_level) total += n;
    TORCH_CHECK(total == R, "num_anchors_per_level must sum to R = ", R);
  }
  std::vector<double> plan, ext;
  const int64_t L =
      build_plans(anc.data_ptr<float>(), S, R, num_anchors_per_level, grid, plan, ext);
  auto out = at::empty({S, L, kPlanStride}, anchors.options().dtype(at::kDouble));
  std::copy(plan.begin(), plan.end(), out.data_ptr<double>());
  return out;
}

std::tuple<at::Tensor, at::Tensor> iou_match_visit_cpu(const at::Tensor& anchors,
                                                       const at::Tensor& gt_box,
                                                       at::IntArrayRef num_anchors_per_level,
                                                       bool grid, int64_t start, int64_t step) {
  TORCH_CHECK(anchors.scalar_type() == at::kFloat && anchors.dim() == 2 && anchors.size(1) == 4,
              "anchors must be float32 of shape (R, 4), got ", anchors.sizes());
  TORCH_CHECK(gt_box.scalar_type() == at::kFloat && gt_box.numel() == 4,
              "gt_box must be 4 float32 values");
  TORCH_CHECK(step >= 1 && start >= 0 && start < step, "need 0 <= start < step");
  const auto anc = anchors.contiguous();
  const auto g = gt_box.contiguous();
  const int64_t R = anchors.size(0);
  std::vector<double> plan, ext;
  const int64_t L =
      build_plans(anc.data_ptr<float>(), 1, R, num_anchors_per_level, grid, plan, ext);
  std::vector<int64_t> idx;
  std::vector<float> val;
  visit_gt_overlaps(plan.data(), L, ext.data(), anc.data_ptr<float>(), g.data_ptr<float>(), start,
                    step, [&](int64_t r, float v) {
                      idx.push_back(r);
                      val.push_back(v);
                    });
  const int64_t n = static_cast<int64_t>(idx.size());
  auto out_i = at::empty({n}, anchors.options().dtype(at::kLong));
  auto out_v = at::empty({n}, anchors.options());
  std::copy(idx.begin(), idx.end(), out_i.data_ptr<int64_t>());
  std::copy(val.begin(), val.end(), out_v.data_ptr<float>());
  return {out_i, out_v};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("max_iou_match", &max_iou_match_cpu);
  m.impl("iou_match_plan", &iou_match_plan_cpu);
  m.impl("_iou_match_visit", &iou_match_visit_cpu);
}

}  // namespace semianchor
