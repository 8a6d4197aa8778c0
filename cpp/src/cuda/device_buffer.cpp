#include "fastres/cuda/device_buffer.hpp"

#include <string>
#include <utility>

#include "fastres/cuda/error.hpp"
#include "fastres/status.hpp"

namespace fastres::cuda {

namespace {

void require_fits(std::size_t bytes, std::size_t size, const char* what) {
  if (bytes > size) {
    throw InvalidArgument(std::string(what) + ": " + std::to_string(bytes) + " bytes do not fit a device buffer of " +
                          std::to_string(size) + " bytes");
  }
}

}  // namespace

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  FASTRES_CUDA_CHECK(cudaGetDevice(&device_));
  if (bytes == 0) return;
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc(" + std::to_string(bytes) + " bytes) on device " + std::to_string(device_));
  data_ = static_cast<std::byte*>(p);
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)), device_(other.device_) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = other.device_;
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  // cudaFree synchronises the device; with unified addressing any current device may free it.
  if (data_ != nullptr) ignore(cudaFree(data_));
  data_ = nullptr;
  bytes_ = 0;
}

void DeviceBuffer::copy_from_host(const void* src, std::size_t bytes, cudaStream_t stream) {
  require_fits(bytes, bytes_, "DeviceBuffer::copy_from_host");
  if (bytes == 0) return;
  check(cudaMemcpyAsync(data_, src, bytes, cudaMemcpyHostToDevice, stream),
        "cudaMemcpyAsync(host to device, " + std::to_string(bytes) + " bytes)");
}

void DeviceBuffer::copy_to_host(void* dst, std::size_t bytes, cudaStream_t stream) const {
  require_fits(bytes, bytes_, "DeviceBuffer::copy_to_host");
  if (bytes == 0) return;
  check(cudaMemcpyAsync(dst, data_, bytes, cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync(device to host, " + std::to_string(bytes) + " bytes)");
}

void DeviceBuffer::fill(unsigned char value, cudaStream_t stream) {
  if (bytes_ == 0) return;
  check(cudaMemsetAsync(data_, value, bytes_, stream),
        "cudaMemsetAsync(value=" + std::to_string(value) + ", " + std::to_string(bytes_) + " bytes)");
}

}  // namespace fastres::cuda
