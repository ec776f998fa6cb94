// Argument checks shared by the CPU and CUDA implementations. Every message names the argument;
// the Python wrappers raise friendlier ValueErrors before reaching these.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

namespace semianchor {

inline void check_tensor(const at::Tensor& t, const char* name, at::ScalarType dtype,
                         const at::Device& device) {
  TORCH_CHECK(t.scalar_type() == dtype, name, " must be ", dtype, ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == device, name, " must be on ", device, " like the other inputs, got ",
              t.device());
}

inline void check_boxes(const at::Tensor& t, const char* name, int64_t min_dim, int64_t max_dim) {
  TORCH_CHECK(t.dim() >= min_dim && t.dim() <= max_dim && t.size(-1) == 4, name,
              " must have shape (..., 4) with ", min_dim, " to ", max_dim, " dims, got ",
              t.sizes());
}

// gt_boxes (N, M, 4) float32, gt_counts (N,) int64 on `device`.
inline void check_gts(const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
                      const at::Device& device) {
  check_tensor(gt_boxes, "gt_boxes", at::kFloat, device);
  TORCH_CHECK(gt_boxes.dim() == 3 && gt_boxes.size(2) == 4,
              "gt_boxes must have shape (N, M, 4), got ", gt_boxes.sizes());
  check_tensor(gt_counts, "gt_counts", at::kLong, device);
  TORCH_CHECK(gt_counts.dim() == 1 && gt_counts.size(0) == gt_boxes.size(0),
              "gt_counts must have shape (N,) with N = gt_boxes.size(0) = ", gt_boxes.size(0),
              ", got ", gt_counts.sizes());
}

// ---- value checks of the CPU kernels (serial, O(size) and cheap; the Python wrappers run the same
// checks themselves for other devices and for the reference path). ValueError in Python.
inline void check_finite_boxes(const at::Tensor& boxes, const char* name) {
  const float* p = boxes.data_ptr<float>();
  for (int64_t i = 0, n = boxes.numel(); i < n; ++i) {
    TORCH_CHECK_VALUE(std::isfinite(p[i]), name, " holds non-finite coordinates");
  }
}

// gt_counts in [0, M]; the valid (non-padded) GTs finite. Contiguous CPU tensors.
inline void check_gt_values(const at::Tensor& gt_boxes, const at::Tensor& gt_counts) {
  const int64_t N = gt_boxes.size(0), M = gt_boxes.size(1);
  const int64_t* cnt = gt_counts.data_ptr<int64_t>();
  const float* g = gt_boxes.data_ptr<float>();
  for (int64_t n = 0; n < N; ++n) {
    TORCH_CHECK_VALUE(cnt[n] >= 0 && cnt[n] <= M, "gt_counts must lie in [0, M] = [0, ", M,
                      "], got ", cnt[n], " for image ", n);
    for (int64_t i = 4 * n * M, e = 4 * (n * M + cnt[n]); i < e; ++i) {
      TORCH_CHECK_VALUE(std::isfinite(g[i]),
                        "gt_boxes holds non-finite coordinates in valid (non-padded) GTs");
    }
  }
}

// The CPU kernels' value checks on their common inputs, after the shape checks: ``anchors``,
// ``gt_boxes`` and ``gt_counts`` made contiguous (returned in that order), the anchors finite and
// the valid GT rows finite with counts in [0, M].
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> contiguous_checked_inputs(
    const at::Tensor& anchors, const at::Tensor& gt_boxes, const at::Tensor& gt_counts) {
  auto anc = anchors.contiguous();
  auto gts = gt_boxes.contiguous();
  auto cnt = gt_counts.contiguous();
  check_finite_boxes(anc, "anchors");
  check_gt_values(gts, cnt);
  return {anc, gts, cnt};
}

inline void check_matched_gt(const at::Tensor& matched, const at::Tensor& gt_counts) {
  const int64_t N = matched.size(0), R = matched.size(1);
  const int64_t* m = matched.data_ptr<int64_t>();
  const int64_t* cnt = gt_counts.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t r = 0; r < R; ++r) {
      const int64_t v = m[n * R + r];
      TORCH_CHECK_VALUE(
          v >= -1 && v < cnt[n],
          "matched_gt must be -1 or a valid GT index (< gt_counts[n]) per image, got ", v,
          " for image ", n);
    }
  }
}

// cand_idx in [-1, R); scores finite where a valid GT uses the candidate.
inline void check_candidates(const at::Tensor& idx, const at::Tensor& scores,
                             const at::Tensor& gt_counts, int64_t R) {
  const int64_t N = idx.size(0), M = idx.size(1), C = idx.size(2);
  const int64_t* ip = idx.data_ptr<int64_t>();
  const float* sp = scores.data_ptr<float>();
  const int64_t* cnt = gt_counts.data_ptr<int64_t>();
  for (int64_t i = 0; i < N * M * C; ++i) {
    TORCH_CHECK_VALUE(ip[i] >= -1 && ip[i] < R,
                      "cand_idx must hold -1 or anchor indices in [0, R = ", R, "), got ", ip[i]);
    const int64_t e = i / C;
    TORCH_CHECK_VALUE(ip[i] < 0 || e % M >= cnt[e / M] || std::isfinite(sp[i]),
                      "cand_scores holds non-finite scores for valid candidates");
  }
}

inline int parse_box_coder(c10::string_view box_coder) {
  if (box_coder == "deltas") return 0;
  if (box_coder == "ltrb") return 1;
  TORCH_CHECK(false, "box_coder must be 'deltas' or 'ltrb', got '", std::string(box_coder), "'");
  return -1;
}

inline void check_iou_after_regression(const at::Tensor& anchors, const at::Tensor& regression,
                                       const at::Tensor& gt_boxes, const at::Tensor& gt_counts,
                                       const std::optional<at::Tensor>& matched_gt,
                                       at::ArrayRef<double> weights,
                                       const std::optional<at::Tensor>& ltrb_scale) {
  const auto device = regression.device();
  check_tensor(regression, "regression", at::kFloat, device);
  TORCH_CHECK(regression.dim() == 3 && regression.size(2) == 4,
              "regression must have shape (N, R, 4), got ", regression.sizes());
  const int64_t N = regression.size(0), R = regression.size(1);
  check_tensor(anchors, "anchors", at::kFloat, device);
  TORCH_CHECK((anchors.dim() == 2 && anchors.size(0) == R && anchors.size(1) == 4) ||
                  (anchors.dim() == 3 && anchors.size(0) == N && anchors.size(1) == R &&
                   anchors.size(2) == 4),
              "anchors must have shape (R, 4) or (N, R, 4) matching regression ",
              regression.sizes(), ", got ", anchors.sizes());
  check_gts(gt_boxes, gt_counts, device);
  TORCH_CHECK(gt_boxes.size(0) == N, "gt_boxes must have N = regression.size(0) = ", N,
              " images, got ", gt_boxes.size(0));
  if (matched_gt.has_value()) {
    check_tensor(*matched_gt, "matched_gt", at::kLong, device);
    TORCH_CHECK(matched_gt->dim() == 2 && matched_gt->size(0) == N && matched_gt->size(1) == R,
                "matched_gt must have shape (N, R) = (", N, ", ", R, "), got ",
                matched_gt->sizes());
  }
  TORCH_CHECK(weights.size() == 4, "weights must have 4 values, got ", weights.size());
  for (double w : weights) TORCH_CHECK(w != 0.0, "weights must be non-zero, got ", weights);
  if (ltrb_scale.has_value()) {
    check_tensor(*ltrb_scale, "ltrb_scale", at::kFloat, device);
    TORCH_CHECK(ltrb_scale->dim() == 1 && ltrb_scale->size(0) == R,
                "ltrb_scale must have shape (R,) = (", R, ",), got ", ltrb_scale->sizes());
  }
}

// Returns the per-level (begin, K_l) and the total candidate count C.
inline int64_t check_atss_candidates(const at::Tensor& anchors, const at::Tensor& gt_boxes,
                                     const at::Tensor& gt_counts,
                                     at::IntArrayRef num_anchors_per_level, int64_t k_per_level,
                                     int64_t anchors_per_location, at::ArrayRef<double> grid) {
  const auto device = anchors.device();
  check_tensor(anchors, "anchors", at::kFloat, device);
  TORCH_CHECK(anchors.dim() == 2 && anchors.size(1) == 4, "anchors must have shape (R, 4), got ",
              anchors.sizes());
  check_gts(gt_boxes, gt_counts, device);
  TORCH_CHECK(k_per_level >= 1, "k_per_level must be >= 1, got ", k_per_level);
  TORCH_CHECK(anchors_per_location >= 1, "anchors_per_location must be >= 1, got ",
              anchors_per_location);
  int64_t total = 0, C = 0;
  for (int64_t n : num_anchors_per_level) {
    TORCH_CHECK(n >= 0, "num_anchors_per_level must be non-negative, got ", num_anchors_per_level);
    total += n;
    C += n < k_per_level ? n : k_per_level;
  }
  TORCH_CHECK(total == anchors.size(0),
              "num_anchors_per_level must sum to R = anchors.size(0) = ", anchors.size(0), ", got ",
              num_anchors_per_level, " (sum ", total, ")");
  const int64_t L = static_cast<int64_t>(num_anchors_per_level.size());
  TORCH_CHECK(grid.empty() || static_cast<int64_t>(grid.size()) == 7 * L,
              "grid must be empty or have 7 values per level (", 7 * L, "), got ", grid.size());
  for (int64_t l = 0; l < L && !grid.empty(); ++l) {
    const double* g = grid.data() + 7 * l;
    const int64_t W = static_cast<int64_t>(g[4]), H = static_cast<int64_t>(g[5]);
    if (W <= 0) continue;
    TORCH_CHECK(
        H > 0 && num_anchors_per_level[l] % (W * H) == 0 && g[2] > 0 && g[3] > 0 && g[6] >= 0,
        "grid of level ", l, " is inconsistent: W=", W, " H=", H, " strides ", g[2], ",", g[3],
        " delta ", g[6], " for ", num_anchors_per_level[l], " anchors");
  }
  return C;
}

inline void check_atss_assign(const at::Tensor& cand_idx, const at::Tensor& cand_scores,
                              const at::Tensor& anchors, const at::Tensor& gt_boxes,
                              const at::Tensor& gt_counts) {
  const auto device = anchors.device();
  check_tensor(anchors, "anchors", at::kFloat, device);
  TORCH_CHECK(anchors.dim() == 2 && anchors.size(1) == 4, "anchors must have shape (R, 4), got ",
              anchors.sizes());
  check_gts(gt_boxes, gt_counts, device);
  check_tensor(cand_idx, "cand_idx", at::kLong, device);
  TORCH_CHECK(cand_idx.dim() == 3 && cand_idx.size(0) == gt_boxes.size(0) &&
                  cand_idx.size(1) == gt_boxes.size(1),
              "cand_idx must have shape (N, M, C) with (N, M) = gt_boxes.shape[:2], got ",
              cand_idx.sizes());
  check_tensor(cand_scores, "cand_scores", at::kFloat, device);
  TORCH_CHECK(cand_scores.sizes() == cand_idx.sizes(), "cand_scores must have the shape of ",
              "cand_idx ", cand_idx.sizes(), ", got ", cand_scores.sizes());
}

}  // namespace semianchor
