// CUDA runtime errors as fastres::CudaError naming the call. Only with FASTRES_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

namespace fastres::cuda {

// "cudaErrorMemoryAllocation (out of memory)".
std::string error_text(cudaError_t status);

// Throws fastres::CudaError "<call> failed: <error_text>" unless status is cudaSuccess. Clears
// the runtime's last error first, so a non-sticky failure does not resurface in a later call.
// `call` names what was called, with the values that matter ("cudaMalloc(602112 bytes)").
void check(cudaError_t status, const char* call);
void check(cudaError_t status, const std::string& call);

// For calls whose failure nobody can act on (destructors, cleanup after an error): drops the
// status and, when it is an error, clears the runtime's last error, so that it is not reported
// by a later, unrelated call (a kernel launch's check reads the last error). Never throws.
void ignore(cudaError_t status) noexcept;

}  // namespace fastres::cuda

// Checks a runtime call, naming it as written: FASTRES_CUDA_CHECK(cudaStreamSynchronize(s)).
#define FASTRES_CUDA_CHECK(expr) ::fastres::cuda::check((expr), #expr)
