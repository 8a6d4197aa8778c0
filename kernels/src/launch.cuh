// Launch helpers shared by the kernels' .cu files. Internal to kernels/src; nvcc only.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "fastres/cuda/error.hpp"

namespace fastres::kernels::detail {

inline constexpr unsigned kBlock = 256;
// Grid-stride loops cover any size; this many blocks of kBlock threads fill every multiprocessor
// of an H200 (132) several times over without querying the device per launch.
inline constexpr std::size_t kMaxBlocks = 8192;

inline unsigned blocks_for(std::size_t work_items, std::size_t items_per_thread = 1) {
  const std::size_t per_block = static_cast<std::size_t>(kBlock) * items_per_thread;
  return static_cast<unsigned>(std::max<std::size_t>(1, std::min(kMaxBlocks, (work_items + per_block - 1) / per_block)));
}

// x covers `row_items` items per row (items_per_thread each), y walks `rows` rows (grid-stride
// beyond 65535).
inline dim3 grid_2d(std::size_t row_items, std::size_t rows, std::size_t items_per_thread = 1) {
  return dim3(blocks_for(row_items, items_per_thread), static_cast<unsigned>(std::min<std::size_t>(rows, 65535)));
}

// After a <<<...>>> launch: a bad configuration or an earlier fault shows here, named.
inline void check_launch(const char* kernel) { ::fastres::cuda::check(cudaGetLastError(), std::string(kernel) + " launch"); }

inline __device__ std::size_t global_thread() {
  return static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
inline __device__ std::size_t grid_threads() { return static_cast<std::size_t>(gridDim.x) * blockDim.x; }

}  // namespace fastres::kernels::detail
