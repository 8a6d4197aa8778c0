// The CUDA runtime double (fake_cudart.cpp, fake_kernels.cpp) held to the CUDA semantics it
// models, then fastres's CUDA wrappers (cpp/src/cuda/) and kernel launch wrappers run on it.
// Nothing here is timed: asynchrony is shown with hung streams and host functions that block on
// a promise, never with sleeps.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "fake_cuda.hpp"
#include "fastres/buffers.hpp"
#include "fastres/build_info.hpp"
#include "fastres/cuda/device.hpp"
#include "fastres/cuda/device_buffer.hpp"
#include "fastres/cuda/error.hpp"
#include "fastres/cuda/event.hpp"
#include "fastres/cuda/graph.hpp"
#include "fastres/cuda/pinned_host.hpp"
#include "fastres/cuda/stream.hpp"
#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

namespace fc = fastres::fake_cuda;
namespace cu = fastres::cuda;
namespace k = fastres::kernels;

// Compares a runtime status with the expected one, naming both on failure.
#define CHECK_CUDA(expr, want)                                                                                   \
  do {                                                                                                           \
    const cudaError_t check_got_ = (expr);                                                                       \
    if (check_got_ != (want)) {                                                                                  \
      ::check::fail(__FILE__, __LINE__,                                                                          \
                    std::string(#expr " returned ") + cudaGetErrorName(check_got_) + " (" +                      \
                        std::to_string(static_cast<int>(check_got_)) + "), expected " #want);                    \
    }                                                                                                            \
  } while (0)
#define OK(expr) CHECK_CUDA(expr, cudaSuccess)

namespace {

// Each case starts from, and leaves, the double's initial state with two devices.
struct Fresh {
  Fresh() {
    fc::reset();
    fc::set_device_count(2);
  }
  ~Fresh() { fc::reset(); }
};

// Hangs a stream for its life (released on the way out, also when a check fails).
class Hang {
 public:
  explicit Hang(cudaStream_t s) : s_(s) { fc::hang_stream(s_, true); }
  ~Hang() { release(); }
  void release() {
    if (s_ != nullptr) fc::hang_stream(s_, false);
    s_ = nullptr;
  }

 private:
  cudaStream_t s_;
};

// A raw stream, destroyed with the object.
struct RawStream {
  explicit RawStream(unsigned flags = cudaStreamNonBlocking) {
    if (cudaStreamCreateWithFlags(&s, flags) != cudaSuccess) throw std::runtime_error("cudaStreamCreateWithFlags");
  }
  ~RawStream() { cudaStreamDestroy(s); }
  cudaStream_t s = nullptr;
};

struct RawEvent {
  explicit RawEvent(unsigned flags = cudaEventDisableTiming) {
    if (cudaEventCreateWithFlags(&e, flags) != cudaSuccess) throw std::runtime_error("cudaEventCreateWithFlags");
  }
  ~RawEvent() { cudaEventDestroy(e); }
  cudaEvent_t e = nullptr;
};

// cudaMalloc / cudaHostAlloc bytes, freed with the object.
struct Dev {
  explicit Dev(std::size_t bytes) {
    if (cudaMalloc(&p, bytes) != cudaSuccess) throw std::runtime_error("cudaMalloc");
  }
  ~Dev() { cudaFree(p); }
  template <class T = unsigned char>
  T* as() const {
    return static_cast<T*>(p);
  }
  void* p = nullptr;
};

struct Pinned {
  explicit Pinned(std::size_t bytes) {
    if (cudaHostAlloc(&p, bytes, cudaHostAllocPortable) != cudaSuccess) throw std::runtime_error("cudaHostAlloc");
  }
  ~Pinned() { cudaFreeHost(p); }
  template <class T = unsigned char>
  T* as() const {
    return static_cast<T*>(p);
  }
  void* p = nullptr;
};

bool all_bytes(const void* p, std::size_t n, unsigned char v) {
  const auto* b = static_cast<const unsigned char*>(p);
  return std::all_of(b, b + n, [v](unsigned char x) { return x == v; });
}

// A host function that runs a std::function (owned by the caller, alive until the stream ran it).
void run_function(void* f) { (*static_cast<std::function<void()>*>(f))(); }

// Deterministic pseudo-random values for the kernel comparisons.
struct Lcg {
  std::uint32_t state;
  std::uint32_t next() {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() % 100000) / 100000.0f; }
};

template <class T>
bool same_bytes(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

std::string thrown_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

}  // namespace

// ==================================================================== the double's own semantics

TEST_CASE(devices_have_properties_and_a_current_device_per_thread) {
  Fresh fresh;
  fc::set_device_count(3);
  int n = -1;
  OK(cudaGetDeviceCount(&n));
  CHECK_EQ(n, 3);
  fc::set_memory_limit(std::size_t{1} << 20);
  cudaDeviceProp prop{};
  OK(cudaGetDeviceProperties(&prop, 2));
  CHECK(std::string(prop.name).find("fastres CUDA double") != std::string::npos);
  CHECK_EQ(prop.major, 9);
  CHECK_EQ(prop.minor, 0);
  CHECK_EQ(prop.totalGlobalMem, std::size_t{1} << 20);
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 3), cudaErrorInvalidDevice);

  int d = -1;
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 0);
  OK(cudaSetDevice(2));
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 2);
  CHECK_CUDA(cudaSetDevice(3), cudaErrorInvalidDevice);
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 2);
  // The current device belongs to the host thread.
  int other = -1;
  std::thread([&] { cudaGetDevice(&other); }).join();
  CHECK_EQ(other, 0);

  int least = 1, greatest = 1;
  OK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  CHECK_EQ(least, 0);
  CHECK(greatest < 0);
  int runtime = 0, driver = 0;
  OK(cudaRuntimeGetVersion(&runtime));
  OK(cudaDriverGetVersion(&driver));
  CHECK_EQ(runtime, CUDART_VERSION);
  CHECK(driver >= runtime);

  fc::reset();
  fc::set_device_count(0);
  n = -1;
  CHECK_CUDA(cudaGetDeviceCount(&n), cudaErrorNoDevice);
  CHECK_EQ(n, 0);
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, 16), cudaErrorNoDevice);
  CHECK_CUDA(cudaSetDevice(0), cudaErrorNoDevice);
}

TEST_CASE(stream_ops_run_in_fifo_order_asynchronously_to_the_caller) {
  Fresh fresh;
  RawStream s;
  Dev dev(64);
  Pinned host(64);
  std::memset(host.p, 0, 64);
  unsigned char seen_before_copy = 0xff, seen_after_copy = 0xff;
  std::function<void()> before = [&] { seen_before_copy = host.as()[0]; };
  std::function<void()> after = [&] { seen_after_copy = host.as()[0]; };
  {
    Hang hang(s.s);
    OK(cudaMemsetAsync(dev.p, 7, 64, s.s));
    OK(cudaLaunchHostFunc(s.s, run_function, &before));
    OK(cudaMemcpyAsync(host.p, dev.p, 64, cudaMemcpyDeviceToHost, s.s));
    OK(cudaLaunchHostFunc(s.s, run_function, &after));
    // Every call returned; nothing ran yet.
    CHECK_CUDA(cudaStreamQuery(s.s), cudaErrorNotReady);
    CHECK(all_bytes(host.p, 64, 0));
    CHECK_EQ(fc::counters().memsets, 0u);
  }
  OK(cudaStreamSynchronize(s.s));
  OK(cudaStreamQuery(s.s));
  CHECK(all_bytes(host.p, 64, 7));
  CHECK_EQ(int{seen_before_copy}, 0);
  CHECK_EQ(int{seen_after_copy}, 7);
  const fc::Counters c = fc::counters();
  CHECK_EQ(c.memsets, 1u);
  CHECK_EQ(c.copies_d2h, 1u);
  CHECK_EQ(c.bytes_d2h, 64u);
  CHECK_EQ(c.host_functions, 2u);
  CHECK_EQ(c.pageable_copies, 0u);

  // Many ops keep their order.
  std::vector<int> order;
  std::vector<std::function<void()>> fns;
  for (int i = 0; i < 50; ++i) fns.emplace_back([&order, i] { order.push_back(i); });
  for (auto& f : fns) OK(cudaLaunchHostFunc(s.s, run_function, &f));
  OK(cudaStreamSynchronize(s.s));
  CHECK_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) CHECK_EQ(order[static_cast<std::size_t>(i)], i);
}

TEST_CASE(legacy_stream_runs_in_the_caller_after_the_blocking_streams) {
  Fresh fresh;
  Dev dev(32), dev2(32);
  std::vector<unsigned char> host(32, 0);
  OK(cudaMemset(dev.p, 3, 32));
  CHECK_EQ(fc::counters().memsets, 1u);  // done before the call returned
  OK(cudaMemcpy(host.data(), dev.p, 32, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(host.data(), 32, 3));

  std::thread::id ran_on;
  std::function<void()> where = [&] { ran_on = std::this_thread::get_id(); };
  OK(cudaLaunchHostFunc(nullptr, run_function, &where));
  CHECK(ran_on == std::this_thread::get_id());

  // The legacy stream waits for blocking streams...
  RawStream blocking(cudaStreamDefault);
  OK(cudaMemsetAsync(dev.p, 5, 32, blocking.s));
  OK(cudaMemcpy(host.data(), dev.p, 32, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(host.data(), 32, 5));
  // ...but not for non-blocking ones.
  RawStream nonblocking(cudaStreamNonBlocking);
  OK(cudaMemset(dev2.p, 1, 32));
  {
    Hang hang(nonblocking.s);
    OK(cudaMemsetAsync(dev2.p, 9, 32, nonblocking.s));
    OK(cudaMemcpy(host.data(), dev2.p, 32, cudaMemcpyDeviceToHost));
    CHECK(all_bytes(host.data(), 32, 1));
    OK(cudaStreamSynchronize(nullptr));  // the legacy stream's sync does not wait for it either
  }
  OK(cudaStreamSynchronize(nonblocking.s));
  OK(cudaMemcpy(host.data(), dev2.p, 32, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(host.data(), 32, 9));
}

TEST_CASE(events_order_work_across_streams_and_report_pending_work) {
  Fresh fresh;
  RawStream a, b;
  RawEvent e;
  Dev dev(128);
  Pinned host(128);
  std::memset(host.p, 0, 128);
  OK(cudaEventQuery(e.e));  // never recorded: complete
  OK(cudaEventSynchronize(e.e));
  OK(cudaStreamWaitEvent(b.s, e.e, 0));  // and nothing to wait for
  {
    Hang hang(a.s);
    OK(cudaMemsetAsync(dev.p, 4, 128, a.s));
    OK(cudaEventRecord(e.e, a.s));
    CHECK_CUDA(cudaEventQuery(e.e), cudaErrorNotReady);
    OK(cudaStreamWaitEvent(b.s, e.e, 0));
    OK(cudaMemcpyAsync(host.p, dev.p, 128, cudaMemcpyDeviceToHost, b.s));
    CHECK_CUDA(cudaStreamQuery(b.s), cudaErrorNotReady);  // b waits for a
    CHECK(all_bytes(host.p, 128, 0));
  }
  OK(cudaStreamSynchronize(b.s));
  CHECK(all_bytes(host.p, 128, 4));
  OK(cudaEventQuery(e.e));
  CHECK_EQ(fc::counters().event_records, 1u);
  CHECK_EQ(fc::counters().event_waits, 1u);

  // A wait binds to the record current at the call: re-recording later does not move it.
  {
    Hang hang(a.s);
    OK(cudaMemsetAsync(dev.p, 6, 128, a.s));
    OK(cudaEventRecord(e.e, a.s));
    OK(cudaStreamWaitEvent(b.s, e.e, 0));
    OK(cudaMemcpyAsync(host.p, dev.p, 128, cudaMemcpyDeviceToHost, b.s));
    OK(cudaEventRecord(e.e, b.s));  // the event now marks b's copy
    CHECK_CUDA(cudaEventQuery(e.e), cudaErrorNotReady);
  }
  OK(cudaEventSynchronize(e.e));
  CHECK(all_bytes(host.p, 128, 6));

  // Events belong to the device current at creation: a record on another device's stream is
  // refused, a wait across devices is allowed.
  cudaStream_t on1 = nullptr;
  OK(cudaSetDevice(1));
  OK(cudaStreamCreateWithFlags(&on1, cudaStreamNonBlocking));
  CHECK_CUDA(cudaEventRecord(e.e, on1), cudaErrorInvalidResourceHandle);
  OK(cudaStreamWaitEvent(on1, e.e, 0));
  OK(cudaStreamSynchronize(on1));
  OK(cudaStreamDestroy(on1));
  OK(cudaSetDevice(0));
  CHECK_CUDA(cudaStreamWaitEvent(a.s, e.e, 0x10), cudaErrorInvalidValue);
}

TEST_CASE(event_timing_needs_timing_events_recorded_and_complete) {
  Fresh fresh;
  RawStream s;
  RawEvent start(cudaEventDefault), end(cudaEventDefault), untimed(cudaEventDisableTiming);
  float ms = -1.0f;
  CHECK_CUDA(cudaEventElapsedTime(&ms, start.e, end.e), cudaErrorInvalidResourceHandle);  // never recorded
  {
    Hang hang(s.s);
    OK(cudaEventRecord(start.e, s.s));
    OK(cudaEventRecord(end.e, s.s));
    CHECK_CUDA(cudaEventElapsedTime(&ms, start.e, end.e), cudaErrorNotReady);
  }
  OK(cudaEventSynchronize(end.e));
  OK(cudaEventElapsedTime(&ms, start.e, end.e));
  CHECK(ms >= 0.0f);  // end was recorded after start on one stream
  OK(cudaEventRecord(untimed.e, s.s));
  OK(cudaEventSynchronize(untimed.e));
  CHECK_CUDA(cudaEventElapsedTime(&ms, start.e, untimed.e), cudaErrorInvalidResourceHandle);
  CHECK_CUDA(cudaEventElapsedTime(nullptr, start.e, end.e), cudaErrorInvalidValue);

  // A blocking-sync event sleeps until the work is done, then sees it.
  RawEvent blocking(cudaEventBlockingSync | cudaEventDisableTiming);
  int value = 0;
  std::function<void()> set = [&] { value = 42; };
  {
    Hang hang(s.s);
    OK(cudaLaunchHostFunc(s.s, run_function, &set));
    OK(cudaEventRecord(blocking.e, s.s));
    CHECK_CUDA(cudaEventQuery(blocking.e), cudaErrorNotReady);
  }
  OK(cudaEventSynchronize(blocking.e));
  CHECK_EQ(value, 42);
  cudaEvent_t bad = nullptr;
  CHECK_CUDA(cudaEventCreateWithFlags(&bad, 0x100), cudaErrorInvalidValue);
  CHECK_CUDA(cudaEventCreateWithFlags(&bad, cudaEventInterprocess), cudaErrorInvalidValue);
}

TEST_CASE(memcpy_checks_direction_and_ranges_against_registered_memory) {
  Fresh fresh;
  Dev a(64), b(64);
  Pinned pinned(64);
  std::vector<unsigned char> pageable(128), back(128, 0);
  for (std::size_t i = 0; i < pageable.size(); ++i) pageable[i] = static_cast<unsigned char>(i * 3 + 1);

  OK(cudaMemcpy(a.p, pageable.data(), 64, cudaMemcpyHostToDevice));
  OK(cudaMemcpy(b.p, a.p, 64, cudaMemcpyDeviceToDevice));
  OK(cudaMemcpy(pinned.p, b.p, 64, cudaMemcpyDeviceToHost));
  OK(cudaMemcpy(back.data(), pinned.p, 64, cudaMemcpyHostToHost));
  CHECK(std::memcmp(back.data(), pageable.data(), 64) == 0);

  // The direction must match what the pointers are.
  CHECK_CUDA(cudaMemcpy(pageable.data(), pinned.p, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, b.p, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(back.data(), pinned.p, 64, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, b.p, 64, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, pinned.p, 64, cudaMemcpyDeviceToDevice), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(back.data(), a.p, 64, cudaMemcpyHostToHost), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, b.p, 64, static_cast<cudaMemcpyKind>(7)), cudaErrorInvalidMemcpyDirection);
  // Ranges must lie inside one allocation: device, or pinned.
  CHECK_CUDA(cudaMemcpy(a.p, pageable.data(), 65, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  OK(cudaMemcpy(a.as() + 32, pageable.data(), 32, cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(a.as() + 33, pageable.data(), 32, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(back.data(), b.as() + 1, 64, cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, pinned.as() + 32, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpy(a.p, nullptr, 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  OK(cudaMemcpy(nullptr, nullptr, 0, cudaMemcpyHostToDevice));  // nothing to copy

  // cudaMemcpyDefault infers the direction from the pointers.
  const fc::Counters before = fc::counters();
  OK(cudaMemcpy(b.p, pageable.data(), 16, cudaMemcpyDefault));
  OK(cudaMemcpy(back.data(), b.p, 8, cudaMemcpyDefault));
  OK(cudaMemcpy(a.p, b.p, 4, cudaMemcpyDefault));
  OK(cudaMemcpy(back.data(), pinned.p, 2, cudaMemcpyDefault));
  const fc::Counters after = fc::counters();
  CHECK_EQ(after.copies_h2d - before.copies_h2d, 1u);
  CHECK_EQ(after.bytes_h2d - before.bytes_h2d, 16u);
  CHECK_EQ(after.bytes_d2h - before.bytes_d2h, 8u);
  CHECK_EQ(after.bytes_d2d - before.bytes_d2d, 4u);
  CHECK_EQ(after.bytes_h2h - before.bytes_h2h, 2u);
  CHECK_EQ(after.pageable_copies - before.pageable_copies, 3u);

  // Freed memory is no longer device memory.
  void* gone = nullptr;
  OK(cudaMalloc(&gone, 64));
  OK(cudaFree(gone));
  CHECK_CUDA(cudaMemcpy(gone, pageable.data(), 64, cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  // Across devices (unified addressing) a device-to-device copy is fine.
  OK(cudaSetDevice(1));
  Dev on1(64);
  OK(cudaSetDevice(0));
  OK(cudaMemcpy(on1.p, a.p, 64, cudaMemcpyDeviceToDevice));
  // Memset wants device memory, in range.
  CHECK_CUDA(cudaMemset(pageable.data(), 0, 64), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemset(a.p, 0, 65), cudaErrorInvalidValue);
  RawStream s;
  // Pinned host memory may be memset, synchronously with the host.
  OK(cudaMemsetAsync(pinned.p, 0x5a, 64, s.s));
  CHECK(all_bytes(pinned.p, 64, 0x5a));
  CHECK_CUDA(cudaMemsetAsync(pinned.as() + 1, 0, 64, s.s), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemcpyAsync(a.p, pageable.data(), 65, cudaMemcpyHostToDevice, s.s), cudaErrorInvalidValue);
  CHECK_CUDA(cudaMemsetAsync(a.as() + 1, 0, 64, s.s), cudaErrorInvalidValue);
}

TEST_CASE(pageable_copies_stage_the_source_at_the_call) {
  Fresh fresh;
  RawStream s;
  Dev dev(256);
  std::vector<unsigned char> pageable(256, 1), back(256, 0);
  Pinned pinned(256);
  // From pageable memory the source is staged before the call returns: reusing it is safe.
  {
    Hang hang(s.s);
    OK(cudaMemcpyAsync(dev.p, pageable.data(), 256, cudaMemcpyHostToDevice, s.s));
    std::fill(pageable.begin(), pageable.end(), 2);
  }
  OK(cudaStreamSynchronize(s.s));
  OK(cudaMemcpy(back.data(), dev.p, 256, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(back.data(), 256, 1));
  // From pinned memory the stream reads the source when it runs: reuse before then shows.
  std::memset(pinned.p, 1, 256);
  {
    Hang hang(s.s);
    OK(cudaMemcpyAsync(dev.p, pinned.p, 256, cudaMemcpyHostToDevice, s.s));
    std::memset(pinned.p, 2, 256);
  }
  OK(cudaStreamSynchronize(s.s));
  OK(cudaMemcpy(back.data(), dev.p, 256, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(back.data(), 256, 2));
  // Into pageable memory CUDA promises only "might be synchronous": the double gives the
  // weakest reading, so the bytes land when the stream runs the copy.
  std::fill(back.begin(), back.end(), 0);
  {
    Hang hang(s.s);
    OK(cudaMemsetAsync(dev.p, 9, 256, s.s));
    OK(cudaMemcpyAsync(back.data(), dev.p, 256, cudaMemcpyDeviceToHost, s.s));
    CHECK(all_bytes(back.data(), 256, 0));
  }
  OK(cudaStreamSynchronize(s.s));
  CHECK(all_bytes(back.data(), 256, 9));
  // Host to host is synchronous with the host on any stream.
  std::vector<unsigned char> other(256, 7);
  OK(cudaMemcpyAsync(back.data(), other.data(), 256, cudaMemcpyHostToHost, s.s));
  CHECK(all_bytes(back.data(), 256, 7));
  CHECK_EQ(fc::counters().pageable_copies, 5u);  // 1 H2D from pageable, 3 D2H into pageable, 1 H2H
}

TEST_CASE(free_waits_for_outstanding_work_and_rejects_unknown_pointers) {
  Fresh fresh;
  RawStream s;
  void* dev = nullptr;
  OK(cudaMalloc(&dev, 64));
  Pinned pinned(64);
  std::promise<void> go;
  std::shared_future<void> go_f = go.get_future().share();
  std::function<void()> block = [go_f] { go_f.wait(); };
  OK(cudaLaunchHostFunc(s.s, run_function, &block));
  OK(cudaMemcpyAsync(pinned.p, dev, 64, cudaMemcpyDeviceToHost, s.s));
  std::uint64_t copies_when_freed = 99;
  cudaError_t freed = cudaErrorUnknown;
  std::thread freer([&] {
    freed = cudaFree(dev);
    copies_when_freed = fc::counters().copies_d2h;
  });
  go.set_value();
  freer.join();
  CHECK_CUDA(freed, cudaSuccess);
  CHECK_EQ(copies_when_freed, 1u);  // the copy that read the buffer ran before the free returned
  CHECK_EQ(fc::counters().live_device_allocations, 0u);

  std::vector<unsigned char> pageable(64);
  CHECK_CUDA(cudaFree(dev), cudaErrorInvalidValue);  // twice
  CHECK_CUDA(cudaFree(pageable.data()), cudaErrorInvalidValue);
  CHECK_CUDA(cudaFree(pinned.p), cudaErrorInvalidValue);
  Dev live(64);
  CHECK_CUDA(cudaFree(live.as() + 1), cudaErrorInvalidValue);  // not the start of the allocation
  CHECK_CUDA(cudaFreeHost(live.p), cudaErrorInvalidValue);
  CHECK_CUDA(cudaFreeHost(pageable.data()), cudaErrorInvalidValue);
  OK(cudaFree(nullptr));
  OK(cudaFreeHost(nullptr));
  CHECK_EQ(fc::counters().live_device_allocations, 1u);
  CHECK_EQ(fc::counters().live_pinned_allocations, 1u);
}

TEST_CASE(pointer_attributes_tell_device_pinned_and_unregistered_memory) {
  Fresh fresh;
  OK(cudaSetDevice(1));
  Dev on1(64);
  OK(cudaSetDevice(0));
  Pinned pinned(64);
  std::vector<unsigned char> pageable(64);
  cudaPointerAttributes at{};
  OK(cudaPointerGetAttributes(&at, on1.as() + 8));
  CHECK_EQ(static_cast<int>(at.type), static_cast<int>(cudaMemoryTypeDevice));
  CHECK_EQ(at.device, 1);
  CHECK(at.devicePointer == on1.as() + 8);
  CHECK(at.hostPointer == nullptr);
  OK(cudaPointerGetAttributes(&at, pinned.p));
  CHECK_EQ(static_cast<int>(at.type), static_cast<int>(cudaMemoryTypeHost));
  CHECK_EQ(at.device, 0);
  CHECK(at.hostPointer == pinned.p);
  CHECK(at.devicePointer == pinned.p);
  OK(cudaPointerGetAttributes(&at, pageable.data()));
  CHECK_EQ(static_cast<int>(at.type), static_cast<int>(cudaMemoryTypeUnregistered));
  CHECK(at.devicePointer == nullptr);
  int device = -1;
  CHECK(fc::is_device_pointer(on1.as() + 63, &device));
  CHECK_EQ(device, 1);
  CHECK(!fc::is_device_pointer(on1.as() + 64));
  CHECK(!fc::is_device_pointer(pinned.p));
  CHECK_CUDA(cudaPointerGetAttributes(nullptr, pinned.p), cudaErrorInvalidValue);
}

TEST_CASE(sticky_fault_poisons_its_device_only) {
  Fresh fresh;
  RawStream s0;
  Dev a(64);
  OK(cudaSetDevice(1));
  RawStream s1;
  Dev b(64);
  OK(cudaSetDevice(0));

  fc::inject_fault(s0.s);
  OK(cudaMemsetAsync(a.p, 1, 64, s0.s));  // asynchronous: the fault is not known yet
  CHECK_CUDA(cudaStreamSynchronize(s0.s), cudaErrorLaunchFailure);
  CHECK_CUDA(fc::sticky_error(0), cudaErrorLaunchFailure);
  CHECK_EQ(fc::counters().memsets, 0u);  // the faulting op did not run
  CHECK_EQ(fc::counters().faults, 1u);
  // Every later call on device 0 returns it, and reading it does not clear it.
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, 16), cudaErrorLaunchFailure);
  CHECK_CUDA(cudaMemsetAsync(a.p, 1, 64, s0.s), cudaErrorLaunchFailure);
  CHECK_CUDA(cudaStreamQuery(s0.s), cudaErrorLaunchFailure);
  cudaEvent_t e = nullptr;
  CHECK_CUDA(cudaEventCreate(&e), cudaErrorLaunchFailure);
  CHECK_CUDA(cudaGetLastError(), cudaErrorLaunchFailure);
  CHECK_CUDA(cudaGetLastError(), cudaErrorLaunchFailure);
  CHECK_CUDA(cudaPeekAtLastError(), cudaErrorLaunchFailure);
  cudaError_t other_thread = cudaSuccess;
  std::thread([&] { other_thread = cudaGetLastError(); }).join();  // its current device is 0 too
  CHECK_CUDA(other_thread, cudaErrorLaunchFailure);

  // Device 1 is untouched.
  OK(cudaSetDevice(1));
  OK(cudaGetLastError());  // the last error was read above, and device 1 has no sticky one
  OK(cudaMemsetAsync(b.p, 2, 64, s1.s));
  OK(cudaStreamSynchronize(s1.s));
  CHECK_CUDA(fc::sticky_error(1), cudaSuccess);
  // A kernel reading memory that is not the device's own faults its device, asynchronously
  // (hung across the launch: else the fault may already show in the launch's own check).
  std::vector<float> host_src(16, 1.0f);
  {
    Hang hang(s1.s);
    k::quantize_int8_linear(b.as<std::int8_t>(), host_src.data(), 16, s1.s);
  }
  CHECK_CUDA(cudaStreamSynchronize(s1.s), cudaErrorIllegalAddress);
  CHECK_CUDA(fc::sticky_error(1), cudaErrorIllegalAddress);
  OK(cudaSetDevice(0));

  // The legacy stream can be faulted too: its op runs in the caller, so the call returns it.
  fc::reset();
  Dev c(64);
  fc::inject_fault(nullptr);
  CHECK_CUDA(cudaMemset(c.p, 0, 64), cudaErrorLaunchFailure);
  CHECK_CUDA(fc::sticky_error(0), cudaErrorLaunchFailure);
}

TEST_CASE(non_sticky_errors_stay_the_last_error_until_read) {
  Fresh fresh;
  CHECK_CUDA(cudaMalloc(nullptr, 16), cudaErrorInvalidValue);
  CHECK_CUDA(cudaPeekAtLastError(), cudaErrorInvalidValue);
  CHECK_CUDA(cudaPeekAtLastError(), cudaErrorInvalidValue);
  CHECK_CUDA(cudaGetLastError(), cudaErrorInvalidValue);
  OK(cudaGetLastError());
  // A later success does not clear it.
  CHECK_CUDA(cudaSetDevice(5), cudaErrorInvalidDevice);
  OK(cudaSetDevice(0));
  CHECK_CUDA(cudaGetLastError(), cudaErrorInvalidDevice);
  OK(cudaGetLastError());
  // It belongs to the thread that made the call.
  std::thread([] { cudaSetDevice(7); }).join();
  OK(cudaGetLastError());
  // cudaErrorNotReady is a status, not an error.
  RawStream s;
  {
    Hang hang(s.s);
    OK(cudaMemsetAsync(nullptr, 0, 0, s.s));
    std::function<void()> nothing = [] {};
    OK(cudaLaunchHostFunc(s.s, run_function, &nothing));
    CHECK_CUDA(cudaStreamQuery(s.s), cudaErrorNotReady);
    OK(cudaGetLastError());
  }
  OK(cudaStreamSynchronize(s.s));

  CHECK_EQ(std::string(cudaGetErrorName(cudaErrorMemoryAllocation)), std::string("cudaErrorMemoryAllocation"));
  CHECK_EQ(std::string(cudaGetErrorString(cudaErrorMemoryAllocation)), std::string("out of memory"));
  CHECK_EQ(std::string(cudaGetErrorName(static_cast<cudaError_t>(12345))), std::string("unrecognized error code"));
  // fastres's check() names the call and the error, and clears the last error.
  CHECK_CUDA(cudaMalloc(nullptr, 16), cudaErrorInvalidValue);
  CHECK_THROWS(cu::check(cudaErrorInvalidValue, "cudaMalloc(16 bytes)"), fastres::CudaError,
               "cudaMalloc(16 bytes) failed: cudaErrorInvalidValue (invalid argument)");
  OK(cudaGetLastError());
}

TEST_CASE(host_functions_run_in_order_and_may_not_call_cuda) {
  Fresh fresh;
  RawStream s;
  cudaError_t malloc_status = cudaSuccess, query_status = cudaSuccess, last_status = cudaSuccess;
  std::thread::id ran_on;
  std::uint64_t streams_seen = 0;
  std::function<void()> forbidden = [&] {
    void* p = nullptr;
    malloc_status = cudaMalloc(&p, 16);
    query_status = cudaStreamQuery(s.s);
    last_status = cudaGetLastError();
    ran_on = std::this_thread::get_id();
    streams_seen = fc::counters().live_streams;  // the control API is allowed
  };
  OK(cudaLaunchHostFunc(s.s, run_function, &forbidden));
  Dev dev(16);
  OK(cudaMemsetAsync(dev.p, 3, 16, s.s));  // the worker is a normal worker again afterwards
  OK(cudaStreamSynchronize(s.s));
  CHECK_CUDA(malloc_status, cudaErrorNotPermitted);
  CHECK_CUDA(query_status, cudaErrorNotPermitted);
  CHECK_CUDA(last_status, cudaErrorNotPermitted);
  CHECK(ran_on != std::this_thread::get_id());
  CHECK_EQ(streams_seen, 1u);
  CHECK_EQ(fc::counters().live_device_allocations, 1u);
  CHECK_EQ(fc::counters().memsets, 1u);
  // On the legacy stream it runs in the caller, under the same rule; the caller is free again after.
  malloc_status = cudaSuccess;
  OK(cudaLaunchHostFunc(nullptr, run_function, &forbidden));
  CHECK_CUDA(malloc_status, cudaErrorNotPermitted);
  CHECK(ran_on == std::this_thread::get_id());
  void* p = nullptr;
  OK(cudaMalloc(&p, 16));
  OK(cudaFree(p));
  CHECK_CUDA(cudaLaunchHostFunc(s.s, nullptr, nullptr), cudaErrorInvalidValue);
}

TEST_CASE(capture_records_without_running_and_replays_in_order) {
  Fresh fresh;
  RawStream s, s2;
  Dev a(64), b(64);
  Pinned in(64), out(64);
  int runs = 0;
  unsigned char seen = 0;
  std::function<void()> count = [&] {
    ++runs;
    seen = out.as()[0];  // after the first copy, before the last
  };
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  OK(cudaStreamIsCapturing(s.s, &status));
  CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusActive));
  OK(cudaMemcpyAsync(a.p, in.p, 64, cudaMemcpyHostToDevice, s.s));
  OK(cudaMemcpyAsync(b.p, a.p, 64, cudaMemcpyDeviceToDevice, s.s));
  OK(cudaLaunchHostFunc(s.s, run_function, &count));
  OK(cudaMemcpyAsync(out.p, b.p, 64, cudaMemcpyDeviceToHost, s.s));
  cudaGraph_t graph = nullptr;
  OK(cudaStreamEndCapture(s.s, &graph));
  CHECK(graph != nullptr);
  OK(cudaStreamIsCapturing(s.s, &status));
  CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusNone));
  CHECK_EQ(runs, 0);  // captured, not run
  CHECK_EQ(fc::counters().copies_h2d, 0u);

  cudaGraphExec_t exec = nullptr;
  OK(cudaGraphInstantiate(&exec, graph, 0));
  OK(cudaGraphDestroy(graph));  // the exec keeps what it needs
  for (unsigned char round = 1; round <= 3; ++round) {
    std::memset(in.p, round, 64);
    std::memset(out.p, 0, 64);
    OK(cudaGraphLaunch(exec, round == 3 ? s2.s : s.s));  // any stream of the device
    OK(cudaStreamSynchronize(round == 3 ? s2.s : s.s));
    CHECK(all_bytes(out.p, 64, round));
    CHECK_EQ(runs, static_cast<int>(round));
    CHECK_EQ(int{seen}, 0);
  }
  const fc::Counters c = fc::counters();
  CHECK_EQ(c.graph_launches, 3u);
  CHECK_EQ(c.copies_h2d, 3u);
  CHECK_EQ(c.copies_d2d, 3u);
  CHECK_EQ(c.copies_d2h, 3u);
  CHECK_EQ(c.host_functions, 3u);
  CHECK_EQ(c.live_graphs, 0u);
  CHECK_EQ(c.live_graph_execs, 1u);
  OK(cudaGraphExecDestroy(exec));
  CHECK_EQ(fc::counters().live_graph_execs, 0u);
}

TEST_CASE(capture_rejects_syncs_and_unsafe_calls_and_is_invalidated) {
  Fresh fresh;
  RawStream s, outside;
  Dev dev(64);
  std::vector<unsigned char> pageable(64, 0);
  RawEvent recorded_outside;
  OK(cudaEventRecord(recorded_outside.e, outside.s));
  OK(cudaStreamSynchronize(outside.s));
  int cases = 0;
  // Begins a capture, makes `call` (which must fail with `want`), then checks that the capture
  // is invalidated, refuses more work, ends with cudaErrorStreamCaptureInvalidated and no graph,
  // and leaves the stream usable.
  auto expect = [&](const char* what, cudaError_t want, const std::function<cudaError_t()>& call) {
    ++cases;
    OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
    OK(cudaMemsetAsync(dev.p, 1, 64, s.s));
    const cudaError_t got = call();
    if (got != want) {
      ::check::fail(__FILE__, __LINE__, std::string(what) + " returned " + cudaGetErrorName(got) + ", expected " +
                                             cudaGetErrorName(want));
    }
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    OK(cudaStreamIsCapturing(s.s, &status));
    CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusInvalidated));
    CHECK_CUDA(cudaMemsetAsync(dev.p, 1, 64, s.s), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(0x1);
    CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
    CHECK(graph == nullptr);
    OK(cudaStreamIsCapturing(s.s, &status));
    CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusNone));
    CHECK_CUDA(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);  // EndCapture's, the last failure
    CHECK_EQ(fc::counters().captures_invalidated, static_cast<std::uint64_t>(cases));
  };
  expect("cudaStreamSynchronize", cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamSynchronize(s.s); });
  expect("cudaStreamQuery", cudaErrorStreamCaptureUnsupported, [&] { return cudaStreamQuery(s.s); });
  expect("cudaMemcpy", cudaErrorStreamCaptureUnsupported,
         [&] { return cudaMemcpy(dev.p, pageable.data(), 64, cudaMemcpyHostToDevice); });
  expect("cudaMemset", cudaErrorStreamCaptureUnsupported, [&] { return cudaMemset(dev.p, 0, 64); });
  expect("cudaMalloc", cudaErrorStreamCaptureUnsupported, [&] {
    void* p = nullptr;
    return cudaMalloc(&p, 64);
  });
  expect("cudaHostAlloc", cudaErrorStreamCaptureUnsupported, [&] {
    void* p = nullptr;
    return cudaHostAlloc(&p, 64, 0);
  });
  expect("cudaDeviceSynchronize", cudaErrorStreamCaptureUnsupported, [] { return cudaDeviceSynchronize(); });
  expect("cudaMemcpyAsync from pageable memory", cudaErrorStreamCaptureUnsupported,
         [&] { return cudaMemcpyAsync(dev.p, pageable.data(), 64, cudaMemcpyHostToDevice, s.s); });
  expect("cudaMemcpyAsync into pageable memory", cudaErrorStreamCaptureUnsupported,
         [&] { return cudaMemcpyAsync(pageable.data(), dev.p, 64, cudaMemcpyDeviceToHost, s.s); });
  RawEvent captured;
  expect("cudaEventQuery of a captured event", cudaErrorCapturedEvent, [&] {
    OK(cudaEventRecord(captured.e, s.s));
    return cudaEventQuery(captured.e);
  });
  expect("cudaEventSynchronize of a captured event", cudaErrorCapturedEvent, [&] {
    OK(cudaEventRecord(captured.e, s.s));
    return cudaEventSynchronize(captured.e);
  });
  expect("waiting on an event recorded outside", cudaErrorStreamCaptureIsolation,
         [&] { return cudaStreamWaitEvent(s.s, recorded_outside.e, 0); });
  // An event last recorded in a capture stays unusable to the host after it ended, until it is
  // recorded again outside one.
  CHECK_CUDA(cudaEventQuery(captured.e), cudaErrorCapturedEvent);
  OK(cudaEventRecord(captured.e, s.s));
  OK(cudaEventSynchronize(captured.e));

  // The legacy stream may not be used while a blocking stream captures.
  RawStream blocking(cudaStreamDefault);
  OK(cudaStreamBeginCapture(blocking.s, cudaStreamCaptureModeRelaxed));
  CHECK_CUDA(cudaMemsetAsync(dev.p, 0, 64, nullptr), cudaErrorStreamCaptureImplicit);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CHECK_CUDA(cudaStreamIsCapturing(nullptr, &status), cudaErrorStreamCaptureImplicit);
  cudaGraph_t graph = nullptr;
  CHECK_CUDA(cudaStreamEndCapture(blocking.s, &graph), cudaErrorStreamCaptureInvalidated);

  // Capture misuse that invalidates nothing.
  CHECK_CUDA(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
  CHECK_CUDA(cudaStreamBeginCapture(s.s, static_cast<cudaStreamCaptureMode>(9)), cudaErrorInvalidValue);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorIllegalState);
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  CHECK_CUDA(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal), cudaErrorIllegalState);
  OK(cudaStreamEndCapture(s.s, &graph));
  OK(cudaGraphDestroy(graph));
  // After all that, the stream works.
  OK(cudaMemsetAsync(dev.p, 8, 64, s.s));
  OK(cudaStreamSynchronize(s.s));
  OK(cudaMemcpy(pageable.data(), dev.p, 64, cudaMemcpyDeviceToHost));
  CHECK(all_bytes(pageable.data(), 64, 8));
  CHECK_EQ(fc::counters().memsets, 1u);  // none of the captured memsets ever ran
}

TEST_CASE(capture_mode_decides_which_threads_may_make_unsafe_calls) {
  Fresh fresh;
  RawStream s;
  Dev dev(16);
  auto malloc_on_other_thread = [] {
    cudaError_t status = cudaSuccess;
    std::thread([&] {
      void* p = nullptr;
      status = cudaMalloc(&p, 16);
      if (status == cudaSuccess) cudaFree(p);
    }).join();
    return status;
  };
  auto capture_status = [&] {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    OK(cudaStreamIsCapturing(s.s, &status));
    return static_cast<int>(status);
  };
  cudaGraph_t graph = nullptr;
  // Thread-local: only the capturing thread is restricted.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  CHECK_CUDA(malloc_on_other_thread(), cudaSuccess);
  CHECK_EQ(capture_status(), static_cast<int>(cudaStreamCaptureStatusActive));
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, 16), cudaErrorStreamCaptureUnsupported);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
  // Global: every thread is.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeGlobal));
  CHECK_CUDA(malloc_on_other_thread(), cudaErrorStreamCaptureUnsupported);
  CHECK_EQ(capture_status(), static_cast<int>(cudaStreamCaptureStatusInvalidated));
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
  // Relaxed: nobody is.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeRelaxed));
  OK(cudaMalloc(&p, 16));
  OK(cudaFree(p));
  CHECK_EQ(capture_status(), static_cast<int>(cudaStreamCaptureStatusActive));
  cudaError_t ended = cudaErrorUnknown;
  std::thread([&] { ended = cudaStreamEndCapture(s.s, &graph); }).join();  // from any thread
  CHECK_CUDA(ended, cudaSuccess);
  OK(cudaGraphDestroy(graph));
  // A non-relaxed capture must be ended by the thread that began it.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  std::thread([&] { ended = cudaStreamEndCapture(s.s, &graph); }).join();
  CHECK_CUDA(ended, cudaErrorStreamCaptureWrongThread);
  CHECK_EQ(capture_status(), static_cast<int>(cudaStreamCaptureStatusActive));
  OK(cudaStreamEndCapture(s.s, &graph));
  OK(cudaGraphDestroy(graph));
}

TEST_CASE(captured_events_fork_and_join_streams) {
  Fresh fresh;
  RawStream s, t, u;
  RawEvent fork, join, other;
  Dev a(64), b(64);
  Pinned in(64), out(64);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaGraph_t graph = nullptr;
  // Fork t off s, work on both, join t back: one graph with both streams' work.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaMemcpyAsync(a.p, in.p, 64, cudaMemcpyHostToDevice, s.s));
  OK(cudaEventRecord(fork.e, s.s));
  OK(cudaStreamWaitEvent(t.s, fork.e, 0));
  OK(cudaStreamIsCapturing(t.s, &status));
  CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusActive));
  OK(cudaMemcpyAsync(b.p, a.p, 64, cudaMemcpyDeviceToDevice, t.s));
  OK(cudaEventRecord(join.e, t.s));
  OK(cudaStreamWaitEvent(s.s, join.e, 0));
  OK(cudaMemcpyAsync(out.p, b.p, 64, cudaMemcpyDeviceToHost, s.s));
  OK(cudaStreamEndCapture(s.s, &graph));
  OK(cudaStreamIsCapturing(t.s, &status));
  CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusNone));
  CHECK_EQ(fc::counters().copies_d2d, 0u);
  cudaGraphExec_t exec = nullptr;
  OK(cudaGraphInstantiate(&exec, graph, 0));
  std::memset(in.p, 5, 64);
  OK(cudaGraphLaunch(exec, s.s));
  OK(cudaStreamSynchronize(s.s));
  CHECK(all_bytes(out.p, 64, 5));
  CHECK_EQ(fc::counters().copies_d2d, 1u);
  OK(cudaGraphExecDestroy(exec));
  OK(cudaGraphDestroy(graph));

  // A fork that is never joined back.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaEventRecord(fork.e, s.s));
  OK(cudaStreamWaitEvent(t.s, fork.e, 0));
  OK(cudaMemsetAsync(b.p, 0, 64, t.s));
  graph = reinterpret_cast<cudaGraph_t>(0x1);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureUnjoined);
  CHECK(graph == nullptr);
  OK(cudaStreamIsCapturing(t.s, &status));
  CHECK_EQ(static_cast<int>(status), static_cast<int>(cudaStreamCaptureStatusNone));
  // Ended on the forked stream instead of the origin.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaEventRecord(fork.e, s.s));
  OK(cudaStreamWaitEvent(t.s, fork.e, 0));
  CHECK_CUDA(cudaStreamEndCapture(t.s, &graph), cudaErrorStreamCaptureUnmatched);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
  // Two captures may not be merged.
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaStreamBeginCapture(u.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaEventRecord(other.e, u.s));
  CHECK_CUDA(cudaStreamWaitEvent(s.s, other.e, 0), cudaErrorStreamCaptureMerge);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
  OK(cudaStreamEndCapture(u.s, &graph));
  OK(cudaGraphDestroy(graph));
  // A stream of another device cannot join (the double's graphs are single-device).
  OK(cudaSetDevice(1));
  RawStream on1;
  OK(cudaSetDevice(0));
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaEventRecord(fork.e, s.s));
  CHECK_CUDA(cudaStreamWaitEvent(on1.s, fork.e, 0), cudaErrorStreamCaptureUnsupported);
  CHECK_CUDA(cudaStreamEndCapture(s.s, &graph), cudaErrorStreamCaptureInvalidated);
}

TEST_CASE(graph_launch_checks_devices_and_serialises_relaunches) {
  Fresh fresh;
  RawStream s, s2;
  int runs = 0;
  std::function<void()> count = [&] { ++runs; };
  OK(cudaStreamBeginCapture(s.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaLaunchHostFunc(s.s, run_function, &count));
  cudaGraph_t graph = nullptr;
  OK(cudaStreamEndCapture(s.s, &graph));
  cudaGraphExec_t exec = nullptr;
  OK(cudaGraphInstantiate(&exec, graph, 0));
  // Another device's stream is refused; the legacy stream runs it in the caller.
  OK(cudaSetDevice(1));
  cudaStream_t on1 = nullptr;
  OK(cudaStreamCreate(&on1));
  CHECK_CUDA(cudaGraphLaunch(exec, on1), cudaErrorInvalidValue);
  CHECK_CUDA(cudaGraphLaunch(exec, nullptr), cudaErrorInvalidValue);  // device 1's legacy stream
  OK(cudaStreamDestroy(on1));
  OK(cudaSetDevice(0));
  OK(cudaGraphLaunch(exec, nullptr));
  CHECK_EQ(runs, 1);
  // Launches of one exec never overlap, whichever streams they are on.
  {
    Hang hang(s.s);
    OK(cudaGraphLaunch(exec, s.s));
    OK(cudaGraphLaunch(exec, s2.s));
    CHECK_CUDA(cudaStreamQuery(s2.s), cudaErrorNotReady);
  }
  OK(cudaStreamSynchronize(s2.s));
  CHECK_EQ(runs, 3);
  // A launch captured into another capture replays with it.
  OK(cudaStreamBeginCapture(s2.s, cudaStreamCaptureModeThreadLocal));
  OK(cudaGraphLaunch(exec, s2.s));
  OK(cudaGraphLaunch(exec, s2.s));
  cudaGraph_t outer = nullptr;
  OK(cudaStreamEndCapture(s2.s, &outer));
  cudaGraphExec_t outer_exec = nullptr;
  OK(cudaGraphInstantiate(&outer_exec, outer, cudaGraphInstantiateFlagAutoFreeOnLaunch));
  OK(cudaGraphLaunch(outer_exec, s.s));
  OK(cudaStreamSynchronize(s.s));
  CHECK_EQ(runs, 5);
  CHECK_EQ(fc::counters().graph_launches, 4u);  // the captured launches are part of the outer one

  CHECK_CUDA(cudaGraphInstantiate(&outer_exec, nullptr, 0), cudaErrorInvalidValue);
  CHECK_CUDA(cudaGraphInstantiate(&outer_exec, graph, 1ull << 40), cudaErrorInvalidValue);
  CHECK_CUDA(cudaGraphLaunch(nullptr, s.s), cudaErrorInvalidValue);
  OK(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphLaunch(exec, s.s), cudaErrorInvalidResourceHandle);
  CHECK_CUDA(cudaGraphExecDestroy(exec), cudaErrorInvalidResourceHandle);
  OK(cudaGraphDestroy(graph));
  CHECK_CUDA(cudaGraphDestroy(graph), cudaErrorInvalidResourceHandle);
  OK(cudaGraphExecDestroy(outer_exec));
  OK(cudaGraphDestroy(outer));
}

TEST_CASE(stream_destroy_returns_at_once_and_pending_work_completes) {
  Fresh fresh;
  cudaStream_t s = nullptr;
  OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  RawEvent done;
  std::promise<void> go;
  std::shared_future<void> go_f = go.get_future().share();
  std::promise<void> ran;
  std::future<void> ran_f = ran.get_future();
  std::function<void()> block = [go_f] { go_f.wait(); };
  std::function<void()> finish = [&ran] { ran.set_value(); };
  OK(cudaLaunchHostFunc(s, run_function, &block));
  OK(cudaLaunchHostFunc(s, run_function, &finish));
  OK(cudaEventRecord(done.e, s));
  OK(cudaStreamDestroy(s));  // returns while the first host function still blocks
  CHECK_EQ(fc::counters().live_streams, 0u);
  CHECK_CUDA(cudaStreamQuery(s), cudaErrorInvalidResourceHandle);
  CHECK_CUDA(cudaStreamDestroy(s), cudaErrorInvalidResourceHandle);
  CHECK_CUDA(cudaMemsetAsync(nullptr, 0, 0, s), cudaErrorInvalidResourceHandle);
  go.set_value();
  ran_f.wait();  // the queued work still ran
  OK(cudaEventSynchronize(done.e));
  CHECK_EQ(fc::counters().host_functions, 2u);
  CHECK_CUDA(cudaStreamDestroy(nullptr), cudaErrorInvalidResourceHandle);
}

TEST_CASE(hung_stream_blocks_until_released) {
  Fresh fresh;
  RawStream s;
  Dev dev(16);
  cudaError_t synced = cudaErrorUnknown;
  std::thread waiter;
  {
    Hang hang(s.s);
    OK(cudaMemsetAsync(dev.p, 2, 16, s.s));
    waiter = std::thread([&] { synced = cudaStreamSynchronize(s.s); });
    CHECK_CUDA(cudaStreamQuery(s.s), cudaErrorNotReady);
    CHECK_EQ(fc::counters().memsets, 0u);
    cu::Event ev;
    ev.record(s.s);
    CHECK(!ev.query());  // what a watchdog polling the event sees
    hang.release();
    ev.synchronize();
    CHECK(ev.query());
  }
  waiter.join();
  CHECK_CUDA(synced, cudaSuccess);
  CHECK_EQ(fc::counters().memsets, 1u);
  CHECK_THROWS(fc::hang_stream(nullptr, true), std::invalid_argument, "legacy");
  CHECK_THROWS(fc::hang_stream(reinterpret_cast<cudaStream_t>(0x999999), true), std::invalid_argument, "stream");
}

TEST_CASE(memory_limit_and_fail_next_inject_failures) {
  Fresh fresh;
  fc::set_memory_limit(std::size_t{1} << 20);
  void* a = nullptr;
  void* b = nullptr;
  OK(cudaMalloc(&a, 512 * 1024));
  CHECK_CUDA(cudaMalloc(&b, 600 * 1024), cudaErrorMemoryAllocation);
  std::size_t free_bytes = 0, total = 0;
  OK(cudaMemGetInfo(&free_bytes, &total));
  CHECK_EQ(total, std::size_t{1} << 20);
  CHECK_EQ(free_bytes, std::size_t{512} * 1024);
  OK(cudaSetDevice(1));  // each device has its own memory
  OK(cudaMalloc(&b, 600 * 1024));
  OK(cudaFree(b));
  OK(cudaSetDevice(0));
  OK(cudaFree(a));
  OK(cudaMemGetInfo(&free_bytes, &total));
  CHECK_EQ(free_bytes, total);

  fc::fail_next("cudaMalloc", cudaErrorMemoryAllocation, 2);
  CHECK_CUDA(cudaMalloc(&a, 16), cudaErrorMemoryAllocation);
  CHECK_CUDA(cudaMalloc(&a, 16), cudaErrorMemoryAllocation);
  OK(cudaMalloc(&a, 16));
  OK(cudaFree(a));
  CHECK_EQ(fc::counters().live_device_allocations, 0u);  // the failed calls allocated nothing
  fc::fail_next("cudaStreamCreateWithFlags", cudaErrorNotPermitted);
  cudaStream_t s = nullptr;
  CHECK_CUDA(cudaStreamCreate(&s), cudaSuccess);  // another API: unaffected
  CHECK_CUDA(cudaStreamCreateWithFlags(&s, 0), cudaErrorNotPermitted);
  CHECK_EQ(fc::counters().live_streams, 1u);
  fc::fail_next("cudaEventRecord", cudaErrorInvalidValue, 5);
  fc::fail_next("cudaEventRecord", cudaErrorInvalidValue, 0);  // cleared
  RawEvent e;
  OK(cudaEventRecord(e.e, s));
  OK(cudaStreamSynchronize(s));
  OK(cudaStreamDestroy(s));
  CHECK_CUDA(cudaGetLastError(), cudaErrorNotPermitted);  // the last failure, kept through successes
}

TEST_CASE(reset_frees_everything_and_counters_track_live_objects) {
  Fresh fresh;
  cudaStream_t s1 = nullptr, s2 = nullptr;
  OK(cudaStreamCreate(&s1));
  OK(cudaStreamCreateWithPriority(&s2, cudaStreamNonBlocking, -3));
  cudaEvent_t e = nullptr;
  OK(cudaEventCreate(&e));
  void* d = nullptr;
  void* h = nullptr;
  OK(cudaMalloc(&d, 100));
  OK(cudaHostAlloc(&h, 200, 0));
  OK(cudaStreamBeginCapture(s2, cudaStreamCaptureModeRelaxed));
  cudaGraph_t g = nullptr;
  OK(cudaStreamEndCapture(s2, &g));
  cudaGraphExec_t x = nullptr;
  OK(cudaGraphInstantiate(&x, g, 0));
  fc::Counters c = fc::counters();
  CHECK_EQ(c.live_streams, 2u);
  CHECK_EQ(c.live_events, 1u);
  CHECK_EQ(c.live_device_allocations, 1u);
  CHECK_EQ(c.live_device_bytes, 100u);
  CHECK_EQ(c.live_pinned_allocations, 1u);
  CHECK_EQ(c.live_pinned_bytes, 200u);
  CHECK_EQ(c.live_graphs, 1u);
  CHECK_EQ(c.live_graph_execs, 1u);
  CHECK_THROWS(fc::set_device_count(4), std::logic_error, "reset() first");
  // Leave a mess: a hung stream with queued work, a sticky fault, a pending failure, a delay.
  fc::hang_stream(s1, true);
  OK(cudaMemsetAsync(d, 0, 100, s1));
  fc::inject_fault(s2);
  OK(cudaMemsetAsync(d, 0, 100, s2));
  fc::fail_next("cudaMalloc", cudaErrorMemoryAllocation, 3);
  OK(cudaSetDevice(1));
  fc::reset();
  c = fc::counters();
  CHECK_EQ(c.live_streams + c.live_events + c.live_graphs + c.live_graph_execs, 0u);
  CHECK_EQ(c.live_device_allocations + c.live_pinned_allocations, 0u);
  CHECK_EQ(c.memsets + c.faults, 0u);
  CHECK_CUDA(fc::sticky_error(0), cudaSuccess);
  int dev = -1;
  OK(cudaGetDevice(&dev));
  CHECK_EQ(dev, 0);
  OK(cudaMalloc(&d, 16));  // the pending failures are gone
  OK(cudaFree(d));
  CHECK_CUDA(cudaStreamQuery(s1), cudaErrorInvalidResourceHandle);  // old handles are invalid
  CHECK_CUDA(cudaEventQuery(e), cudaErrorInvalidResourceHandle);
  CHECK_CUDA(cudaGraphLaunch(x, nullptr), cudaErrorInvalidResourceHandle);
  fc::set_device_count(4);
  int n = 0;
  OK(cudaGetDeviceCount(&n));
  CHECK_EQ(n, 4);
}

namespace {

// One executor-like stream slot on `thread`'s device: copy in on one stream, quantize and copy
// out on another after an event, wait on a second event. Returns the rounds that disagreed with
// the host twin.
int pipeline_mismatches(int thread, int rounds, std::size_t count) {
  cu::DeviceGuard guard(thread % 2);
  cu::Stream copy_stream, infer_stream;
  cu::Event copied, done;
  cu::DeviceBuffer in(count * sizeof(float)), out(count);
  Pinned host_in(count * sizeof(float)), host_out(count);
  int bad = 0;
  Lcg lcg{static_cast<std::uint32_t>(thread + 1)};
  for (int round = 0; round < rounds; ++round) {
    std::vector<float> x(count);
    for (float& v : x) v = lcg.uniform(-200.0f, 200.0f);
    std::memcpy(host_in.p, x.data(), count * sizeof(float));
    in.copy_from_host(host_in.p, count * sizeof(float), copy_stream.get());
    copied.record(copy_stream.get());
    copied.wait_on(infer_stream.get());
    k::quantize_int8_linear(out.as<std::int8_t>(), in.as<float>(), count, infer_stream.get());
    out.copy_to_host(host_out.p, count, infer_stream.get());
    done.record(infer_stream.get());
    done.synchronize();
    std::vector<std::int8_t> want(count);
    k::quantize_int8_linear_host(want.data(), x.data(), count);
    if (std::memcmp(want.data(), host_out.p, count) != 0) ++bad;
  }
  return bad;
}

}  // namespace

TEST_CASE(threads_with_their_own_streams_agree_with_the_host) {
  Fresh fresh;
  fc::set_op_delay(std::chrono::microseconds(20));  // widen any race the double itself might have
  constexpr int kThreads = 4;
  constexpr int kRounds = 25;
  std::vector<int> mismatches(kThreads, -1);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &mismatches] {
      int& result = mismatches[static_cast<std::size_t>(t)];
      try {
        result = pipeline_mismatches(t, kRounds, 257);
      } catch (const std::exception& e) {
        std::printf("thread %d: %s\n", t, e.what());
        result = -2;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) CHECK_EQ(mismatches[static_cast<std::size_t>(t)], 0);
  CHECK_EQ(fc::counters().kernel_launches["quantize_int8_linear"], static_cast<std::uint64_t>(kThreads * kRounds));
}

// ==================================================================== fastres's CUDA wrappers

TEST_CASE(wrapper_stream_and_event) {
  Fresh fresh;
  {
    cu::Stream st;
    cu::Stream blocking(false, -3);
    CHECK(st.get() != nullptr);
    CHECK_EQ(fc::counters().live_streams, 2u);
    cu::Stream moved(std::move(st));
    CHECK(st.get() == nullptr);
    CHECK_EQ(fc::counters().live_streams, 2u);
    moved.synchronize();
    cu::Event ev;
    CHECK(ev.query());  // never recorded
    cu::Event timed_a(cu::EventWait::kSpin, true), timed_b(cu::EventWait::kBlockingSync, true);
    {
      Hang hang(moved.get());
      timed_a.record(moved.get());
      ev.record(moved.get());
      ev.wait_on(blocking.get());
      timed_b.record(blocking.get());
      CHECK(!ev.query());
      CHECK(!timed_b.query());
    }
    timed_b.synchronize();
    CHECK(ev.query());
    CHECK(cu::Event::elapsed_ms(timed_a, timed_b) >= 0.0f);  // b follows a through the wait
    CHECK_THROWS(cu::Event::elapsed_ms(ev, timed_b), fastres::CudaError, "cudaErrorInvalidResourceHandle");
    cu::Event moved_event(std::move(ev));
    CHECK(ev.get() == nullptr);
    CHECK(moved_event.query());
    CHECK_EQ(fc::counters().live_events, 3u);
    // A fault shows in synchronize() and query(), naming the call.
    fc::inject_fault(moved.get());
    moved_event.record(moved.get());
    CHECK_THROWS(moved.synchronize(), fastres::CudaError,
                 "cudaStreamSynchronize(stream_) failed: cudaErrorLaunchFailure (unspecified launch failure)");
    CHECK_THROWS(moved_event.synchronize(), fastres::CudaError, "cudaEventSynchronize(event_) failed");
    CHECK_THROWS(moved_event.query(), fastres::CudaError, "cudaEventQuery failed: cudaErrorLaunchFailure");
  }
  fc::reset();
  CHECK_EQ(fc::counters().live_streams, 0u);
  fc::fail_next("cudaStreamCreateWithPriority", cudaErrorMemoryAllocation);
  CHECK_THROWS(cu::Stream(), fastres::CudaError,
               "cudaStreamCreateWithPriority(flags=1, priority=0) failed: cudaErrorMemoryAllocation");
  fc::fail_next("cudaEventCreateWithFlags", cudaErrorMemoryAllocation);
  CHECK_THROWS(cu::Event(cu::EventWait::kBlockingSync), fastres::CudaError,
               "cudaEventCreateWithFlags(flags=3) failed");
  OK(cudaGetLastError());  // check() cleared them
  {
    cu::Stream a, b;
    a = std::move(b);  // the old a is destroyed, b's stream moves over
    CHECK_EQ(fc::counters().live_streams, 1u);
    a.synchronize();
  }
  CHECK_EQ(fc::counters().live_streams, 0u);
}

TEST_CASE(wrapper_device_buffer_copies_fills_and_owns) {
  Fresh fresh;
  cu::Stream st;
  Pinned src(256), dst(256);
  for (int i = 0; i < 256; ++i) src.as()[i] = static_cast<unsigned char>(255 - i);
  {
    cu::DeviceBuffer b(256);
    CHECK_EQ(b.size(), 256u);
    CHECK_EQ(b.device(), 0);
    int device = -1;
    CHECK(fc::is_device_pointer(b.data(), &device));
    CHECK_EQ(device, 0);
    b.copy_from_host(src.p, 256, st.get());
    b.copy_to_host(dst.p, 256, st.get());
    st.synchronize();
    CHECK(std::memcmp(src.p, dst.p, 256) == 0);
    b.fill(0x3c, st.get());
    b.copy_to_host(dst.p, 100, st.get());
    st.synchronize();
    CHECK(all_bytes(dst.p, 100, 0x3c));
    CHECK_EQ(int{dst.as()[100]}, int{src.as()[100]});  // only the first 100 bytes came back
    CHECK_THROWS(b.copy_from_host(src.p, 257, st.get()), fastres::InvalidArgument,
                 "DeviceBuffer::copy_from_host: 257 bytes do not fit a device buffer of 256 bytes");
    CHECK_THROWS(b.copy_to_host(dst.p, 300, st.get()), fastres::InvalidArgument, "copy_to_host: 300 bytes");

    cu::DeviceBuffer moved(std::move(b));
    CHECK(b.data() == nullptr);
    CHECK_EQ(b.size(), 0u);
    CHECK_EQ(fc::counters().live_device_allocations, 1u);
    cu::DeviceBuffer other(32);
    other = std::move(moved);  // other's 32 bytes are freed
    CHECK_EQ(fc::counters().live_device_allocations, 1u);
    CHECK_EQ(fc::counters().live_device_bytes, 256u);
    other.copy_to_host(dst.p, 256, st.get());
    st.synchronize();
    CHECK(all_bytes(dst.p, 100, 0x3c));

    cu::DeviceBuffer empty(0);
    CHECK(empty.data() == nullptr);
    empty.copy_from_host(nullptr, 0, st.get());
    empty.fill(1, st.get());
  }
  CHECK_EQ(fc::counters().live_device_allocations, 0u);
  {
    cu::DeviceGuard guard(1);
    cu::DeviceBuffer on1(64);
    CHECK_EQ(on1.device(), 1);
    int device = -1;
    CHECK(fc::is_device_pointer(on1.data(), &device));
    CHECK_EQ(device, 1);
  }
  fc::set_memory_limit(100);
  CHECK_THROWS(cu::DeviceBuffer(200), fastres::CudaError,
               "cudaMalloc(200 bytes) on device 0 failed: cudaErrorMemoryAllocation (out of memory)");
  // DeviceBuffer's header says copies with pageable host memory are synchronous with the host;
  // CUDA promises that only for staging the source of a host-to-device copy. Into pageable
  // memory the copy may still be running when copy_to_host returns.
  fc::set_memory_limit(std::size_t{1} << 20);
  cu::DeviceBuffer b(64);
  b.fill(0x11, st.get());
  std::vector<unsigned char> pageable(64, 0);
  {
    Hang hang(st.get());
    b.copy_to_host(pageable.data(), 64, st.get());
    CHECK(all_bytes(pageable.data(), 64, 0));
  }
  st.synchronize();
  CHECK(all_bytes(pageable.data(), 64, 0x11));
}

TEST_CASE(wrapper_pinned_allocator_pins_and_falls_back_to_pageable) {
  Fresh fresh;
  std::vector<std::string> warnings;  // allocate() runs on this thread only
  auto alloc = std::make_shared<cu::PinnedHostAllocator>([&](const std::string& m) { warnings.push_back(m); });
  void* p = alloc->allocate(1000, 64);
  CHECK(alloc->is_pinned(p));
  CHECK(alloc->pinned());
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
  cudaPointerAttributes at{};
  OK(cudaPointerGetAttributes(&at, p));
  CHECK_EQ(static_cast<int>(at.type), static_cast<int>(cudaMemoryTypeHost));
  void* q = alloc->allocate(100, 8192);  // more than a page: over-allocated and aligned up
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(q) % 8192, 0u);
  CHECK(alloc->is_pinned(q));
  CHECK_EQ(fc::counters().live_pinned_allocations, 2u);
  CHECK_EQ(fc::counters().live_pinned_bytes, 1000u + 100u + 8192u);
  CHECK(warnings.empty());

  fc::fail_next("cudaHostAlloc", cudaErrorMemoryAllocation, 2);
  void* r = alloc->allocate(500, 4096);
  void* r2 = alloc->allocate(500, 4096);
  CHECK(!alloc->is_pinned(r));
  CHECK(!alloc->pinned());
  CHECK_EQ(alloc->fallbacks(), 2u);
  CHECK_EQ(warnings.size(), 1u);  // warned once
  CHECK(alloc->first_warning().find("cudaHostAlloc(500 bytes) failed: cudaErrorMemoryAllocation (out of memory)") !=
        std::string::npos);
  CHECK(alloc->first_warning().find("pageable") != std::string::npos);
  CHECK_EQ(warnings[0], alloc->first_warning());
  CHECK_EQ(reinterpret_cast<std::uintptr_t>(r) % 4096, 0u);
  OK(cudaPointerGetAttributes(&at, r));
  CHECK_EQ(static_cast<int>(at.type), static_cast<int>(cudaMemoryTypeUnregistered));
  OK(cudaGetLastError());  // the allocator cleared the failure
  CHECK_EQ(fc::counters().live_pinned_allocations, 2u);

  // Copies from the fallback are pageable copies; from pinned memory they are not.
  cu::Stream st;
  cu::DeviceBuffer dev(500);
  dev.copy_from_host(r, 500, st.get());
  dev.copy_from_host(p, 500, st.get());
  st.synchronize();
  CHECK_EQ(fc::counters().pageable_copies, 1u);
  CHECK_EQ(fc::counters().copies_h2d, 2u);

  alloc->deallocate(p, 1000, 64);
  alloc->deallocate(q, 100, 8192);
  alloc->deallocate(r, 500, 4096);
  alloc->deallocate(r2, 500, 4096);
  int not_ours = 0;
  alloc->deallocate(&not_ours, 4, 4);  // ignored
  CHECK_EQ(fc::counters().live_pinned_allocations, 0u);
  CHECK(alloc->allocate(0, 64) == nullptr);
  CHECK_THROWS(alloc->allocate(16, 3), fastres::InvalidArgument, "alignment=3");
  {
    fastres::HostBuffer hb(4096, alloc);
    CHECK(alloc->is_pinned(hb.data()));
    CHECK(all_bytes(hb.data(), 4096, 0));  // HostBuffer zeroes what cudaHostAlloc did not
    CHECK_EQ(fc::counters().live_pinned_allocations, 1u);
  }
  CHECK_EQ(fc::counters().live_pinned_allocations, 0u);
}

TEST_CASE(wrapper_graph_capture_and_exec_replay) {
  Fresh fresh;
  constexpr std::size_t kCount = 64;
  cu::Stream st;
  cu::DeviceBuffer in(kCount * sizeof(float)), out(kCount);
  Pinned host_in(kCount * sizeof(float)), host_out(kCount);
  cu::Graph graph = cu::capture(st.get(), [&] {
    in.copy_from_host(host_in.p, kCount * sizeof(float), st.get());
    k::quantize_int8_linear(out.as<std::int8_t>(), in.as<float>(), kCount, st.get());
    out.copy_to_host(host_out.p, kCount, st.get());
  });
  CHECK(static_cast<bool>(graph));
  CHECK_EQ(fc::counters().kernels, 0u);
  cu::GraphExec exec(graph);
  for (int round = 0; round < 3; ++round) {
    std::vector<float> x(kCount);
    for (std::size_t i = 0; i < kCount; ++i) {
      x[i] = static_cast<float>(round * 40) + static_cast<float>(i) * 1.5f - 60.25f;
    }
    std::memcpy(host_in.p, x.data(), x.size() * sizeof(float));
    exec.launch(st.get());
    st.synchronize();
    std::vector<std::int8_t> want(kCount), got(kCount);
    k::quantize_int8_linear_host(want.data(), x.data(), kCount);
    std::memcpy(got.data(), host_out.p, kCount);
    CHECK(same_bytes(want, got));
  }
  CHECK_EQ(fc::counters().kernel_launches["quantize_int8_linear"], 3u);
  CHECK_EQ(fc::counters().graph_launches, 3u);
  cu::GraphExec moved(std::move(exec));
  CHECK(!exec);
  moved.launch(st.get());
  st.synchronize();
  cu::Graph moved_graph(std::move(graph));
  CHECK(!graph);
  CHECK(static_cast<bool>(moved_graph));
  CHECK_EQ(fc::counters().live_graphs, 1u);
  CHECK_EQ(fc::counters().live_graph_execs, 1u);
  {
    cu::GraphExec again(moved_graph);
    cu::GraphExec other;
    other = std::move(again);
    CHECK_EQ(fc::counters().live_graph_execs, 2u);
  }
  CHECK_EQ(fc::counters().live_graph_execs, 1u);
}

TEST_CASE(wrapper_capture_ends_the_capture_when_enqueue_fails) {
  Fresh fresh;
  cu::Stream st;
  cu::DeviceBuffer dev(64);
  std::vector<unsigned char> pageable(64, 1);
  auto not_capturing = [&] {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusActive;
    return cudaStreamIsCapturing(st.get(), &status) == cudaSuccess && status == cudaStreamCaptureStatusNone;
  };
  CHECK_THROWS(cu::capture(st.get(), [&] {
                 dev.fill(0, st.get());
                 throw std::runtime_error("boom");
               }),
               std::runtime_error, "boom");
  CHECK(not_capturing());
  CHECK_THROWS(cu::capture(st.get(), [&] { st.synchronize(); }), fastres::CudaError,
               "cudaStreamSynchronize(stream_) failed: cudaErrorStreamCaptureUnsupported");
  CHECK(not_capturing());
  CHECK_THROWS(cu::capture(st.get(), [&] { cu::DeviceBuffer scratch(64); }), fastres::CudaError,
               "cudaMalloc(64 bytes) on device 0 failed: cudaErrorStreamCaptureUnsupported");
  CHECK(not_capturing());
  // The pinned allocator's pageable fallback cannot be captured: a graph holds no staged copy.
  CHECK_THROWS(cu::capture(st.get(), [&] { dev.copy_from_host(pageable.data(), 64, st.get()); }), fastres::CudaError,
               "cudaMemcpyAsync(host to device, 64 bytes) failed: cudaErrorStreamCaptureUnsupported");
  CHECK(not_capturing());
  // A forbidden call whose error is ignored still spoils the capture: EndCapture reports it.
  CHECK_THROWS(cu::capture(st.get(), [&] { (void)cudaStreamQuery(st.get()); }), fastres::CudaError,
               "cudaStreamEndCapture(stream, &graph) failed: cudaErrorStreamCaptureInvalidated");
  CHECK(not_capturing());
  OK(cudaGetLastError());
  CHECK_EQ(fc::counters().live_graphs, 0u);
  CHECK_EQ(fc::counters().memsets, 0u);
  // And the stream still works.
  dev.fill(4, st.get());
  dev.copy_to_host(pageable.data(), 64, st.get());
  st.synchronize();
  CHECK(all_bytes(pageable.data(), 64, 4));
}

TEST_CASE(wrapper_device_guard_require_device_and_device_count) {
  Fresh fresh;
  CHECK_EQ(cu::device_count(), 2);
  int d = -1;
  {
    cu::DeviceGuard g(1);
    OK(cudaGetDevice(&d));
    CHECK_EQ(d, 1);
    {
      cu::DeviceGuard h(0);
      OK(cudaGetDevice(&d));
      CHECK_EQ(d, 0);
    }
    OK(cudaGetDevice(&d));
    CHECK_EQ(d, 1);
    cu::DeviceGuard same(1);
    OK(cudaGetDevice(&d));
    CHECK_EQ(d, 1);
  }
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 0);
  CHECK_THROWS(cu::DeviceGuard(2), fastres::Unavailable,
               "CUDA device 2 requested, but this machine has 2 (valid: 0..1)");
  CHECK_THROWS(cu::require_device(-1), fastres::Unavailable, "CUDA device -1 requested");
  cu::require_device(1);
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 0);
  // Each thread has its own current device.
  int in_thread = -1;
  std::thread([&] {
    cu::DeviceGuard g(1);
    cudaGetDevice(&in_thread);
  }).join();
  CHECK_EQ(in_thread, 1);
  OK(cudaGetDevice(&d));
  CHECK_EQ(d, 0);

  fc::fail_next("cudaGetDeviceCount", cudaErrorInsufficientDriver);
  CHECK_EQ(cu::device_count(), 0);
  OK(cudaGetLastError());
  CHECK_EQ(cu::device_count(), 2);
  fc::fail_next("cudaGetDeviceCount", cudaErrorInsufficientDriver);
  CHECK_THROWS(cu::require_device(0), fastres::Unavailable, "cudaErrorInsufficientDriver");
  fc::set_device_count(0);
  CHECK_EQ(cu::device_count(), 0);
  CHECK_THROWS(cu::require_device(0), fastres::Unavailable, "cudaGetDeviceCount failed: cudaErrorNoDevice");
  OK(cudaGetLastError());
}

TEST_CASE(wrapper_cuda_runtime_info_reports_the_double) {
  Fresh fresh;
  fc::set_memory_limit(123456789);
  const fastres::CudaRuntimeInfo info = fastres::cuda_runtime_info();
  CHECK(info.compiled);
  CHECK(!info.toolkit_version.empty());
  CHECK_EQ(info.runtime_version, CUDART_VERSION);
  CHECK(info.driver_version >= info.runtime_version);
  CHECK(info.status.empty());
  CHECK_EQ(info.devices.size(), 2u);
  CHECK_EQ(info.devices[1].index, 1);
  CHECK(info.devices[1].name.find("fastres CUDA double") != std::string::npos);
  CHECK_EQ(info.devices[0].compute_major, 9);
  CHECK_EQ(info.devices[0].compute_minor, 0);
  CHECK_EQ(info.devices[0].total_memory, 123456789u);
  CHECK(fastres::build_info().with_cuda);
  fc::set_device_count(0);
  const fastres::CudaRuntimeInfo none = fastres::cuda_runtime_info();
  CHECK(none.devices.empty());
  CHECK(none.status.find("cudaErrorNoDevice") != std::string::npos);
  OK(cudaGetLastError());
}

// ==================================================================== kernels on the double

namespace {

// Uploads host values into a new device buffer (synchronously).
template <class T>
cu::DeviceBuffer upload(const std::vector<T>& v) {
  cu::DeviceBuffer b(v.size() * sizeof(T));
  if (!v.empty()) FASTRES_CUDA_CHECK(cudaMemcpy(b.data(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return b;
}

template <class T>
std::vector<T> download(const cu::DeviceBuffer& b, std::size_t count) {
  std::vector<T> v(count);
  FASTRES_CUDA_CHECK(cudaMemcpy(v.data(), b.data(), count * sizeof(T), cudaMemcpyDeviceToHost));
  return v;
}

std::vector<float> logits_with_ties_and_nans(std::size_t rows, std::size_t classes, Lcg& lcg) {
  std::vector<float> v(rows * classes);
  for (float& x : v) x = static_cast<float>(lcg.next() % 50) - 25.0f;  // many ties
  v[1 * classes + 7] = std::nanf("");
  v[2 * classes + classes - 1] = std::numeric_limits<float>::infinity();
  return v;
}

}  // namespace

TEST_CASE(kernels_match_their_host_twins) {
  Fresh fresh;
  cu::Stream st;
  Lcg lcg{7};
  {  // gather, every unit width
    for (std::size_t sample_bytes : {3u, 16u, 100u}) {
      std::vector<std::byte> library(6 * sample_bytes);
      for (auto& b : library) b = static_cast<std::byte>(lcg.next());
      const std::vector<std::uint32_t> slots{5, 0, 3, 3, 5, 1};
      cu::DeviceBuffer d_lib = upload(library), d_slots = upload(slots), d_batch(slots.size() * sample_bytes);
      k::gather_samples(d_batch.data(), d_lib.data(), sample_bytes, d_slots.as<std::uint32_t>(), slots.size(),
                        st.get());
      st.synchronize();
      std::vector<std::byte> want(slots.size() * sample_bytes);
      k::gather_samples_host(want.data(), library.data(), sample_bytes, slots.data(), slots.size());
      CHECK(same_bytes(download<std::byte>(d_batch, want.size()), want));
    }
  }
  {  // quantize_int8_linear, with the edge values
    std::vector<float> x(1001);
    for (float& v : x) v = lcg.uniform(-300.0f, 300.0f);
    x[0] = std::nanf("");
    x[1] = -std::numeric_limits<float>::infinity();
    x[2] = 127.5f;
    x[3] = -0.5f;
    cu::DeviceBuffer d_x = upload(x), d_q(x.size());
    k::quantize_int8_linear(d_q.as<std::int8_t>(), d_x.as<float>(), x.size(), st.get());
    st.synchronize();
    std::vector<std::int8_t> want(x.size());
    k::quantize_int8_linear_host(want.data(), x.data(), x.size());
    CHECK(same_bytes(download<std::int8_t>(d_q, x.size()), want));
  }
  const k::Nchw shape{2, 5, 3, 4};
  const std::size_t chw4_bytes = shape.n * k::chw4_groups(shape.c) * shape.pixels() * 4;
  {  // quantize_int8_chw4 and relayout_int8_chw4
    std::vector<float> x(shape.count());
    for (float& v : x) v = lcg.uniform(-150.0f, 150.0f);
    std::vector<std::int8_t> q(shape.count());
    k::quantize_int8_linear_host(q.data(), x.data(), q.size());
    cu::DeviceBuffer d_x = upload(x), d_q = upload(q), d_a(chw4_bytes), d_b(chw4_bytes);
    k::quantize_int8_chw4(d_a.as<std::int8_t>(), d_x.as<float>(), shape, st.get());
    k::relayout_int8_chw4(d_b.as<std::int8_t>(), d_q.as<std::int8_t>(), shape, st.get());
    st.synchronize();
    std::vector<std::int8_t> want_a(chw4_bytes), want_b(chw4_bytes);
    k::quantize_int8_chw4_host(want_a.data(), x.data(), shape);
    k::relayout_int8_chw4_host(want_b.data(), q.data(), shape);
    CHECK(same_bytes(download<std::int8_t>(d_a, chw4_bytes), want_a));
    CHECK(same_bytes(download<std::int8_t>(d_b, chw4_bytes), want_b));
  }
  {  // top1
    const std::size_t rows = 7, classes = 1001;
    const std::vector<float> logits = logits_with_ties_and_nans(rows, classes, lcg);
    cu::DeviceBuffer d_logits = upload(logits), d_labels(rows * sizeof(std::int32_t));
    k::top1(d_labels.as<std::int32_t>(), d_logits.as<float>(), rows, classes, 1, st.get());
    st.synchronize();
    std::vector<std::int32_t> want(rows);
    k::top1_host(want.data(), logits.data(), rows, classes, 1);
    CHECK(same_bytes(download<std::int32_t>(d_labels, rows), want));
  }
  {  // hwc_u8_to_nchw_f32 and _int8
    const k::Nchw img{2, 3, 4, 5};
    std::vector<std::uint8_t> pixels(img.count());
    for (auto& p : pixels) p = static_cast<std::uint8_t>(lcg.next());
    const k::ChannelMeans means;
    cu::DeviceBuffer d_px = upload(pixels), d_f(img.count() * sizeof(float)), d_i(img.count());
    k::hwc_u8_to_nchw_f32(d_f.as<float>(), d_px.as<std::uint8_t>(), img, means, st.get());
    k::hwc_u8_to_nchw_int8(d_i.as<std::int8_t>(), d_px.as<std::uint8_t>(), img, means, st.get());
    st.synchronize();
    std::vector<float> want_f(img.count());
    std::vector<std::int8_t> want_i(img.count());
    k::hwc_u8_to_nchw_f32_host(want_f.data(), pixels.data(), img, means);
    k::hwc_u8_to_nchw_int8_host(want_i.data(), pixels.data(), img, means);
    CHECK(same_bytes(download<float>(d_f, img.count()), want_f));
    CHECK(same_bytes(download<std::int8_t>(d_i, img.count()), want_i));
  }
  // Empty work launches nothing, like the real wrappers.
  k::quantize_int8_linear(nullptr, nullptr, 0, st.get());
  k::top1(nullptr, nullptr, 0, 0, 0, st.get());
  k::gather_samples(nullptr, nullptr, 0, nullptr, 0, st.get());
  st.synchronize();
  fc::Counters c = fc::counters();
  CHECK_EQ(c.kernel_launches["gather_samples"], 3u);
  CHECK_EQ(c.kernel_launches["quantize_int8_linear"], 1u);
  CHECK_EQ(c.kernel_launches["quantize_int8_chw4"], 1u);
  CHECK_EQ(c.kernel_launches["relayout_int8_chw4"], 1u);
  CHECK_EQ(c.kernel_launches["top1"], 1u);
  CHECK_EQ(c.kernel_launches["hwc_u8_to_nchw_f32"], 1u);
  CHECK_EQ(c.kernel_launches["hwc_u8_to_nchw_int8"], 1u);
  CHECK_EQ(c.kernels, 9u);
}

TEST_CASE(kernels_reject_bad_arguments_like_the_host_twins) {
  Fresh fresh;
  cu::Stream st;
  cu::DeviceBuffer buf(1024);
  auto* b = buf.data();
  auto* f = buf.as<float>();
  auto* q = buf.as<std::int8_t>();
  auto* u = buf.as<std::uint8_t>();
  auto* slots = buf.as<std::uint32_t>();
  // Each pair must throw InvalidArgument with the same message.
  const std::vector<std::pair<std::function<void()>, std::function<void()>>> pairs{
      {[&] { k::gather_samples(b, b, 0, slots, 2, st.get()); }, [&] { k::gather_samples_host(b, b, 0, slots, 2); }},
      {[&] { k::gather_samples(nullptr, b, 4, slots, 2, st.get()); },
       [&] { k::gather_samples_host(nullptr, b, 4, slots, 2); }},
      {[&] { k::gather_samples(b, b, 4, nullptr, 2, st.get()); }, [&] { k::gather_samples_host(b, b, 4, nullptr, 2); }},
      {[&] { k::quantize_int8_linear(nullptr, f, 4, st.get()); }, [&] { k::quantize_int8_linear_host(nullptr, f, 4); }},
      {[&] { k::quantize_int8_chw4(q, nullptr, k::Nchw{1, 3, 2, 2}, st.get()); },
       [&] { k::quantize_int8_chw4_host(q, nullptr, k::Nchw{1, 3, 2, 2}); }},
      {[&] { k::relayout_int8_chw4(nullptr, q, k::Nchw{1, 3, 2, 2}, st.get()); },
       [&] { k::relayout_int8_chw4_host(nullptr, q, k::Nchw{1, 3, 2, 2}); }},
      {[&] { k::top1(buf.as<std::int32_t>(), f, 2, 0, 0, st.get()); },
       [&] { k::top1_host(buf.as<std::int32_t>(), f, 2, 0, 0); }},
      {[&] { k::top1(buf.as<std::int32_t>(), f, 1, std::size_t{1} << 31, 0, st.get()); },
       [&] { k::top1_host(buf.as<std::int32_t>(), f, 1, std::size_t{1} << 31, 0); }},
      {[&] { k::top1(nullptr, f, 2, 10, 0, st.get()); }, [&] { k::top1_host(nullptr, f, 2, 10, 0); }},
      {[&] { k::hwc_u8_to_nchw_f32(f, u, k::Nchw{1, 4, 2, 2}, {}, st.get()); },
       [&] { k::hwc_u8_to_nchw_f32_host(f, u, k::Nchw{1, 4, 2, 2}); }},
      {[&] { k::hwc_u8_to_nchw_int8(q, nullptr, k::Nchw{1, 3, 2, 2}, {}, st.get()); },
       [&] { k::hwc_u8_to_nchw_int8_host(q, nullptr, k::Nchw{1, 3, 2, 2}); }},
  };
  for (const auto& [wrapper, twin] : pairs) {
    CHECK_THROWS(wrapper(), fastres::InvalidArgument, "");
    const std::string from_wrapper = thrown_message(wrapper);
    CHECK(!from_wrapper.empty());
    CHECK_EQ(from_wrapper, thrown_message(twin));
  }
  st.synchronize();
  CHECK_EQ(fc::counters().kernels, 0u);
  CHECK(fc::counters().kernel_launches.empty());
}

TEST_CASE(kernels_fault_on_host_or_foreign_device_pointers) {
  Fresh fresh;
  std::vector<float> host_src(64, 3.0f);
  auto expect_fault = [](const char* what, const std::function<void(cudaStream_t)>& launch) {
    fc::reset();
    fc::set_device_count(2);
    {
      cu::Stream st;
      // The fault is asynchronous: it shows in synchronize(), or already in the launch's own
      // check when the stream got there first (as on a GPU).
      const std::string msg = thrown_message([&] {
        launch(st.get());
        st.synchronize();
      });
      if (msg.find("cudaErrorIllegalAddress") == std::string::npos) {
        ::check::fail(__FILE__, __LINE__, std::string(what) + ": synchronize said: " + msg);
      }
    }
    CHECK_CUDA(fc::sticky_error(0), cudaErrorIllegalAddress);
  };
  // Pageable host memory.
  expect_fault("pageable source", [&](cudaStream_t s) {
    cu::DeviceBuffer d(64);
    k::quantize_int8_linear(d.as<std::int8_t>(), host_src.data(), 64, s);
    cudaStreamSynchronize(s);
  });
  // Pinned host memory: CUDA would map it, fastres never means to, so it faults unless allowed.
  expect_fault("pinned source", [&](cudaStream_t s) {
    Pinned pinned(64 * sizeof(float));
    cu::DeviceBuffer d(64);
    k::quantize_int8_linear(d.as<std::int8_t>(), pinned.as<float>(), 64, s);
    cudaStreamSynchronize(s);
  });
  {
    fc::reset();
    fc::allow_kernel_host_access(true);
    cu::Stream st;
    Pinned pinned(64 * sizeof(float)), out(64);
    std::memcpy(pinned.p, host_src.data(), 64 * sizeof(float));
    k::quantize_int8_linear(out.as<std::int8_t>(), pinned.as<float>(), 64, st.get());
    st.synchronize();
    std::vector<std::int8_t> want(64);
    k::quantize_int8_linear_host(want.data(), host_src.data(), 64);
    CHECK(std::memcmp(want.data(), out.p, 64) == 0);
  }
  // Another device's memory.
  expect_fault("device 1 memory on a device 0 stream", [&](cudaStream_t s) {
    cu::DeviceBuffer src(64 * sizeof(float)), dst = [] {
      cu::DeviceGuard g(1);
      return cu::DeviceBuffer(64);
    }();
    k::quantize_int8_linear(dst.as<std::int8_t>(), src.as<float>(), 64, s);
    cudaStreamSynchronize(s);
  });
  // Past the end of the allocation.
  expect_fault("overrun", [&](cudaStream_t s) {
    cu::DeviceBuffer src(64 * sizeof(float)), dst(63);
    k::quantize_int8_linear(dst.as<std::int8_t>(), src.as<float>(), 64, s);
    cudaStreamSynchronize(s);
  });
  // gather reads its slots on the device, and then the library rows they name.
  expect_fault("gather slots in host memory", [&](cudaStream_t s) {
    const std::vector<std::uint32_t> slots{0, 1};
    cu::DeviceBuffer lib(64), batch(64);
    k::gather_samples(batch.data(), lib.data(), 32, slots.data(), 2, s);
    cudaStreamSynchronize(s);
  });
  expect_fault("gather slot past the library", [&](cudaStream_t s) {
    cu::DeviceBuffer lib(64), batch(64), slots = upload(std::vector<std::uint32_t>{0, 2});
    k::gather_samples(batch.data(), lib.data(), 32, slots.as<std::uint32_t>(), 2, s);
    cudaStreamSynchronize(s);
  });
  // After a fault, the next launch on the device fails at once, as check_launch sees the error.
  fc::reset();
  {
    cu::Stream st;
    cu::DeviceBuffer a(64);
    {
      Hang hang(st.get());
      k::quantize_int8_linear(a.as<std::int8_t>(), host_src.data(), 16, st.get());
    }
    CHECK_THROWS(st.synchronize(), fastres::CudaError, "cudaErrorIllegalAddress");
    CHECK_THROWS(k::quantize_int8_linear(a.as<std::int8_t>(), a.as<float>(), 16, st.get()), fastres::CudaError,
                 "quantize_int8_linear launch failed: cudaErrorIllegalAddress");
  }
}

TEST_CASE(kernels_launch_only_on_the_current_devices_streams) {
  Fresh fresh;
  const std::size_t rows = 3, classes = 10;
  Lcg lcg{3};
  const std::vector<float> logits = logits_with_ties_and_nans(rows, classes, lcg);
  std::vector<std::int32_t> want(rows);
  k::top1_host(want.data(), logits.data(), rows, classes, 0);
  std::unique_ptr<cu::Stream> on1;
  std::unique_ptr<cu::DeviceBuffer> d_logits, d_labels;
  {
    cu::DeviceGuard g(1);
    on1 = std::make_unique<cu::Stream>();
    d_logits = std::make_unique<cu::DeviceBuffer>(upload(logits));
    d_labels = std::make_unique<cu::DeviceBuffer>(rows * sizeof(std::int32_t));
  }
  CHECK_THROWS(k::top1(d_labels->as<std::int32_t>(), d_logits->as<float>(), rows, classes, 0, on1->get()),
               fastres::CudaError, "top1 launch failed: cudaErrorInvalidResourceHandle");
  OK(cudaGetLastError());
  {
    cu::DeviceGuard g(1);
    k::top1(d_labels->as<std::int32_t>(), d_logits->as<float>(), rows, classes, 0, on1->get());
    on1->synchronize();
    CHECK(same_bytes(download<std::int32_t>(*d_labels, rows), want));
    // The legacy stream of the current device works too.
    FASTRES_CUDA_CHECK(cudaMemset(d_labels->data(), 0, rows * sizeof(std::int32_t)));
    k::top1(d_labels->as<std::int32_t>(), d_logits->as<float>(), rows, classes, 0, nullptr);
    FASTRES_CUDA_CHECK(cudaDeviceSynchronize());
    CHECK(same_bytes(download<std::int32_t>(*d_labels, rows), want));
    // A failed launch names the kernel, is not sticky, and the next launch works.
    fc::fail_next("top1", cudaErrorLaunchOutOfResources);
    CHECK_THROWS(k::top1(d_labels->as<std::int32_t>(), d_logits->as<float>(), rows, classes, 0, on1->get()),
                 fastres::CudaError, "top1 launch failed: cudaErrorLaunchOutOfResources");
    k::top1(d_labels->as<std::int32_t>(), d_logits->as<float>(), rows, classes, 0, on1->get());
    on1->synchronize();
    d_logits.reset();
    d_labels.reset();
    on1.reset();
  }
  CHECK_EQ(fc::counters().kernel_launches["top1"], 3u);
}

TEST_CASE(kernels_are_captured_and_replayed) {
  Fresh fresh;
  // start_from_device: the library lives on the device; per batch the slots are copied in, the
  // batch gathered, and top-1 taken, all replayed from one graph.
  constexpr std::size_t kClasses = 8, kSamples = 5, kBatch = 4;
  const std::size_t sample_bytes = kClasses * sizeof(float);
  std::vector<float> library(kSamples * kClasses, 0.0f);
  // Sample s is one-hot at class 3s mod 8.
  for (std::size_t s = 0; s < kSamples; ++s) library[s * kClasses + (s * 3) % kClasses] = 1.0f;
  cu::Stream st;
  cu::DeviceBuffer d_lib = upload(library), d_slots(kBatch * sizeof(std::uint32_t)), d_batch(kBatch * sample_bytes),
                   d_labels(kBatch * sizeof(std::int32_t));
  Pinned h_slots(kBatch * sizeof(std::uint32_t)), h_labels(kBatch * sizeof(std::int32_t));
  cu::Graph graph = cu::capture(st.get(), [&] {
    d_slots.copy_from_host(h_slots.p, kBatch * sizeof(std::uint32_t), st.get());
    k::gather_samples(d_batch.data(), d_lib.data(), sample_bytes, d_slots.as<std::uint32_t>(), kBatch, st.get());
    k::top1(d_labels.as<std::int32_t>(), d_batch.as<float>(), kBatch, kClasses, 0, st.get());
    d_labels.copy_to_host(h_labels.p, kBatch * sizeof(std::int32_t), st.get());
  });
  CHECK_EQ(fc::counters().kernels, 0u);
  cu::GraphExec exec(graph);
  const std::vector<std::vector<std::uint32_t>> batches{{0, 1, 2, 3}, {4, 4, 0, 2}, {3, 1, 4, 0}};
  for (const auto& slots : batches) {
    std::memcpy(h_slots.p, slots.data(), kBatch * sizeof(std::uint32_t));
    exec.launch(st.get());
    st.synchronize();
    for (std::size_t i = 0; i < kBatch; ++i) {
      CHECK_EQ(h_labels.as<std::int32_t>()[i], static_cast<std::int32_t>((slots[i] * 3) % kClasses));
    }
  }
  CHECK_EQ(fc::counters().kernel_launches["gather_samples"], 3u);
  CHECK_EQ(fc::counters().kernel_launches["top1"], 3u);
  // A graph holds raw pointers: replaying it after freeing a buffer it uses is a bad access.
  d_batch = cu::DeviceBuffer();
  exec.launch(st.get());
  CHECK_THROWS(st.synchronize(), fastres::CudaError, "cudaErrorIllegalAddress");
}

int main(int argc, char** argv) { return check::run(argc, argv); }
