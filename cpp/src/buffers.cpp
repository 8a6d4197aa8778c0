#include "fastres/buffers.hpp"

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "fastres/status.hpp"

namespace fastres {

namespace {

bool is_power_of_two(std::size_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::size_t round_up(std::size_t v, std::size_t multiple) { return (v + multiple - 1) / multiple * multiple; }

}  // namespace

void* AlignedHostAllocator::allocate(std::size_t bytes, std::size_t alignment) {
  if (bytes == 0) return nullptr;
  if (!is_power_of_two(alignment) || alignment < alignof(std::max_align_t)) {
    throw InvalidArgument("host buffer alignment=" + std::to_string(alignment) +
                          ": must be a power of two >= " + std::to_string(alignof(std::max_align_t)));
  }
  // std::aligned_alloc wants the size to be a multiple of the alignment.
  void* p = std::aligned_alloc(alignment, round_up(bytes, alignment));
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void AlignedHostAllocator::deallocate(void* p, std::size_t, std::size_t) noexcept { std::free(p); }

std::shared_ptr<HostAllocator> default_host_allocator() {
  static const auto instance = std::make_shared<AlignedHostAllocator>();
  return instance;
}

HostBuffer::HostBuffer(std::size_t bytes, std::shared_ptr<HostAllocator> allocator, std::size_t alignment)
    : bytes_(bytes), alignment_(alignment), allocator_(allocator ? std::move(allocator) : default_host_allocator()) {
  data_ = static_cast<std::byte*>(allocator_->allocate(bytes_, alignment_));
  if (data_ != nullptr) std::memset(data_, 0, bytes_);
}

HostBuffer::~HostBuffer() { release(); }

HostBuffer::HostBuffer(HostBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      alignment_(other.alignment_),
      allocator_(std::move(other.allocator_)) {}

HostBuffer& HostBuffer::operator=(HostBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    alignment_ = other.alignment_;
    allocator_ = std::move(other.allocator_);
  }
  return *this;
}

void HostBuffer::release() noexcept {
  if (data_ != nullptr && allocator_) allocator_->deallocate(data_, bytes_, alignment_);
  data_ = nullptr;
  bytes_ = 0;
}

}  // namespace fastres
