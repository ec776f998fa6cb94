// CUDA kernel of semianchor::soft_nms: boxes grouped by class on the device (a stable sort of the
// class labels, so each class keeps its boxes in index order), then one thread block per class
// runs Algorithm 1: a block-wide argmax picks the next box (ties -> lowest index), then the
// threads rescore the class's live boxes in parallel. The picks of all classes are finally sorted
// by (score desc, index asc), as on the CPU. Same arithmetic as the CPU kernel (soft_nms.h,
// box_math.h), hence identical results.
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/unique_consecutive.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>

#include "box_math.h"
#include "checks.h"
#include "cuda_utils.cuh"
#include "soft_nms.h"

namespace semianchor {
namespace {

constexpr int kSoftNmsThreads = 256;  // power of two (tree reduction)

// (score, position) of a better pick: higher score, ties to the lower position (= lower index,
// the members of a class being in ascending index order).
__device__ __forceinline__ bool better(float s, int64_t p, float bs, int64_t bp) {
  return s > bs || (s == bs && p < bp);
}

// Block `c` (grid-stride over classes) processes the members order[offsets[c] .. offsets[c+1]).
// `work` holds the live scores of the members (-inf: dropped or kept); the picks of class c go to
// out_index / out_score at positions offsets[c] + 0, 1, ... (the rest stays -1).
__global__ void soft_nms_kernel(const float* boxes, const float* scores, const int64_t* order,
                                const int64_t* offsets, int64_t S, int method, float iou_threshold,
                                float sigma, float min_score, int64_t max_kept, float* work,
                                int64_t* out_index, float* out_score) {
  __shared__ float red_score[kSoftNmsThreads];
  __shared__ int64_t red_pos[kSoftNmsThreads];
  const int tid = threadIdx.x;
  for (int64_t c = blockIdx.x; c < S; c += gridDim.x) {
    const int64_t begin = offsets[c];
    const int64_t n = offsets[c + 1] - begin;
    const int64_t* members = order + begin;
    float* live = work + begin;
    for (int64_t k = tid; k < n; k += blockDim.x) {
      const float s = scores[members[k]];
      live[k] = s < min_score ? -INFINITY : s;
    }
    __syncthreads();
    const int64_t limit = max_kept < 0 ? n : (max_kept < n ? max_kept : n);
    for (int64_t pick = 0; pick < limit; ++pick) {
      // 1. block-wide argmax of the live scores
      float bs = -INFINITY;
      int64_t bp = n;
      for (int64_t k = tid; k < n; k += blockDim.x) {
        const float s = live[k];
        if (better(s, k, bs, bp)) bs = s, bp = k;
      }
      red_score[tid] = bs;
      red_pos[tid] = bp;
      __syncthreads();
      for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride &&
            better(red_score[tid + stride], red_pos[tid + stride], red_score[tid], red_pos[tid])) {
          red_score[tid] = red_score[tid + stride];
          red_pos[tid] = red_pos[tid + stride];
        }
        __syncthreads();
      }
      bs = red_score[0];
      bp = red_pos[0];
      __syncthreads();             // everyone has read the result before red_* is reused
      if (bs == -INFINITY) break;  // no live box left (uniform across the block)
      const int64_t p = members[bp];
      if (tid == 0) {
        out_index[begin + pick] = p;
        out_score[begin + pick] = bs;
        live[bp] = -INFINITY;
      }
      // 2. rescore the other live members (each element touched by one thread only)
      const float* pb = boxes + 4 * p;
      const float pa = box_area(pb);
      for (int64_t k = tid; k < n; k += blockDim.x) {
        if (k == bp) continue;
        const float s = live[k];
        if (s == -INFINITY) continue;
        const float* b = boxes + 4 * members[k];
        const float iou = iou_with_areas(pb, pa, b, box_area(b), nullptr);
        const float t = soft_nms_rescore(method, s, iou, iou_threshold, sigma);
        live[k] = t < min_score ? -INFINITY : t;
      }
      __syncthreads();
    }
  }
}

std::tuple<at::Tensor, at::Tensor> soft_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                                                 const std::optional<at::Tensor>& classes,
                                                 c10::string_view method, double iou_threshold,
                                                 double sigma, double min_score, int64_t max_kept) {
  check_soft_nms(boxes, scores, classes, iou_threshold, sigma, min_score, max_kept);
  const int m = parse_soft_nms_method(method);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const int64_t R = boxes.size(0);
  if (R == 0 || max_kept == 0) {
    return {at::empty({0}, boxes.options().dtype(at::kLong)), at::empty({0}, scores.options())};
  }
  const auto b = boxes.contiguous();
  const auto s = scores.contiguous();
  const auto long_opts = boxes.options().dtype(at::kLong);
  at::Tensor order, offsets;
  if (classes.has_value()) {
    // stable: within a class, ascending index, which the kernel's tie rule relies on
    auto [sorted, perm] = classes->contiguous().sort(/*stable=*/true, /*dim=*/0,
                                                     /*descending=*/false);
    order = perm;
    const auto counts = std::get<2>(at::unique_consecutive(sorted, false, true));
    offsets = at::zeros({counts.size(0) + 1}, long_opts);
    offsets.narrow(0, 1, counts.size(0)).copy_(counts.cumsum(0));
  } else {
    order = at::arange(R, long_opts);
    offsets = at::full({2}, R, long_opts);
    offsets.narrow(0, 0, 1).zero_();
  }
  const int64_t S = offsets.size(0) - 1;
  auto work = at::empty({R}, s.options());
  auto out_index = at::full({R}, -1, long_opts);
  auto out_score = at::empty({R}, s.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned int grid = static_cast<unsigned int>(std::min<int64_t>(S, 65535));
  soft_nms_kernel<<<grid, kSoftNmsThreads, 0, stream>>>(
      b.data_ptr<float>(), s.data_ptr<float>(), order.data_ptr<int64_t>(),
      offsets.data_ptr<int64_t>(), S, m, static_cast<float>(iou_threshold),
      static_cast<float>(sigma), static_cast<float>(min_score), max_kept, work.data_ptr<float>(),
      out_index.data_ptr<int64_t>(), out_score.data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // Gather the picks, then order them by (score desc, index asc): ascending index first, then a
  // stable descending sort by score (picks of one class already have non-increasing scores).
  const auto valid = out_index.ge(0);
  auto keep = out_index.masked_select(valid);
  auto kept = out_score.masked_select(valid);
  auto by_index = std::get<1>(keep.sort(/*stable=*/true, 0, false));
  keep = keep.index_select(0, by_index);
  kept = kept.index_select(0, by_index);
  // key + 0: -0.0 becomes +0.0, so that the radix sort ranks the two zeros as equal (ties by
  // index) like the CPU kernel's comparison does; the returned scores keep their sign.
  auto by_score = std::get<1>(kept.add(0.0).sort(/*stable=*/true, 0, /*descending=*/true));
  keep = keep.index_select(0, by_score);
  kept = kept.index_select(0, by_score);
  if (max_kept >= 0 && keep.size(0) > max_kept) {
    keep = keep.narrow(0, 0, max_kept).contiguous();
    kept = kept.narrow(0, 0, max_kept).contiguous();
  }
  return {keep, kept};
}

}  // namespace

TORCH_LIBRARY_IMPL(semianchor, CUDA, m) {
  m.impl("soft_nms", &soft_nms_cuda);
}

}  // namespace semianchor
