// Shared pieces of the IoU matching kernels (semianchor::max_iou_match and topn_iou_match): the
// IoU of detectron2's pairwise_iou, the per-anchor claim keys, and the visit of the anchors that
// can overlap one GT (a window per level and anchor shape on grid levels, every anchor elsewhere).
// Used by the CPU kernels (host compiler) and the CUDA kernels (nvcc); the plan builder is
// host-only.
//
// Semantics: semianchor/layers/max_iou_match.py.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "box_math.h"
#include "checks.h"

namespace semianchor {

// ----------------------------------------------------------------------------------------------
// IoU exactly as detectron2.structures.pairwise_iou on float32 boxes:
//   inter > 0 ? inter / ((area_gt + area_anchor) - inter) : 0.
// inter > 0 implies both boxes have positive width and height, so the unclamped detectron2 areas
// equal box_area's clamped ones there. (semianchor's pairwise_iou_giou guards on union > 0
// instead; the two agree on every finite input whose areas do not overflow.)
SA_HD float iou_d2(const float* a, const float* g, float area_g) {
  const float iw = clamp0(fsub(fmin2(a[2], g[2]), fmax2(a[0], g[0])));
  const float ih = clamp0(fsub(fmin2(a[3], g[3]), fmax2(a[1], g[1])));
  const float inter = fmul(iw, ih);
  if (!(inter > 0.f)) return 0.f;
  const float area_a = fmul(fsub(a[2], a[0]), fsub(a[3], a[1]));
  return inter / fsub(fadd(area_g, area_a), inter);
}

// ----------------------------------------------------------------------------------------------
// Per-anchor claim keys (64 bit): (IoU bits << 32) | (0xFFFFFFFF - m). IoUs are > 0 when a key is
// written, and the bits of non-negative floats order like the floats, so the maximum key is the
// highest IoU and, among equal IoUs, the lowest GT index, whatever the order of the writes. Key 0
// means "no claim".
using ClaimKey = unsigned long long;

SA_HD ClaimKey claim_key(float iou, int64_t m) {
  uint32_t u;
#if defined(__CUDA_ARCH__)
  u = __float_as_uint(iou);
#else
  std::memcpy(&u, &iou, sizeof(u));
#endif
  return (static_cast<ClaimKey>(u) << 32) |
         static_cast<ClaimKey>(0xFFFFFFFFu - static_cast<uint32_t>(m));
}

SA_HD void claim_unpack(ClaimKey k, int64_t* m, float* iou) {
  const uint32_t u = static_cast<uint32_t>(k >> 32);
#if defined(__CUDA_ARCH__)
  *iou = __uint_as_float(u);
#else
  std::memcpy(iou, &u, sizeof(u));
#endif
  *m = static_cast<int64_t>(0xFFFFFFFFu - static_cast<uint32_t>(k & 0xFFFFFFFFull));
}

// ----------------------------------------------------------------------------------------------
// Visit plan. Per (anchor set, level) kPlanStride doubles:
//   [begin, R_l, W, H, A, ox, oy, sx, sy, ext_offset]
// W == 0: no grid, every anchor of the level is visited. Else anchor (i, j, a) of the level is
// begin + (j * W + i) * A + a, with ideal centre (ox + i * sx, oy + j * sy); ext[ext_offset + 4a
// ..] holds, for shape a, the largest extents of its anchors around their ideal centres over the
// whole level: (max ideal_x - x1, max x2 - ideal_x, max ideal_y - y1, max y2 - ideal_y). An anchor
// of shape a overlaps the GT (intersection > 0) only if x1 < gx2 and x2 > gx1, hence only if gx1 -
// ext_r < ideal_x < gx2 + ext_l (same for y): the window. These bounds are measured, not assumed,
// so they hold for any anchors laid out in that index order, whatever their deviation from the
// ideal grid; the window is widened by one cell on each side against double rounding (the rounding
// is ~1e-12 cells; extra anchors cost time, never correctness: every visited IoU is computed
// exactly and IoU 0 is dropped).
constexpr int kPlanStride = 10;

SA_HD void window_1d(double lo_coord, double hi_coord, double o, double s, int64_t n, int64_t* i0,
                     int64_t* i1) {
  // The strict ideal-index range (lo, hi), widened to [floor(lo), ceil(hi)] and clipped to the
  // level; empty only when it misses the level by more than a cell (so never by rounding).
  const double lo = (lo_coord - o) / s, hi = (hi_coord - o) / s;
  if (!(hi > -1.0) || !(lo < double(n))) {  // also NaN
    *i0 = 0;
    *i1 = -1;
    return;
  }
  *i0 = lo <= 0.0 ? 0 : static_cast<int64_t>(floor(lo));
  *i1 = hi >= double(n - 1) ? n - 1 : static_cast<int64_t>(ceil(hi));
  if (*i1 < 0) *i1 = 0;  // hi in (-1, 0]
}

// Calls f(r, iou) for every anchor r of the set with IoU(anchor r, g) > 0 (some anchors may be
// visited that do not overlap; they are filtered here). `start`/`step` split the visits between
// cooperating threads (CUDA block); the CPU passes 0 / 1.
template <class F>
SA_HD void visit_gt_overlaps(const double* plan, int64_t L, const double* ext, const float* anchors,
                             const float* g, int64_t start, int64_t step, F&& f) {
  // A GT of zero width or height overlaps nothing (intersection 0 with every anchor).
  if (!(g[2] > g[0] && g[3] > g[1])) return;
  const float area_g = fmul(fsub(g[2], g[0]), fsub(g[3], g[1]));
  for (int64_t l = 0; l < L; ++l) {
    const double* p = plan + kPlanStride * l;
    const int64_t begin = static_cast<int64_t>(p[0]), R_l = static_cast<int64_t>(p[1]);
    const int64_t W = static_cast<int64_t>(p[2]), H = static_cast<int64_t>(p[3]);
    if (R_l <= 0) continue;
    if (W <= 0) {
      for (int64_t t = start; t < R_l; t += step) {
        const int64_t r = begin + t;
        const float v = iou_d2(anchors + 4 * r, g, area_g);
        if (v > 0.f) f(r, v);
      }
      continue;
    }
    const int64_t A = static_cast<int64_t>(p[4]);
    const double ox = p[5], oy = p[6], sx = p[7], sy = p[8];
    const double* e = ext + static_cast<int64_t>(p[9]);
    for (int64_t a = 0; a < A; ++a, e += 4) {
      int64_t i0, i1, j0, j1;
      window_1d(double(g[0]) - e[1], double(g[2]) + e[0], ox, sx, W, &i0, &i1);
      if (i1 < i0) continue;
      window_1d(double(g[1]) - e[3], double(g[3]) + e[2], oy, sy, H, &j0, &j1);
      if (j1 < j0) continue;
      if (step == 1 && start == 0) {  // serial visitor: plain nested loops (no division per anchor)
        for (int64_t j = j0; j <= j1; ++j) {
          for (int64_t i = i0; i <= i1; ++i) {
            const int64_t r = begin + (j * W + i) * A + a;
            const float v = iou_d2(anchors + 4 * r, g, area_g);
            if (v > 0.f) f(r, v);
          }
        }
        continue;
      }
      const int64_t w = i1 - i0 + 1, cells = w * (j1 - j0 + 1);
      for (int64_t t = start; t < cells; t += step) {
        const int64_t i = i0 + t % w, j = j0 + t / w;
        const int64_t r = begin + (j * W + i) * A + a;
        const float v = iou_d2(anchors + 4 * r, g, area_g);
        if (v > 0.f) f(r, v);
      }
    }
  }
}

// Label of detectron2's Matcher for a best IoU v: labels[k] with k = #{thresholds t : t <= v}
// (thresholds sorted, as float32 like torch's comparison of a float32 tensor with a Python float).
SA_HD int8_t matcher_label(float v, const float* thr, int64_t T, const int8_t* labels) {
  int64_t k = 0;
  while (k < T && thr[k] <= v) ++k;
  return labels[k];
}

// ----------------------------------------------------------------------------------------------
// Host-only plan construction.

// Anchor shapes per location: the leading anchors of the level whose centres coincide with the
// first one's up to float rounding. Only a guess: the grid test and the measured extents decide.
inline int64_t guess_anchors_per_location(const float* centers, int64_t R_l) {
  if (R_l <= 0) return 1;
  const double x0 = centers[0], y0 = centers[1];
  const double tol = 1e-3 * (1.0 + std::fabs(x0) + std::fabs(y0));
  int64_t A = 1;
  while (A < R_l && std::fabs(centers[2 * A] - x0) <= tol &&
         std::fabs(centers[2 * A + 1] - y0) <= tol) {
    ++A;
  }
  return R_l % A == 0 ? A : 1;
}

// Level boundaries when the caller gave none: detectron2 concatenates levels that each run
// row-major from the top-left, so a level ends where the centre's y decreases (by more than the
// float rounding that separates the A anchors of one location). Any split is correct (each piece
// is a grid or scanned exhaustively); this one finds detectron2's levels.
inline std::vector<int64_t> split_levels(const float* centers, int64_t R) {
  std::vector<int64_t> out;
  int64_t b = 0;
  for (int64_t r = 1; r < R; ++r) {
    const double y = centers[2 * r + 1], prev = centers[2 * r - 1];
    if (y < prev - 1e-3 * (1.0 + std::fabs(prev))) {
      out.push_back(r - b);
      b = r;
    }
  }
  if (R > 0) out.push_back(R - b);
  return out;
}

// Appends the plan of one anchor set (R anchors, `levels` given or inferred) to plan / ext,
// padded to L levels (L >= levels.size()).
inline void build_plan(const float* anchors, int64_t R, const std::vector<int64_t>& levels,
                       int64_t L, bool use_grid, std::vector<double>& plan,
                       std::vector<double>& ext) {
  std::vector<float> centers(2 * R);
  for (int64_t r = 0; r < R; ++r) {
    centers[2 * r] = center_x(anchors + 4 * r);
    centers[2 * r + 1] = center_y(anchors + 4 * r);
  }
  int64_t begin = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t R_l = l < static_cast<int64_t>(levels.size()) ? levels[l] : 0;
    double p[kPlanStride] = {double(begin), double(R_l), 0, 0, 1, 0, 0, 1, 1, 0};
    double g[7] = {0, 0, 1, 1, 0, 0, 0};
    int64_t A = 1;
    if (use_grid && R_l > 0) {
      A = guess_anchors_per_location(centers.data() + 2 * begin, R_l);
      infer_level_grid(centers.data() + 2 * begin, R_l, A, g);
    }
    const int64_t W = static_cast<int64_t>(g[4]), H = static_cast<int64_t>(g[5]);
    if (W > 0) {
      p[2] = double(W), p[3] = double(H), p[4] = double(A);
      p[5] = g[0], p[6] = g[1], p[7] = g[2], p[8] = g[3];
      p[9] = double(ext.size());
      const size_t e0 = ext.size();
      ext.resize(e0 + 4 * A, -INFINITY);
      for (int64_t j = 0; j < H; ++j) {
        const double iy = g[1] + double(j) * g[3];
        for (int64_t i = 0; i < W; ++i) {
          const double ix = g[0] + double(i) * g[2];
          const float* b = anchors + 4 * (begin + (j * W + i) * A);
          for (int64_t a = 0; a < A; ++a, b += 4) {
            double* e = ext.data() + e0 + 4 * a;
            e[0] = std::max(e[0], ix - double(b[0]));
            e[1] = std::max(e[1], double(b[2]) - ix);
            e[2] = std::max(e[2], iy - double(b[1]));
            e[3] = std::max(e[3], double(b[3]) - iy);
          }
        }
      }
    }
    plan.insert(plan.end(), p, p + kPlanStride);
    begin += R_l;
  }
}

// Plans of S anchor sets (S = 1 for shared (R, 4) anchors, N for per-image (N, R, 4) ones), each
// padded to the same number of levels L (returned). `given`: num_anchors_per_level, or empty.
inline int64_t build_plans(const float* anchors, int64_t S, int64_t R, at::IntArrayRef given,
                           bool use_grid, std::vector<double>& plan, std::vector<double>& ext) {
  std::vector<std::vector<int64_t>> levels(S);
  int64_t L = 0;
  for (int64_t s = 0; s < S; ++s) {
    if (!given.empty()) {
      levels[s].assign(given.begin(), given.end());
    } else if (use_grid) {
      std::vector<float> c(2 * R);
      const float* a = anchors + 4 * R * s;
      for (int64_t r = 0; r < R; ++r) {
        c[2 * r] = center_x(a + 4 * r);
        c[2 * r + 1] = center_y(a + 4 * r);
      }
      levels[s] = split_levels(c.data(), R);
    } else {
      levels[s] = {R};
    }
    L = std::max<int64_t>(L, static_cast<int64_t>(levels[s].size()));
  }
  for (int64_t s = 0; s < S; ++s) {
    build_plan(anchors + 4 * R * s, R, levels[s], L, use_grid, plan, ext);
  }
  if (ext.empty()) ext.push_back(0.0);  // never read; keeps the device copy non-empty
  return L;
}

// ----------------------------------------------------------------------------------------------
// Argument checks shared by the CPU and CUDA kernels. Returns S, the number of anchor sets (1 for
// shared (R, 4) anchors, N for per-image (N, R, 4) anchors).
inline int64_t check_iou_match(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                               const at::Tensor& gt_counts, at::IntArrayRef levels) {
  const auto device = gt_boxes.device();
  check_gts(gt_boxes, gt_counts, device);
  check_tensor(anchors, "anchors", at::kFloat, device);
  const int64_t N = gt_boxes.size(0);
  TORCH_CHECK((anchors.dim() == 2 && anchors.size(1) == 4) ||
                  (anchors.dim() == 3 && anchors.size(0) == N && anchors.size(2) == 4),
              "anchors must have shape (R, 4) or (N, R, 4) with N = gt_boxes.size(0) = ", N,
              ", got ", anchors.sizes());
  TORCH_CHECK(gt_boxes.size(1) < (int64_t(1) << 32) - 1, "at most 2^32 - 2 GTs per image");
  const int64_t R = anchors.size(-2);
  if (!levels.empty()) {
    int64_t total = 0;
    for (int64_t n : levels) {
      TORCH_CHECK(n >= 0, "num_anchors_per_level must be non-negative, got ", levels);
      total += n;
    }
    TORCH_CHECK(total == R, "num_anchors_per_level must sum to R = ", R, ", got ", levels, " (sum ",
                total, ")");
  }
  return anchors.dim() == 3 ? N : 1;
}

// detectron2 Matcher's asserts: thresholds sorted with thresholds[0] > 0, labels in {-1, 0, 1},
// one more label than thresholds. Returns the thresholds as float32 (torch compares the float32
// IoUs with Python floats converted to float32).
inline std::vector<float> check_matcher(at::ArrayRef<double> thresholds, at::IntArrayRef labels) {
  TORCH_CHECK(!thresholds.empty(), "thresholds must not be empty");
  TORCH_CHECK(thresholds[0] > 0.0,
              "thresholds[0] must be > 0 (IoU 0 is below every threshold), got ", thresholds);
  for (size_t i = 1; i < thresholds.size(); ++i) {
    TORCH_CHECK(thresholds[i - 1] <= thresholds[i], "thresholds must be sorted, got ", thresholds);
  }
  TORCH_CHECK(labels.size() == thresholds.size() + 1,
              "labels must have len(thresholds) + 1 = ", thresholds.size() + 1, " values, got ",
              labels);
  for (int64_t l : labels) {
    TORCH_CHECK(l == -1 || l == 0 || l == 1, "labels must be -1, 0 or 1, got ", labels);
  }
  std::vector<float> out(thresholds.size());
  for (size_t i = 0; i < thresholds.size(); ++i) out[i] = static_cast<float>(thresholds[i]);
  return out;
}

}  // namespace semianchor
