// CPU kernel of semianchor::iou_after_regression: one pass per anchor, parallel over (image,
// anchor). Memory: the outputs plus the per-image GT areas; no N x R x M intermediate.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <vector>

#include "box_math.h"
#include "checks.h"

namespace semianchor {
namespace {

constexpr int64_t kBlock = 256;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SA_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SA_TARGET_CLONES
#endif

// out[i] = float(exp(double(in[i]))): the value exp_via_double (box_math.h) computes, in a
// branch-free loop the compiler vectorises (libm's exp is scalar and dominated the decode).
// exp(x) = 2^k * exp(r), r = x - k*ln2 in [-ln2/2, ln2/2] (Cody-Waite split of ln2), exp(r) by its
// degree-12 Taylor polynomial (truncation < 2e-16 relative), 2^k built from the exponent bits in
// two halves so subnormal results stay exact. The double result is within ~2 ulp of exp(x), so its
// rounding to float equals the correctly rounded float except within ~1e-16 of a rounding midpoint
// (checked equal to glibc's exp on 2e7 random and edge-case inputs).
SA_TARGET_CLONES void exp_block(const float* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float xf = in[i];
    double x = xf;
    x = x < -745.0 ? -745.0 : (x > 100.0 ? 100.0 : x);
    const double shifter = 0x1.8p52;  // adding it rounds to an integer held in the low bits
    const double kd = x * 1.4426950408889634 + shifter;
    const double k = kd - shifter;
    const double r = (x - k * 0x1.62e42fee00000p-1) - k * 0x1.a39ef35793c76p-33;
    double q = 1.0 / 479001600.0;
    q = q * r + 1.0 / 39916800.0;
    q = q * r + 1.0 / 3628800.0;
    q = q * r + 1.0 / 362880.0;
    q = q * r + 1.0 / 40320.0;
    q = q * r + 1.0 / 5040.0;
    q = q * r + 1.0 / 720.0;
    q = q * r + 1.0 / 120.0;
    q = q * r + 1.0 / 24.0;
    q = q * r + 1.0 / 6.0;
    q = q * r + 0.5;
    q = q * r + 1.0;
    q = q * r + 1.0;
    const int64_t ki = std::bit_cast<int64_t>(kd) - std::bit_cast<int64_t>(shifter);
    const int64_t k1 = ki >> 1, k2 = ki - k1;
    const double s1 = std::bit_cast<double>((k1 + 1023) << 52);
    const double s2 = std::bit_cast<double>((k2 + 1023) << 52);
    const float res = static_cast<float>((q * s1) * s2);
    out[i] = xf < -745.f ? 0.f : (xf != xf ? xf : res);  // exp(-inf) = 0, NaN stays NaN
  }
}

// IoUs of one decoded box with a block of GTs stored as structure-of-arrays; the loop has no
// branch nor conditional division, so the compiler vectorises it. Same operations, in the same
// order, as iou_with_areas (box_math.h), hence bit-identical values. Compiled twice (AVX2 and
// baseline x86-64), picked at load time; no FMA either way (-ffp-contract=off).
SA_TARGET_CLONES void iou_block(const float* p, float area_p, const float* gx1, const float* gy1,
                                const float* gx2, const float* gy2, const float* garea, int64_t n,
                                float* out) {
  for (int64_t k = 0; k < n; ++k) {
    const float iw = clamp0(fsub(fmin2(p[2], gx2[k]), fmax2(p[0], gx1[k])));
    const float ih = clamp0(fsub(fmin2(p[3], gy2[k]), fmax2(p[1], gy1[k])));
    const float inter = fmul(iw, ih);
    const float uni = fsub(fadd(area_p, garea[k]), inter);
    const float q = inter / (uni > 0.f ? uni : 1.f);
    out[k] = uni > 0.f ? q : 0.f;
  }
}

// A block of anchors as structure-of-arrays: inputs gathered by the caller, outputs of the two
// branch-free (vectorised) passes below. Same operations, same order as decode_box_from,
// iou_with_areas and giou_from_iou in box_math.h, so the values are bit-identical.
struct Block {
  float ax1[kBlock], ay1[kBlock], ax2[kBlock], ay2[kBlock];
  float d0[kBlock], d1[kBlock], d2[kBlock], d3[kBlock], s[kBlock], ew[kBlock], eh[kBlock];
  float px1[kBlock], py1[kBlock], px2[kBlock], py2[kBlock];
  float gx1[kBlock], gy1[kBlock], gx2[kBlock], gy2[kBlock], garea[kBlock];
  float iou[kBlock], giou[kBlock];
};

SA_TARGET_CLONES void decode_pass(Block& t, int64_t n, const DecodeParams& p) {
  if (p.coder == kDeltas) {
    for (int64_t k = 0; k < n; ++k) {
      const float w = t.ax2[k] - t.ax1[k];
      const float h = t.ay2[k] - t.ay1[k];
      const float cx = t.ax1[k] + 0.5f * w;
      const float cy = t.ay1[k] + 0.5f * h;
      const float pcx = (t.d0[k] / p.wx) * w + cx;
      const float pcy = (t.d1[k] / p.wy) * h + cy;
      const float pw = t.ew[k] * w;
      const float ph = t.eh[k] * h;
      t.px1[k] = pcx - 0.5f * pw;
      t.py1[k] = pcy - 0.5f * ph;
      t.px2[k] = pcx + 0.5f * pw;
      t.py2[k] = pcy + 0.5f * ph;
    }
  } else {
    for (int64_t k = 0; k < n; ++k) {
      const float cx = (t.ax1[k] + t.ax2[k]) * 0.5f;
      const float cy = (t.ay1[k] + t.ay2[k]) * 0.5f;
      t.px1[k] = cx - t.d0[k] * t.s[k];
      t.py1[k] = cy - t.d1[k] * t.s[k];
      t.px2[k] = cx + t.d2[k] * t.s[k];
      t.py2[k] = cy + t.d3[k] * t.s[k];
    }
  }
}

SA_TARGET_CLONES void iou_pass(Block& t, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    const float area_p = clamp0(t.px2[k] - t.px1[k]) * clamp0(t.py2[k] - t.py1[k]);
    const float iw = clamp0(fmin2(t.px2[k], t.gx2[k]) - fmax2(t.px1[k], t.gx1[k]));
    const float ih = clamp0(fmin2(t.py2[k], t.gy2[k]) - fmax2(t.py1[k], t.gy1[k]));
    const float inter = iw * ih;
    const float uni = (area_p + t.garea[k]) - inter;
    const float q = inter / (uni > 0.f ? uni : 1.f);
    const float v = uni > 0.f ? q : 0.f;
    const float cw = clamp0(fmax2(t.px2[k], t.gx2[k]) - fmin2(t.px1[k], t.gx1[k]));
    const float ch = clamp0(fmax2(t.py2[k], t.gy2[k]) - fmin2(t.py1[k], t.gy1[k]));
    const float area_c = cw * ch;
    const float qc = (area_c - uni) / (area_c > 0.f ? area_c : 1.f);
    t.iou[k] = v;
    t.giou[k] = area_c > 0.f ? v - qc : v;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iou_after_regression_cpu(
    const at::Tensor& anchors, const at::Tensor& regression, const at::Tensor& gt_boxes,
    const at::Tensor& gt_counts, const std::optional<at::Tensor>& matched_gt,
    c10::string_view box_coder, at::ArrayRef<double> weights, double scale_clamp,
    const std::optional<at::Tensor>& ltrb_scale) {
  check_iou_after_regression(anchors, regression, gt_boxes, gt_counts, matched_gt, weights,
                             ltrb_scale);
  const DecodeParams p{parse_box_coder(box_coder),     static_cast<float>(weights[0]),
                       static_cast<float>(weights[1]), static_cast<float>(weights[2]),
                       static_cast<float>(weights[3]), static_cast<float>(scale_clamp)};
  const int64_t N = regression.size(0), R = regression.size(1), M = gt_boxes.size(1);
  at::Tensor anc, gts, cnt;
  std::tie(anc, gts, cnt) = contiguous_checked_inputs(anchors, gt_boxes, gt_counts);
  const auto reg = regression.contiguous();
  const auto mat = matched_gt.has_value() ? matched_gt->contiguous() : at::Tensor();
  const auto scl = ltrb_scale.has_value() ? ltrb_scale->contiguous() : at::Tensor();
  if (mat.defined()) check_matched_gt(mat, cnt);

  auto pred = at::empty({N, R, 4}, regression.options());
  auto iou = at::empty({N, R}, regression.options());
  auto giou = at::empty({N, R}, regression.options());
  auto index = at::empty({N, R}, regression.options().dtype(at::kLong));
  auto areas = at::empty({N, M}, regression.options());

  const float* anc_p = anc.data_ptr<float>();
  const float* reg_p = reg.data_ptr<float>();
  const float* gts_p = gts.data_ptr<float>();
  const int64_t* cnt_p = cnt.data_ptr<int64_t>();
  const int64_t* mat_p = mat.defined() ? mat.data_ptr<int64_t>() : nullptr;
  const float* scl_p = scl.defined() ? scl.data_ptr<float>() : nullptr;
  float* areas_p = areas.data_ptr<float>();
  for (int64_t i = 0; i < N * M; ++i) areas_p[i] = box_area(gts_p + 4 * i);
  // GT coordinates as structure-of-arrays (N, 4, M) for the vectorised max-over-GTs loop.
  std::vector<float> soa(mat_p == nullptr ? 4 * N * M : 0);
  for (int64_t i = 0; i < static_cast<int64_t>(soa.size()) / 4; ++i) {
    const int64_t n = i / M, m = i % M;
    for (int64_t c = 0; c < 4; ++c) soa[(n * 4 + c) * M + m] = gts_p[4 * i + c];
  }

  const bool per_image_anchors = anchors.dim() == 3;
  float* pred_p = pred.data_ptr<float>();
  float* iou_p = iou.data_ptr<float>();
  float* giou_p = giou.data_ptr<float>();
  int64_t* index_p = index.data_ptr<int64_t>();
  const int64_t work = mat_p != nullptr ? 1 : (M > 0 ? M : 1);
  const int64_t grain = std::max<int64_t>(1, 32768 / work);
  at::parallel_for(0, N * R, grain, [&](int64_t begin, int64_t end) {
    float buf[kBlock];
    float log_scale[2 * kBlock], scale[2 * kBlock];
    int64_t gt_of[kBlock];
    bool finite_of[kBlock];
    Block t;
    const bool deltas = p.coder == kDeltas;
    for (int64_t b0 = begin; b0 < end; b0 += kBlock) {
      const int64_t nb = std::min(kBlock, end - b0);
      // 1. gather the block (scalar), exp(dw), exp(dh) and the decode (vectorised)
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t e = b0 + k, r = e % R;
        const float* a = anc_p + 4 * (per_image_anchors ? e : r);
        const float* d = reg_p + 4 * e;
        t.ax1[k] = a[0], t.ay1[k] = a[1], t.ax2[k] = a[2], t.ay2[k] = a[3];
        t.d0[k] = d[0], t.d1[k] = d[1], t.d2[k] = d[2], t.d3[k] = d[3];
        t.s[k] = scl_p != nullptr ? scl_p[r] : 1.f;
        if (deltas) clamped_log_scales(d, p, log_scale + 2 * k, log_scale + 2 * k + 1);
      }
      if (deltas) {
        exp_block(log_scale, scale, 2 * nb);
        for (int64_t k = 0; k < nb; ++k) t.ew[k] = scale[2 * k], t.eh[k] = scale[2 * k + 1];
      }
      decode_pass(t, nb, p);
      // 2. the GT of each anchor: given, or the argmax over the image's GTs (vectorised over GTs)
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t e = b0 + k, n = e / R;
        int64_t count = cnt_p[n];
        count = count < 0 ? 0 : (count > M ? M : count);
        const float b[4] = {t.px1[k], t.py1[k], t.px2[k], t.py2[k]};
        const bool finite =
            is_finite(b[0]) && is_finite(b[1]) && is_finite(b[2]) && is_finite(b[3]);
        int64_t g = mat_p != nullptr ? mat_p[e] : kMaxOverGts;
        if (g == kMaxOverGts) {
          if (count <= 0) {
            g = -1;
          } else {
            g = 0;  // non-finite box: every IoU is 0, the argmax is the lowest GT index
            if (finite) {
              const float area_b = box_area(b);
              const float* base = soa.data() + 4 * M * n;
              float best = 0.f;
              for (int64_t m0 = 0; m0 < count; m0 += kBlock) {
                const int64_t nm = std::min(kBlock, count - m0);
                iou_block(b, area_b, base + m0, base + M + m0, base + 2 * M + m0, base + 3 * M + m0,
                          areas_p + M * n + m0, nm, buf);
                for (int64_t j = 0; j < nm; ++j) {
                  if (buf[j] > best || m0 + j == 0) {  // strict '>': ties keep the lowest index
                    best = buf[j];
                    g = m0 + j;
                  }
                }
              }
            }
          }
        } else if (g < 0 || g >= count) {
          g = -1;
        }
        gt_of[k] = g;
        finite_of[k] = finite;
        const float* gb = g >= 0 ? gts_p + 4 * (M * n + g) : nullptr;
        t.gx1[k] = gb ? gb[0] : 0.f, t.gy1[k] = gb ? gb[1] : 0.f;
        t.gx2[k] = gb ? gb[2] : 0.f, t.gy2[k] = gb ? gb[3] : 0.f;
        t.garea[k] = gb ? areas_p[M * n + g] : 0.f;
      }
      // 3. IoU / GIoU with that GT (vectorised), then the outputs
      iou_pass(t, nb);
      for (int64_t k = 0; k < nb; ++k) {
        const int64_t e = b0 + k;
        float* b = pred_p + 4 * e;
        b[0] = t.px1[k], b[1] = t.py1[k], b[2] = t.px2[k], b[3] = t.py2[k];
        const int64_t g = gt_of[k];
        index_p[e] = g;
        const bool ok = finite_of[k] && g >= 0;  // non-finite prediction: iou 0, giou -1
        iou_p[e] = ok ? t.iou[k] : 0.f;
        giou_p[e] = ok ? t.giou[k] : -1.f;
      }
    }
  });
  return {pred, iou, giou, index};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CPU, m) {
  m.impl("iou_after_regression", &iou_after_regression_cpu);
}

}  // namespace semianchor
