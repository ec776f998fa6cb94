// Shared host/device arithmetic of the semianchor kernels.
//
// Every function here is used by the CPU kernel (compiled by the host compiler) and by the CUDA
// kernel (compiled by nvcc), so both backends execute the same sequence of IEEE operations as the
// pure-PyTorch references in semianchor/layers. Two rules keep the three bit-identical:
//   * no fused multiply-add: nvcc contracts a*b+c into an FMA by default, so device code goes
//     through the explicitly rounded intrinsics below (the host build uses -ffp-contract=off);
//   * the order of operations matches the reference (e.g. union = (area_a + area_b) - inter).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define SA_HD __host__ __device__ __forceinline__
#else
#define SA_HD inline
#endif

namespace semianchor {

// ----------------------------------------------------------------------------------------------
// Correctly rounded, never-contracted arithmetic.
SA_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
SA_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
SA_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
SA_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SA_HD double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
SA_HD double dsub(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// min/max as torch.minimum/maximum on finite inputs; clamp0 as Tensor.clamp(min=0) (keeps NaN).
SA_HD float fmin2(float a, float b) {
  return b < a ? b : a;
}
SA_HD float fmax2(float a, float b) {
  return b > a ? b : a;
}
SA_HD float clamp0(float a) {
  return a < 0.f ? 0.f : a;
}
SA_HD bool is_finite(float a) {
  return fsub(a, a) == 0.f;  // inf - inf and NaN - NaN are NaN
}

// ----------------------------------------------------------------------------------------------
// Boxes are XYXY floats.
SA_HD float box_area(const float* b) {
  return fmul(clamp0(fsub(b[2], b[0])), clamp0(fsub(b[3], b[1])));
}
SA_HD float center_x(const float* b) {
  return fmul(fadd(b[0], b[2]), 0.5f);
}
SA_HD float center_y(const float* b) {
  return fmul(fadd(b[1], b[3]), 0.5f);
}

// IoU of a and b given their areas; 0 when the union is empty (two zero-area boxes).
SA_HD float iou_with_areas(const float* a, float area_a, const float* b, float area_b,
                           float* union_out) {
  const float iw = clamp0(fsub(fmin2(a[2], b[2]), fmax2(a[0], b[0])));
  const float ih = clamp0(fsub(fmin2(a[3], b[3]), fmax2(a[1], b[1])));
  const float inter = fmul(iw, ih);
  const float uni = fsub(fadd(area_a, area_b), inter);
  if (union_out != nullptr) *union_out = uni;
  return uni > 0.f ? inter / uni : 0.f;
}

// GIoU = IoU - (|C| - |A u B|) / |C| with C the smallest enclosing box; IoU when |C| == 0.
SA_HD float giou_from_iou(const float* a, const float* b, float iou, float uni) {
  const float cw = clamp0(fsub(fmax2(a[2], b[2]), fmin2(a[0], b[0])));
  const float ch = clamp0(fsub(fmax2(a[3], b[3]), fmin2(a[1], b[1])));
  const float area_c = fmul(cw, ch);
  return area_c > 0.f ? fsub(iou, fsub(area_c, uni) / area_c) : iou;
}

// ----------------------------------------------------------------------------------------------
// Box decoding (iou_after_regression).
enum BoxCoder : int { kDeltas = 0, kLtrb = 1 };

struct DecodeParams {
  int coder;
  float wx, wy, ww, wh;  // Box2BoxTransform weights
  float scale_clamp;     // clamp of dw, dh
};

// exp evaluated in double and rounded once to float: deterministic across libm implementations
// (glibc, SLEEF inside ATen, CUDA's libdevice), unlike float exp whose last bit differs.
SA_HD float exp_via_double(float x) {
  return static_cast<float>(exp(static_cast<double>(x)));
}

// "deltas": the scaled, clamped log-size deltas dw/ww, dh/wh whose exp decode_box_from needs.
SA_HD void clamped_log_scales(const float* d, const DecodeParams& p, float* dw, float* dh) {
  const float w = d[2] / p.ww;
  const float h = d[3] / p.wh;
  *dw = w > p.scale_clamp ? p.scale_clamp : w;  // NaN propagates, as torch.clamp
  *dh = h > p.scale_clamp ? p.scale_clamp : h;
}

// "deltas": detectron2 Box2BoxTransform.apply_deltas given exp(dw), exp(dh);
// "ltrb": (cx - l*s, cy - t*s, cx + r*s, cy + b*s) (exp_dw, exp_dh unused).
SA_HD void decode_box_from(const float* a, const float* d, float s, const DecodeParams& p,
                           float exp_dw, float exp_dh, float* out) {
  if (p.coder == kDeltas) {
    const float w = fsub(a[2], a[0]);
    const float h = fsub(a[3], a[1]);
    const float cx = fadd(a[0], fmul(0.5f, w));
    const float cy = fadd(a[1], fmul(0.5f, h));
    const float dx = d[0] / p.wx;
    const float dy = d[1] / p.wy;
    const float pcx = fadd(fmul(dx, w), cx);
    const float pcy = fadd(fmul(dy, h), cy);
    const float pw = fmul(exp_dw, w);
    const float ph = fmul(exp_dh, h);
    out[0] = fsub(pcx, fmul(0.5f, pw));
    out[1] = fsub(pcy, fmul(0.5f, ph));
    out[2] = fadd(pcx, fmul(0.5f, pw));
    out[3] = fadd(pcy, fmul(0.5f, ph));
  } else {
    const float cx = center_x(a);
    const float cy = center_y(a);
    out[0] = fsub(cx, fmul(d[0], s));
    out[1] = fsub(cy, fmul(d[1], s));
    out[2] = fadd(cx, fmul(d[2], s));
    out[3] = fadd(cy, fmul(d[3], s));
  }
}

SA_HD void decode_box(const float* a, const float* d, float s, const DecodeParams& p, float* out) {
  float ew = 1.f, eh = 1.f;
  if (p.coder == kDeltas) {
    float dw, dh;
    clamped_log_scales(d, p, &dw, &dh);
    ew = exp_via_double(dw);
    eh = exp_via_double(dh);
  }
  decode_box_from(a, d, s, p, ew, eh, out);
}

// IoU / GIoU of a decoded box with gts[matched] (matched >= 0), or the max over the `count` GTs
// (matched == kMaxOverGts). See semianchor/layers/iou_after_regression.py.
constexpr int64_t kMaxOverGts = -2;

SA_HD void iou_after_regression_from_pred(const float* pred, const float* gts,
                                          const float* gt_areas, int64_t count, int64_t matched,
                                          float* iou_out, float* giou_out, int64_t* index_out) {
  const bool finite =
      is_finite(pred[0]) && is_finite(pred[1]) && is_finite(pred[2]) && is_finite(pred[3]);
  int64_t g = matched;
  if (matched == kMaxOverGts) {
    if (count <= 0) {
      g = -1;
    } else if (!finite) {
      g = 0;  // every IoU is 0: the argmax is the lowest GT index
    } else {
      const float area_p = box_area(pred);
      float best = 0.f;
      g = 0;
      for (int64_t m = 0; m < count; ++m) {
        const float v = iou_with_areas(pred, area_p, gts + 4 * m, gt_areas[m], nullptr);
        if (m == 0 || v > best) {
          best = v;
          g = m;
        }
      }
    }
  } else if (matched < 0 || matched >= count) {
    g = -1;
  }
  *index_out = g;
  if (g < 0 || !finite) {
    *iou_out = 0.f;
    *giou_out = -1.f;
    return;
  }
  float uni;
  const float v = iou_with_areas(pred, box_area(pred), gts + 4 * g, gt_areas[g], &uni);
  *iou_out = v;
  *giou_out = giou_from_iou(pred, gts + 4 * g, v, uni);
}

// One anchor of one image: decode, then iou_after_regression_from_pred.
SA_HD void iou_after_regression_one(const float* anchor, const float* delta, float s,
                                    const DecodeParams& p, const float* gts, const float* gt_areas,
                                    int64_t count, int64_t matched, float* pred, float* iou_out,
                                    float* giou_out, int64_t* index_out) {
  decode_box(anchor, delta, s, p, pred);
  iou_after_regression_from_pred(pred, gts, gt_areas, count, matched, iou_out, giou_out, index_out);
}

// ----------------------------------------------------------------------------------------------
// ATSS candidate selection.
//
// Per-level grid description (host-computed by the Python wrapper, 7 doubles per level):
// ideal centre of location (i, j) = (ox + i*sx, oy + j*sy), anchor index inside the level
// = (j*W + i)*A + a; every actual (float) anchor centre lies within `delta` (per coordinate) of
// its ideal centre. W == 0 means "no grid": exhaustive scan of the level.
struct LevelGrid {
  double ox, oy, sx, sy;
  int64_t W, H;
  double delta;
};

SA_HD LevelGrid level_grid_from(const double* g) {
  LevelGrid r;
  r.ox = g[0];
  r.oy = g[1];
  r.sx = g[2];
  r.sy = g[3];
  r.W = static_cast<int64_t>(g[4]);
  r.H = static_cast<int64_t>(g[5]);
  r.delta = g[6];
  return r;
}

// Host-only (no SA_HD) recognition of detectron2's anchor layout for one level (`centers`: the
// level's (R_l, 2) float centres), the C++ twin of semianchor.layers.infer_level_grids: rows are
// detected where x stops increasing, (ox, oy, sx, sy) from the first / last location of the first
// column and row, delta = max |centre - ideal| over every anchor (so the bound is exact by
// construction). Writes W = 0 ("no grid") when the layout is not a grid within a quarter stride.
inline void infer_level_grid(const float* centers, int64_t R_l, int64_t A, double* out) {
  out[0] = out[1] = out[4] = out[5] = out[6] = 0.0;
  out[2] = out[3] = 1.0;
  if (R_l <= 0 || A <= 0 || R_l % A != 0) return;
  const int64_t P = R_l / A;
  auto cx = [&](int64_t p) { return static_cast<double>(centers[2 * p * A]); };
  auto cy = [&](int64_t p) { return static_cast<double>(centers[2 * p * A + 1]); };
  int64_t W = P;
  for (int64_t p = 1; p < P; ++p) {
    if (cx(p) <= cx(p - 1)) {
      W = p;
      break;
    }
  }
  if (P % W != 0) return;
  const int64_t H = P / W;
  const double ox = cx(0), oy = cy(0);
  const double sx = W > 1 ? (cx(W - 1) - ox) / double(W - 1) : 1.0;
  const double sy = H > 1 ? (cy((H - 1) * W) - oy) / double(H - 1) : 1.0;
  if (!(sx > 0.0 && sy > 0.0)) return;
  const double limit = 0.25 * std::min(W > 1 ? sx : INFINITY, H > 1 ? sy : INFINITY);
  double delta = 0.0;
  for (int64_t j = 0; j < H; ++j) {
    const double iy = oy + double(j) * sy;
    for (int64_t i = 0; i < W; ++i) {
      const double ix = ox + double(i) * sx;
      const float* c = centers + 2 * (j * W + i) * A;
      for (int64_t a = 0; a < A; ++a) {
        const double d =
            std::max(std::fabs(double(c[2 * a]) - ix), std::fabs(double(c[2 * a + 1]) - iy));
        delta = d > delta ? d : delta;
      }
    }
    if (!(delta <= limit)) return;  // also NaN
  }
  out[0] = ox, out[1] = oy, out[2] = sx, out[3] = sy;
  out[4] = double(W), out[5] = double(H), out[6] = delta;
}

// (d2, idx) < (bd, bi) lexicographically: nearer first, ties to the lowest anchor index.
SA_HD bool key_less(float d2, int64_t idx, float bd, int64_t bi) {
  return d2 < bd || (d2 == bd && idx < bi);
}

// Insert into the ascending buffer (bd, bi) of size n <= K, keeping the K smallest keys.
SA_HD void topk_insert(float* bd, int64_t* bi, int& n, int K, float d2, int64_t idx) {
  if (n == K) {
    if (!key_less(d2, idx, bd[K - 1], bi[K - 1])) return;
    --n;
  }
  int p = n;
  while (p > 0 && key_less(d2, idx, bd[p - 1], bi[p - 1])) {
    bd[p] = bd[p - 1];
    bi[p] = bi[p - 1];
    --p;
  }
  bd[p] = d2;
  bi[p] = idx;
  ++n;
}

SA_HD float center_dist2(const float* centers, int64_t r, float gcx, float gcy) {
  const float dx = fsub(centers[2 * r], gcx);
  const float dy = fsub(centers[2 * r + 1], gcy);
  return fadd(fmul(dx, dx), fmul(dy, dy));
}

SA_HD double dist_point_rect(double px, double py, double x0, double x1, double y0, double y1) {
  const double dx = px < x0 ? x0 - px : (px > x1 ? px - x1 : 0.0);
  const double dy = py < y0 ? y0 - py : (py > y1 ? py - y1 : 0.0);
  return sqrt(dx * dx + dy * dy);
}

// The K anchors of one level (global indices [begin, begin + R_l)) nearest to (gcx, gcy), in
// ascending (squared float distance, index) order, written to (bd, bi). `centers` is (R, 2).
//
// Grid path: start with the location nearest to the GT centre and add square rings of locations
// around it. Stop when the K-th best distance d_K found so far satisfies d_K + margin < B, where B
// is the distance from the GT centre to the nearest ideal centre outside the window (the union of
// four strips, each bounded by its rectangle) and margin covers the anchors' deviation from the
// ideal grid (sqrt(2) * delta) and float rounding of the distances (relative 1e-5, far above the
// ~3e-7 actually possible). Any anchor outside the window is then strictly farther than d_K, so
// the window holds the exact top-K including ties. At worst the window grows to the whole level.
SA_HD void select_level_topk(const float* centers, int64_t begin, int64_t R_l, int K,
                             const LevelGrid& g, int64_t A, float gcx, float gcy, float* bd,
                             int64_t* bi) {
  int n = 0;
  if (g.W <= 0) {
    for (int64_t r = 0; r < R_l; ++r) {
      topk_insert(bd, bi, n, K, center_dist2(centers, begin + r, gcx, gcy), begin + r);
    }
    return;
  }
  const double px = gcx, py = gcy;
  double u = (px - g.ox) / g.sx, v = (py - g.oy) / g.sy;
  u = u < 0.0 ? 0.0 : (u > double(g.W - 1) ? double(g.W - 1) : u);
  v = v < 0.0 ? 0.0 : (v > double(g.H - 1) ? double(g.H - 1) : v);
  const int64_t ic = static_cast<int64_t>(floor(u + 0.5));
  const int64_t jc = static_cast<int64_t>(floor(v + 0.5));
  const double x_lo = g.ox, x_hi = g.ox + double(g.W - 1) * g.sx;
  const double y_lo = g.oy, y_hi = g.oy + double(g.H - 1) * g.sy;
  int64_t pi0 = 0, pi1 = -1, pj0 = 0, pj1 = -1;  // previous window (empty)
  for (int64_t rad = 0;; ++rad) {
    const int64_t i0 = ic - rad > 0 ? ic - rad : 0;
    const int64_t i1 = ic + rad < g.W - 1 ? ic + rad : g.W - 1;
    const int64_t j0 = jc - rad > 0 ? jc - rad : 0;
    const int64_t j1 = jc + rad < g.H - 1 ? jc + rad : g.H - 1;
    for (int64_t j = j0; j <= j1; ++j) {
      const bool old_row = j >= pj0 && j <= pj1;
      for (int64_t i = i0; i <= i1; ++i) {
        if (old_row && i >= pi0 && i <= pi1) {
          i = pi1;  // skip the cells already scanned (loop increment moves past them)
          continue;
        }
        const int64_t loc = begin + (j * g.W + i) * A;
        for (int64_t a = 0; a < A; ++a) {
          topk_insert(bd, bi, n, K, center_dist2(centers, loc + a, gcx, gcy), loc + a);
        }
      }
    }
    pi0 = i0, pi1 = i1, pj0 = j0, pj1 = j1;
    if (i0 == 0 && i1 == g.W - 1 && j0 == 0 && j1 == g.H - 1) return;  // whole level scanned
    if (n < K) continue;
    double B = INFINITY;
    if (i0 > 0) {
      const double d = dist_point_rect(px, py, x_lo, g.ox + double(i0 - 1) * g.sx, y_lo, y_hi);
      B = d < B ? d : B;
    }
    if (i1 < g.W - 1) {
      const double d = dist_point_rect(px, py, g.ox + double(i1 + 1) * g.sx, x_hi, y_lo, y_hi);
      B = d < B ? d : B;
    }
    if (j0 > 0) {
      const double d = dist_point_rect(px, py, x_lo, x_hi, y_lo, g.oy + double(j0 - 1) * g.sy);
      B = d < B ? d : B;
    }
    if (j1 < g.H - 1) {
      const double d = dist_point_rect(px, py, x_lo, x_hi, g.oy + double(j1 + 1) * g.sy, y_hi);
      B = d < B ? d : B;
    }
    const double dk = sqrt(static_cast<double>(bd[K - 1]));
    const double margin = 1.5 * g.delta + 1e-5 * (dk + B) + 1e-6 * (fabs(px) + fabs(py) + 1.0);
    if (dk + margin < B) return;
  }
}

// ----------------------------------------------------------------------------------------------
// ATSS assignment.

// Threshold of one GT: mean + std (Bessel) of its valid candidates' scores, accumulated in double
// in candidate order (the reference accumulates in the same order, so the result is bit-equal).
// One candidate: std = 0. No candidate: 0.
SA_HD float atss_threshold(const int64_t* idx, const float* scores, int64_t C) {
  int64_t cnt = 0;
  double s = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    if (idx[c] >= 0) {
      s = dadd(s, static_cast<double>(scores[c]));
      ++cnt;
    }
  }
  if (cnt == 0) return 0.f;
  const double mean = s / static_cast<double>(cnt);
  double ss = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    if (idx[c] >= 0) {
      const double dv = dsub(static_cast<double>(scores[c]), mean);
      ss = dadd(ss, dmul(dv, dv));
    }
  }
  const double std = cnt >= 2 ? sqrt(ss / static_cast<double>(cnt - 1)) : 0.0;
  return static_cast<float>(dadd(mean, std));
}

// Anchor centre strictly inside the GT: min(cx - x1, cy - y1, x2 - cx, y2 - cy) > eps.
SA_HD bool center_inside(const float* anchor, const float* gt, float eps) {
  const float cx = center_x(anchor), cy = center_y(anchor);
  const float l = fsub(cx, gt[0]), t = fsub(cy, gt[1]);
  const float r = fsub(gt[2], cx), b = fsub(gt[3], cy);
  return fmin2(fmin2(l, t), fmin2(r, b)) > eps;
}

}  // namespace semianchor
