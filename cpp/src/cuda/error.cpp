#include "fastres/cuda/error.hpp"

#include "fastres/status.hpp"

namespace fastres::cuda {

std::string error_text(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}

void check(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // a non-sticky error must not resurface in the next, unrelated check
  throw CudaError(std::string(call) + " failed: " + error_text(status));
}

void check(cudaError_t status, const std::string& call) { check(status, call.c_str()); }

void ignore(cudaError_t status) noexcept {
  if (status != cudaSuccess) cudaGetLastError();
}

}  // namespace fastres::cuda
