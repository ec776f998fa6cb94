// CPU kernel of semianchor::soft_nms: boxes grouped by class (stable, so each class keeps its
// boxes in index order), then Algorithm 1 per class, classes in parallel. Per class of n boxes the
// work is O(n * picks) <= O(n^2) and the memory O(n): the live boxes sit compacted in index order
// as structure-of-arrays; per pick a vectorised pass rescores them and a scalar pass drops those
// below min_score and finds the next pick (about 2x faster than one fused scalar pass).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <utility>
#include <vector>

#include "box_math.h"
#include "checks.h"
#include "soft_nms.h"

namespace semianchor {
namespace {

struct Kept {
  float score;
  int64_t index;
};

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SA_SOFT_NMS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SA_SOFT_NMS_CLONES
#endif

// The live boxes of one class as structure-of-arrays, compacted in ascending index order.
struct LiveBoxes {
  std::vector<float> x1, y1, x2, y2, area, score, out;
  std::vector<int64_t> index;
  explicit LiveBoxes(int64_t n) : x1(n), y1(n), x2(n), y2(n), area(n), score(n), out(n), index(n) {}
};

// out[r] = the score of live box r after the pick p (linear / hard), or its IoU with p (Gaussian,
// whose exp the caller applies). Branch-free so that the compiler vectorises it; the operations
// and their order are those of iou_with_areas and soft_nms_rescore, so the values are identical.
SA_SOFT_NMS_CLONES void rescore_block(const float* x1, const float* y1, const float* x2,
                                      const float* y2, const float* area, const float* score,
                                      int64_t n, const float* p, float pa, int method,
                                      float iou_threshold, float* out) {
  for (int64_t r = 0; r < n; ++r) {
    const float iw = clamp0(fmin2(p[2], x2[r]) - fmax2(p[0], x1[r]));
    const float ih = clamp0(fmin2(p[3], y2[r]) - fmax2(p[1], y1[r]));
    const float inter = iw * ih;
    const float uni = (pa + area[r]) - inter;
    const float q = inter / (uni > 0.f ? uni : 1.f);
    const float iou = uni > 0.f ? q : 0.f;
    const float decayed = method == kSoftNmsLinear ? score[r] * (1.f - iou) : 0.f;
    out[r] = method == kSoftNmsGaussian ? iou : (iou >= iou_threshold ? decayed : score[r]);
  }
}

// Algorithm 1 on the boxes `members` (ascending indices) of one class; appends at most `limit`
// (index, score) picks to `out`, in pick order (decreasing score, ties to the lowest index).
// Per pick: one vectorised pass computes the new scores, one scalar pass drops the picked box and
// the boxes below min_score (compaction in place keeps index order) and finds the next pick.
void soft_nms_one_class(const float* boxes, const float* scores, const float* areas,
                        const int64_t* members, int64_t n, int method, float iou_threshold,
                        float sigma, float min_score, int64_t limit, std::vector<Kept>& out) {
  LiveBoxes t(n);
  int64_t live = 0, best = -1;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = members[k];
    const float s = scores[j];
    if (s < min_score) continue;
    if (best < 0 || s > t.score[best]) best = live;  // '>': ties keep the lowest index
    const float* b = boxes + 4 * j;
    t.x1[live] = b[0], t.y1[live] = b[1], t.x2[live] = b[2], t.y2[live] = b[3];
    t.area[live] = areas[j];
    t.score[live] = s;
    t.index[live] = j;
    ++live;
  }
  for (int64_t picks = 0; picks < limit && live > 0; ++picks) {
    out.push_back({t.score[best], t.index[best]});
    const float p[4] = {t.x1[best], t.y1[best], t.x2[best], t.y2[best]};
    rescore_block(t.x1.data(), t.y1.data(), t.x2.data(), t.y2.data(), t.area.data(), t.score.data(),
                  live, p, t.area[best], method, iou_threshold, t.out.data());
    if (method == kSoftNmsGaussian) {
      for (int64_t r = 0; r < live; ++r) {
        t.out[r] = soft_nms_rescore(method, t.score[r], t.out[r], iou_threshold, sigma);
      }
    }
    const int64_t skip = best;
    int64_t w = 0;
    best = -1;
    for (int64_t r = 0; r < live; ++r) {
      const float s = t.out[r];
      if (r == skip || s < min_score) continue;
      if (w != r) {
        t.x1[w] = t.x1[r], t.y1[w] = t.y1[r], t.x2[w] = t.x2[r], t.y2[w] = t.y2[r];
        t.area[w] = t.area[r];
        t.index[w] = t.index[r];
      }
      t.score[w] = s;
      if (best < 0 || s > t.score[best]) best = w;
      ++w;
    }
    live = w;
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                                                const std::optional<at::Tensor>& classes,
                                                c10::string_view method, double iou_threshold,
                                                double sigma, double min_score, int64_t max_kept) {
  check_soft_nms(boxes, scores, classes, iou_threshold, sigma, min_score, max_kept);
  const int m = parse_soft_nms_method(method);
  const int64_t R = boxes.size(0);
  const auto b = boxes.contiguous();
  const auto s = scores.contiguous();
  const auto c = classes.has_value() ? classes->contiguous() : at::Tensor();
  check_finite_boxes(b, "boxes");
  const float* b_p = b.data_ptr<float>();
  const float* s_p = s.data_ptr<float>();
  for (int64_t i = 0; i < R; ++i) {
    TORCH_CHECK_VALUE(std::isfinite(s_p[i]), "scores holds non-finite values");
  }
  std::vector<float> areas(R);
  for (int64_t i = 0; i < R; ++i) areas[i] = box_area(b_p + 4 * i);

  // Boxes grouped by class, each class in ascending index order; segment bounds in `starts`.
  std::vector<int64_t> order(R);
  std::iota(order.begin(), order.end(), int64_t{0});
  std::vector<int64_t> starts{0};
  if (c.defined()) {
    const int64_t* c_p = c.data_ptr<int64_t>();
    std::stable_sort(order.begin(), order.end(),
                     [c_p](int64_t x, int64_t y) { return c_p[x] < c_p[y]; });
    for (int64_t k = 1; k < R; ++k) {
      if (c_p[order[k]] != c_p[order[k - 1]]) starts.push_back(k);
    }
  }
  starts.push_back(R);
  const int64_t S = R > 0 ? static_cast<int64_t>(starts.size()) - 1 : 0;
  const int64_t limit = max_kept < 0 ? R : max_kept;
  // All comparisons and products in float32, like the scores and IoUs themselves.
  const float thr_f = static_cast<float>(iou_threshold);
  const float sigma_f = static_cast<float>(sigma);
  const float min_f = static_cast<float>(min_score);

  std::vector<std::vector<Kept>> per_class(S);
  at::parallel_for(0, S, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      soft_nms_one_class(b_p, s_p, areas.data(), order.data() + starts[k],
                         starts[k + 1] - starts[k], m, thr_f, sigma_f, min_f, limit, per_class[k]);
    }
  });

  // Classes never interact and each one's picks have non-increasing scores, so sorting all picks
  // by (score desc, index asc) is the order of one global Algorithm 1 run over all classes.
  std::vector<Kept> all;
  for (auto& v : per_class) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end(), [](const Kept& x, const Kept& y) {
    return x.score > y.score || (x.score == y.score && x.index < y.index);
  });
  const int64_t P = std::min<int64_t>(static_cast<int64_t>(all.size()), limit);
  auto keep = at::empty({P}, boxes.options().dtype(at::kLong));
  auto kept_scores = at::empty({P}, scores.options());
  int64_t* k_p = keep.data_ptr<int64_t>();
  float* ks_p = kept_scores.data_ptr<float>();
  for (int64_t i = 0; i < P; ++i) {
    k_p[i] = all[i].index;
    ks_p[i] = all[i].score;
  }
  return {keep, kept_scores};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("soft_nms", &soft_nms_cpu);
}

}  // namespace semianchor
