// Host memory for samples and stream-slot buffers, behind a small allocator interface.
//
// Today every buffer comes from AlignedHostAllocator (page-aligned pageable memory). The CUDA
// path adds a pinned allocator (cudaHostAlloc) behind the same interface, falling back to
// pageable memory with a warning rather than failing, so SampleLibrary and the executor's stream
// slots need no change when it lands.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

namespace fastres {

// Alignment of every buffer fastres allocates unless a caller asks for more: one page, which is
// also what cudaHostRegister and direct-I/O want.
inline constexpr std::size_t kPageAlignment = 4096;

// Where host buffers come from. Implementations must be thread-safe: allocate/deallocate may be
// called from any thread. allocate() throws std::bad_alloc on failure and never returns null for
// bytes > 0; for bytes == 0 it may return null.
class HostAllocator {
 public:
  virtual ~HostAllocator() = default;
  // alignment: a power of two >= alignof(std::max_align_t).
  virtual void* allocate(std::size_t bytes, std::size_t alignment) = 0;
  // p: exactly what allocate(bytes, alignment) returned (null is allowed and ignored).
  virtual void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept = 0;
  // "aligned-host", later "pinned-host": shown in stats and error messages.
  virtual std::string_view name() const noexcept = 0;
  // True when the memory is page-locked (usable for async DMA). False for pageable memory.
  virtual bool pinned() const noexcept { return false; }
};

// Pageable memory from std::aligned_alloc. Stateless; the shared instance is default_host_allocator().
class AlignedHostAllocator final : public HostAllocator {
 public:
  void* allocate(std::size_t bytes, std::size_t alignment) override;
  void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override;
  std::string_view name() const noexcept override { return "aligned-host"; }
};

// The process-wide allocator used when a caller passes none. Thread-safe.
std::shared_ptr<HostAllocator> default_host_allocator();

// One owned, aligned, zero-initialised host allocation. Move-only; keeps its allocator alive.
// Not thread-safe (like std::vector): the owner decides who touches the bytes when.
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(std::size_t bytes, std::shared_ptr<HostAllocator> allocator,
             std::size_t alignment = kPageAlignment);
  ~HostBuffer();

  HostBuffer(HostBuffer&& other) noexcept;
  HostBuffer& operator=(HostBuffer&& other) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  const std::byte* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return bytes_; }
  bool empty() const noexcept { return bytes_ == 0; }
  const HostAllocator* allocator() const noexcept { return allocator_.get(); }

 private:
  void release() noexcept;

  std::byte* data_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t alignment_ = kPageAlignment;
  std::shared_ptr<HostAllocator> allocator_;
};

}  // namespace fastres
