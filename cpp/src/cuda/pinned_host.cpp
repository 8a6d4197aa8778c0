#include "fastres/cuda/pinned_host.hpp"

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdio>
#include <new>
#include <utility>

#include "fastres/cuda/error.hpp"
#include "fastres/status.hpp"

namespace fastres::cuda {

namespace {

void warn_to_stderr(const std::string& message) { std::fprintf(stderr, "fastres: warning: %s\n", message.c_str()); }

void* align_up(void* p, std::size_t alignment) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<void*>((v + alignment - 1) / alignment * alignment);
}

}  // namespace

PinnedHostAllocator::PinnedHostAllocator(WarnFn warn) : warn_(warn ? std::move(warn) : WarnFn(warn_to_stderr)) {}

PinnedHostAllocator::~PinnedHostAllocator() = default;

void* PinnedHostAllocator::allocate(std::size_t bytes, std::size_t alignment) {
  if (bytes == 0) return nullptr;
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment < alignof(std::max_align_t)) {
    throw InvalidArgument("pinned host buffer alignment=" + std::to_string(alignment) + ": must be a power of two >= " +
                          std::to_string(alignof(std::max_align_t)));
  }
  Allocation a;
  a.alignment = alignment;
  // cudaHostAlloc returns page-aligned memory; a larger alignment is made by over-allocating.
  a.alloc_bytes = alignment <= kPageAlignment ? bytes : bytes + alignment;
  void* base = nullptr;
  const cudaError_t status = cudaHostAlloc(&base, a.alloc_bytes, cudaHostAllocPortable);
  void* p = nullptr;
  if (status == cudaSuccess && base != nullptr) {
    a.base = base;
    a.pinned = true;
    p = align_up(base, alignment);
  } else {
    cudaGetLastError();
    const std::size_t requested = a.alloc_bytes;  // what cudaHostAlloc was asked for
    p = pageable_.allocate(bytes, alignment);  // throws std::bad_alloc
    a.base = p;
    a.alloc_bytes = bytes;
    std::string message = "cudaHostAlloc(" + std::to_string(requested) + " bytes) failed: " + error_text(status) +
                          "; using pageable host memory instead (host-device copies are then synchronous and "
                          "slower). Raise the locked-memory limit (ulimit -l) or free pinned memory.";
    bool first = false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      first = fallbacks_++ == 0;
      if (first) first_warning_ = message;
    }
    if (first) warn_(message);
  }
  std::lock_guard<std::mutex> lk(mu_);
  live_.emplace(p, a);
  return p;
}

void PinnedHostAllocator::deallocate(void* p, std::size_t, std::size_t) noexcept {
  if (p == nullptr) return;
  Allocation a;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = live_.find(p);
    if (it == live_.end()) return;  // not ours: leaking beats freeing with the wrong function
    a = it->second;
    live_.erase(it);
  }
  if (a.pinned) {
    ignore(cudaFreeHost(a.base));
  } else {
    pageable_.deallocate(a.base, a.alloc_bytes, a.alignment);
  }
}

bool PinnedHostAllocator::pinned() const noexcept {
  std::lock_guard<std::mutex> lk(mu_);
  return fallbacks_ == 0;
}

bool PinnedHostAllocator::is_pinned(const void* p) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(const_cast<void*>(p));
  return it != live_.end() && it->second.pinned;
}

std::size_t PinnedHostAllocator::fallbacks() const {
  std::lock_guard<std::mutex> lk(mu_);
  return fallbacks_;
}

std::string PinnedHostAllocator::first_warning() const {
  std::lock_guard<std::mutex> lk(mu_);
  return first_warning_;
}

std::shared_ptr<PinnedHostAllocator> pinned_host_allocator() {
  static const auto instance = std::make_shared<PinnedHostAllocator>();
  return instance;
}

}  // namespace fastres::cuda
