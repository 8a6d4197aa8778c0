// Page-locked host memory for the SampleLibrary and the stream slots' buffers, behind the
// HostAllocator interface (buffers.hpp). Only with FASTRES_WITH_CUDA.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "fastres/buffers.hpp"

namespace fastres::cuda {

// Allocates with cudaHostAlloc (portable: usable from every device). When that fails (no driver,
// no device, the locked-memory limit reached), it falls back to pageable memory from
// AlignedHostAllocator and warns, rather than failing: copies from pageable memory are
// synchronous and slower, but correct. The warning goes to `warn` once per allocator (default:
// one line on stderr); fallbacks() counts every one. Thread-safe.
class PinnedHostAllocator final : public HostAllocator {
 public:
  using WarnFn = std::function<void(const std::string& message)>;

  explicit PinnedHostAllocator(WarnFn warn = {});
  ~PinnedHostAllocator() override;

  void* allocate(std::size_t bytes, std::size_t alignment) override;
  void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override;
  std::string_view name() const noexcept override { return "pinned-host"; }
  // True while every allocation so far was page-locked.
  bool pinned() const noexcept override;

  // Whether `p` (a pointer allocate() returned and not yet deallocated) is page-locked.
  bool is_pinned(const void* p) const;
  std::size_t fallbacks() const;
  // The warning of the first fallback; empty when none happened.
  std::string first_warning() const;

 private:
  struct Allocation {
    void* base = nullptr;  // what cudaHostAlloc / the fallback returned (p may be aligned up from it)
    std::size_t alloc_bytes = 0;
    std::size_t alignment = 0;
    bool pinned = false;
  };

  WarnFn warn_;
  AlignedHostAllocator pageable_;
  mutable std::mutex mu_;
  std::unordered_map<void*, Allocation> live_;
  std::size_t fallbacks_ = 0;
  std::string first_warning_;
};

// The process-wide pinned allocator (warnings to stderr). Thread-safe.
std::shared_ptr<PinnedHostAllocator> pinned_host_allocator();

}  // namespace fastres::cuda
