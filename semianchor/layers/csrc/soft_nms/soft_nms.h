// Soft-NMS (Bodla et al. 2017, Algorithm 1) shared by the CPU and CUDA kernels of
// semianchor::soft_nms: argument checks and the per-box rescoring step. The arithmetic matches
// soft_nms_reference (semianchor/layers/reference/soft_nms.py) operation for operation, so the
// three agree bit-for-bit. Semantics: the soft_nms docstring.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <optional>
#include <string>

#include "box_math.h"
#include "checks.h"

namespace semianchor {

enum SoftNmsMethod : int { kSoftNmsLinear = 0, kSoftNmsGaussian = 1, kSoftNmsHard = 2 };

inline int parse_soft_nms_method(c10::string_view method) {
  if (method == "linear") return kSoftNmsLinear;
  if (method == "gaussian") return kSoftNmsGaussian;
  if (method == "hard") return kSoftNmsHard;
  TORCH_CHECK(false, "method must be 'linear', 'gaussian' or 'hard', got '", std::string(method),
              "'");
  return -1;
}

inline void check_soft_nms(const at::Tensor& boxes, const at::Tensor& scores,
                           const std::optional<at::Tensor>& classes, double iou_threshold,
                           double sigma, double min_score, int64_t max_kept) {
  const auto device = boxes.device();
  check_tensor(boxes, "boxes", at::kFloat, device);
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "boxes must have shape (R, 4), got ",
              boxes.sizes());
  const int64_t R = boxes.size(0);
  check_tensor(scores, "scores", at::kFloat, device);
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == R, "scores must have shape (R,) = (", R,
              ",), got ", scores.sizes());
  if (classes.has_value()) {
    check_tensor(*classes, "classes", at::kLong, device);
    TORCH_CHECK(classes->dim() == 1 && classes->size(0) == R, "classes must have shape (R,) = (", R,
                ",), got ", classes->sizes());
  }
  TORCH_CHECK(std::isfinite(iou_threshold), "iou_threshold must be finite, got ", iou_threshold);
  // sigma is used as a float32; 0 would turn exp(-0 / sigma) into NaN for disjoint boxes.
  TORCH_CHECK(std::isfinite(sigma) && static_cast<float>(sigma) > 0.f,
              "sigma must be finite and > 0 (also as a float32), got ", sigma);
  // min_score >= 0 keeps every live score >= 0, so rescoring (factors in [0, 1]) never raises a
  // score and the picks come out in decreasing score order.
  TORCH_CHECK(std::isfinite(min_score) && min_score >= 0.0,
              "min_score must be finite and >= 0, got ", min_score);
  TORCH_CHECK(max_kept >= -1, "max_kept must be -1 (all) or >= 0, got ", max_kept);
}

// The score of a live box after the box `picked` was kept, given their IoU. Linear:
// s * (1 - iou) when iou >= N_t (float32 IoU against N_t rounded to float32); Gaussian:
// s * exp(-(iou * iou) / sigma) for every box of the class (the factor is exactly 1 at iou 0),
// with exp evaluated in double and rounded once (exp_via_double); hard: 0 when iou >= N_t.
SA_HD float soft_nms_rescore(int method, float score, float iou, float iou_threshold, float sigma) {
  if (method == kSoftNmsGaussian) {
    const float x = (-fmul(iou, iou)) / sigma;
    return fmul(score, exp_via_double(x));
  }
  if (!(iou >= iou_threshold)) return score;
  return method == kSoftNmsLinear ? fmul(score, fsub(1.f, iou)) : 0.f;
}

}  // namespace semianchor
