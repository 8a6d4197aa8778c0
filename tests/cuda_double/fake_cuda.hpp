// Control and observation of the CUDA runtime double (fake_cudart.cpp): the subset of the CUDA
// runtime that fastres calls, implemented on the CPU behind the toolkit's own
// cuda_runtime_api.h. Only in test builds that link fastres_core_cuda_double (README.md).
//
// Every function here is thread-safe. None counts as a CUDA API call: they may be called from
// inside a host function, and fail_next() does not apply to them.
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace fastres::fake_cuda {

// Back to the initial state. Call it while no other thread uses CUDA (between test cases).
// Queued work is dropped, hung streams are released and every stream worker is joined; every
// stream, event, graph and allocation is freed (handles still held become invalid: the RAII
// wrappers' destructors then get an error, which they ignore); sticky errors, fail_next(),
// the delay, the memory limit, kernel host access and the counters are cleared; every thread's
// current device becomes 0 and its last error cudaSuccess. The device count comes back from
// FASTRES_FAKE_CUDA_DEVICES (default 2).
void reset();

// How many devices cudaGetDeviceCount reports (0..64; 0 makes it return cudaErrorNoDevice).
// Throws std::logic_error while any stream, event, graph or allocation is alive (reset() first).
void set_device_count(int count);

// Bytes of device memory per device: what cudaGetDeviceProperties and cudaMemGetInfo report and
// where cudaMalloc starts returning cudaErrorMemoryAllocation. Default 4 GiB.
void set_memory_limit(std::size_t bytes);

// The next `count` calls of `api` (a runtime function, "cudaHostAlloc", or a kernel launch
// wrapper, "gather_samples") return `error` without doing anything. Non-sticky: the error is the
// calling thread's last error, as a real failing call leaves it.
void fail_next(const std::string& api, cudaError_t error, int count = 1);

// Every stream operation sleeps this long before it runs (0 by default): widens the window in
// which a caller that forgot to wait races with the stream (ThreadSanitizer then sees it).
void set_op_delay(std::chrono::nanoseconds delay);

// The next operation enqueued on `stream` (nullptr: the current device's legacy stream) does
// nothing but raise a sticky cudaErrorLaunchFailure on the stream's device, as a faulting kernel.
void inject_fault(cudaStream_t stream);

// While hung, the stream's worker starts no operation (one running finishes); for watchdog and
// asynchrony tests. Throws std::invalid_argument for the legacy stream or an unknown stream.
void hang_stream(cudaStream_t stream, bool hang);

// Real CUDA lets kernels read and write pinned host memory (cudaHostAlloc, mapped under unified
// addressing). fastres never means to, so by default a kernel touching it faults like one touching
// pageable memory (cudaErrorIllegalAddress); allow(true) accepts it.
void allow_kernel_host_access(bool allow);

// The device's sticky error, cudaSuccess when it has none. device must be valid.
cudaError_t sticky_error(int device);

// Whether p lies inside a live cudaMalloc allocation, and of which device.
bool is_device_pointer(const void* p, int* device = nullptr);

// What the double has done since reset(). Operations count when they run (a captured operation
// when a graph replays it), not when they are enqueued; skipped operations (after a sticky fault)
// do not count.
struct Counters {
  std::uint64_t copies_h2d = 0, copies_d2h = 0, copies_d2d = 0, copies_h2h = 0;
  std::uint64_t bytes_h2d = 0, bytes_d2h = 0, bytes_d2d = 0, bytes_h2h = 0;
  std::uint64_t pageable_copies = 0;  // copies with a pageable (not cudaHostAlloc) host side
  std::uint64_t memsets = 0;
  std::uint64_t host_functions = 0;
  std::uint64_t event_records = 0;
  std::uint64_t event_waits = 0;  // stream waits on an event, as they run
  std::uint64_t kernels = 0;
  std::map<std::string, std::uint64_t> kernel_launches;  // by launch wrapper name
  std::uint64_t graph_launches = 0;
  std::uint64_t captures_invalidated = 0;
  std::uint64_t faults = 0;  // sticky errors raised
  std::size_t live_device_allocations = 0, live_device_bytes = 0;
  std::size_t live_pinned_allocations = 0, live_pinned_bytes = 0;
  std::size_t live_streams = 0, live_events = 0, live_graphs = 0, live_graph_execs = 0;
};
Counters counters();

// ---------------------------------------------------------------- for kernel doubles
// fake_kernels.cpp defines each CUDA launch wrapper of kernels.hpp: it validates the arguments as
// the real wrapper does, then launch_kernel() enqueues `body` on `stream` like any stream
// operation (captured while the stream captures). The body runs on the stream's worker; it must
// require() every range it reads or writes before touching it, then run the kernel's host twin.

// The memory rules of the device a kernel runs on.
class KernelMemory {
 public:
  explicit KernelMemory(int device) : device_(device) {}
  // Unless [p, p + bytes) lies inside one live device allocation of this device (or pinned host
  // memory, with allow_kernel_host_access), ends the kernel with a sticky cudaErrorIllegalAddress,
  // as a real kernel's bad access. bytes == 0 always passes.
  void require(const void* p, std::size_t bytes) const;
  int device() const noexcept { return device_; }

 private:
  int device_;
};

// Enqueues kernel `name` (what counters().kernel_launches and fail_next() call it) on `stream`,
// which must belong to the current device (else cudaErrorInvalidResourceHandle, as real
// launches). Returns the launch error and leaves it as the last error, as a <<<...>>> launch does;
// the wrapper then reads it with cudaGetLastError (launch.cuh's check_launch).
cudaError_t launch_kernel(const char* name, cudaStream_t stream, std::function<void(const KernelMemory&)> body);

// count * size, or SIZE_MAX when that overflows (so require() fails instead of passing a wrapped
// small range).
std::size_t bytes_of(std::size_t count, std::size_t size) noexcept;

}  // namespace fastres::fake_cuda
