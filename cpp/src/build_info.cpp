#include "fastres/build_info.hpp"

namespace fastres {

BuildInfo build_info() {
  BuildInfo info;
  info.version = FASTRES_VERSION;
#if defined(__clang__)
  info.compiler = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info.compiler = std::string("gcc ") + __VERSION__;
#else
  info.compiler = "unknown";
#endif
#ifdef FASTRES_WITH_CUDA
  info.with_cuda = true;
#endif
#ifdef FASTRES_WITH_TENSORRT
  info.with_tensorrt = true;
  info.tensorrt_version = FASTRES_TENSORRT_VERSION;
#endif
  return info;
}

#ifndef FASTRES_WITH_CUDA
CudaRuntimeInfo cuda_runtime_info() {
  CudaRuntimeInfo info;
  info.status = "fastres was built without CUDA (FASTRES_WITH_CUDA=OFF or no toolkit at build time)";
  return info;
}
#endif

}  // namespace fastres
