// Schemas of the semianchor operators. Implementations register per backend in
// <op>/<op>_cpu.cpp and <op>/<op>_cuda.cu; fake (meta) kernels and autocast rules are registered
// in Python (semianchor/_meta_registrations.py). Semantics: semianchor/layers/*.py docstrings.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import semianchor._C` loads this shared library, which runs the static registrations below.
// The module itself is empty: ops are reached through torch.ops.semianchor.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(semianchor, m) {
  m.def(
      "iou_after_regression(Tensor anchors, Tensor regression, Tensor gt_boxes, "
      "Tensor gt_counts, Tensor? matched_gt, str box_coder, float[] weights, float scale_clamp, "
      "Tensor? ltrb_scale) -> (Tensor pred_boxes, Tensor iou, Tensor giou, Tensor gt_index)");
  m.def(
      "atss_candidates(Tensor anchors, Tensor gt_boxes, Tensor gt_counts, "
      "int[] num_anchors_per_level, int k_per_level, int anchors_per_location, float[] grid) "
      "-> (Tensor cand_idx, Tensor cand_iou)");
  m.def(
      "atss_assign(Tensor cand_idx, Tensor cand_scores, Tensor anchors, Tensor gt_boxes, "
      "Tensor gt_counts, float center_eps) "
      "-> (Tensor matched_gt, Tensor matched_score, Tensor threshold)");
  m.def(
      "max_iou_match(Tensor anchors, Tensor gt_boxes, Tensor gt_counts, "
      "int[] num_anchors_per_level, float[] thresholds, int[] labels, "
      "bool allow_low_quality_matches, bool grid) "
      "-> (Tensor matched_idx, Tensor match_labels, Tensor max_iou)");
  m.def(
      "topn_iou_match(Tensor anchors, Tensor gt_boxes, Tensor gt_counts, "
      "int[] num_anchors_per_level, int topn, bool grid) -> (Tensor matched_gt, Tensor iou)");
  // Inspection helper of the two ops above (CPU only, not in extension.OP_NAMES): the visit plan
  // the kernels build, (S, L, 10) float64, see csrc/iou_match.h.
  m.def("iou_match_plan(Tensor anchors, int[] num_anchors_per_level, bool grid) -> Tensor");
  // ... and, private to the tests (leading underscore), the (anchor, IoU > 0) pairs one GT's visit
  // yields for the cooperating thread `start` of `step` (the CUDA kernels' block split, on CPU).
  m.def(
      "_iou_match_visit(Tensor anchors, Tensor gt_box, int[] num_anchors_per_level, bool grid, "
      "int start, int step) -> (Tensor anchor_idx, Tensor iou)");
  m.def(
      "soft_nms(Tensor boxes, Tensor scores, Tensor? classes, str method, float iou_threshold, "
      "float sigma, float min_score, int max_kept) -> (Tensor keep, Tensor scores)");
}
