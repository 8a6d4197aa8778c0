// The CUDA runtime double: the subset of the CUDA runtime API that fastres calls, implemented on
// the CPU with the toolkit's own declarations (cuda_runtime_api.h), so fastres's CUDA host code
// links against it unchanged. What it models and what it cannot: README.md.
//
// One mutex guards all of the double's state. Every created stream has a worker thread that runs
// its operations in FIFO order; the legacy default stream runs them in the calling thread. An
// operation is immutable once made, so stream capture records the same objects a graph replays.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fake_cuda.hpp"

namespace fastres::fake_cuda {

namespace {

using Clock = std::chrono::steady_clock;
using Lock = std::unique_lock<std::mutex>;

constexpr int kMaxDevices = 64;
constexpr int kDefaultDevices = 2;
constexpr int kGreatestPriority = -5;  // cudaDeviceGetStreamPriorityRange: [-5, 0], as on Hopper
constexpr std::size_t kDefaultMemory = std::size_t{4} << 30;
constexpr int kDriverVersion = 13000;
constexpr std::size_t kDeviceAlignment = 256;  // cudaMalloc's documented minimum
constexpr std::size_t kHostAlignment = 4096;   // cudaHostAlloc returns whole pages
// Fresh allocations are filled with this, not zero: neither cudaMalloc nor cudaHostAlloc zeroes.
constexpr unsigned char kUninitialised = 0xA5;
// Handles are numbers in their own range, never reused and never dereferenced, so a stale or
// foreign handle is recognised instead of aliasing a new object.
constexpr std::uintptr_t kHandleBase = 0x10000;

// An asynchronous fault inside an operation; it becomes its device's sticky error.
struct Fault {
  cudaError_t error;
};

// The point an event record reaches in its stream.
struct Marker {
  bool done = false;
  Clock::time_point when{};
};
using MarkerPtr = std::shared_ptr<Marker>;

enum class OpKind { kCopy, kMemset, kKernel, kHostFunction, kRecord, kWait, kGraphBegin, kGraphEnd };

struct Op {
  OpKind kind;
  // Runs without the lock, on the stream's worker (in the caller for the legacy stream); throws
  // Fault for a bad access. Empty for pure bookkeeping.
  std::function<void(int device)> run;
  MarkerPtr waits_for;  // kWait, kGraphBegin: nothing runs until it is done
  MarkerPtr marks;      // kRecord, kGraphEnd: done once the op has run, even on a faulted device
  cudaMemcpyKind direction = cudaMemcpyDefault;  // kCopy, resolved
  std::size_t bytes = 0;                         // kCopy
  bool pageable = false;                         // kCopy
  std::string name;                              // kKernel
};
using OpPtr = std::shared_ptr<const Op>;

struct Device {
  cudaError_t sticky = cudaSuccess;
  std::size_t used = 0;
  bool fault_next_legacy = false;
};

struct Allocation {
  std::size_t bytes = 0;
  int device = 0;
  bool pinned = false;  // cudaHostAlloc; otherwise cudaMalloc
};

struct Capture {
  std::uintptr_t origin = 0;
  int device = 0;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;
  bool invalidated = false;
  std::vector<OpPtr> ops;
  std::vector<std::uintptr_t> members;               // the origin and the streams joined to it
  std::map<std::uintptr_t, std::uint64_t> captured;  // ops captured from each member
};

struct Stream {
  struct Entry {
    OpPtr op;
    bool fault = false;  // inject_fault() picked this one
  };
  std::uintptr_t key = 0;
  int device = 0;
  bool blocking = true;  // not cudaStreamNonBlocking: synchronises with the legacy stream
  int priority = 0;
  std::deque<Entry> queue;
  std::uint64_t enqueued = 0, completed = 0;
  bool hung = false, fault_next = false;
  bool retiring = false;  // destroyed: drain the queue, then exit
  bool stop = false;      // reset() or exit: drop the queue and exit now
  bool exited = false;
  std::condition_variable wake;
  std::thread worker;
  std::shared_ptr<Capture> capture;
  // While capturing: how many ops of each member this stream's next op comes after (a vector
  // clock; the origin must cover every member's ops at EndCapture, else the capture is unjoined).
  std::map<std::uintptr_t, std::uint64_t> clock;
};
using StreamPtr = std::shared_ptr<Stream>;

struct Event {
  int device = 0;
  unsigned flags = 0;
  MarkerPtr marker;               // the latest record outside a capture; null: never recorded
  bool captured_record = false;   // the latest record was in a capture (which may have ended)
  std::weak_ptr<Capture> capture;
  std::map<std::uintptr_t, std::uint64_t> clock;
};

struct Graph {
  int device = 0;
  std::vector<OpPtr> ops;
};

struct Exec {
  int device = 0;
  std::vector<OpPtr> ops;
  MarkerPtr last;  // the previous launch's end: launches of one exec never overlap
};

struct State {
  std::mutex mu;
  std::condition_variable done;  // any op finished, a fault was raised, or reset()
  std::uint64_t epoch = 1;       // bumped by reset(): waits give up, threads forget their state
  std::uintptr_t next_handle = 1;
  std::vector<Device> devices;
  std::size_t memory_limit = kDefaultMemory;
  std::map<std::uintptr_t, Allocation> allocations;
  std::unordered_map<std::uintptr_t, StreamPtr> streams;
  std::vector<StreamPtr> retired;  // destroyed, worker not joined yet
  std::unordered_map<std::uintptr_t, std::shared_ptr<Event>> events;
  std::unordered_map<std::uintptr_t, std::shared_ptr<Graph>> graphs;
  std::unordered_map<std::uintptr_t, std::shared_ptr<Exec>> execs;
  std::vector<std::shared_ptr<Capture>> captures;  // active
  std::map<std::string, std::pair<cudaError_t, int>> failures;
  std::chrono::nanoseconds op_delay{0};
  bool kernel_host_access = false;
  bool shut_down = false;
  Counters counters;
};

int env_device_count() {
  const char* v = std::getenv("FASTRES_FAKE_CUDA_DEVICES");
  if (v == nullptr || *v == '\0') return kDefaultDevices;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < 0 || n > kMaxDevices) {
    std::fprintf(stderr, "fastres CUDA double: FASTRES_FAKE_CUDA_DEVICES=%s: expected 0..%d; using %d\n", v,
                 kMaxDevices, kDefaultDevices);
    return kDefaultDevices;
  }
  return static_cast<int>(n);
}

void shutdown();

// Never destroyed: static destructors elsewhere (a process-wide pinned allocator) may still call
// cudaFreeHost after the double has shut its workers down at exit.
State& state() {
  static State* const s = [] {
    auto* p = new State();
    p->devices.resize(static_cast<std::size_t>(env_device_count()));
    std::atexit(shutdown);
    return p;
  }();
  return *s;
}

struct ThreadState {
  std::uint64_t epoch = 0;
  int device = 0;
  cudaError_t last = cudaSuccess;
};
thread_local ThreadState t_state;
thread_local bool t_in_host_function = false;

// The calling thread's current device and last error (under the lock).
ThreadState& me(State& s) {
  if (t_state.epoch != s.epoch) t_state = ThreadState{s.epoch, 0, cudaSuccess};
  return t_state;
}

template <class H>
std::uintptr_t key_of(H h) {
  return reinterpret_cast<std::uintptr_t>(h);
}
template <class H>
H handle_of(std::uintptr_t key) {
  return reinterpret_cast<H>(key);
}
std::uintptr_t new_key(State& s) { return kHandleBase + 0x10 * s.next_handle++; }

bool valid_device(const State& s, int d) { return d >= 0 && static_cast<std::size_t>(d) < s.devices.size(); }
bool faulted(const State& s, int d) { return valid_device(s, d) && s.devices[d].sticky != cudaSuccess; }
cudaError_t sticky(const State& s, int d) { return faulted(s, d) ? s.devices[d].sticky : cudaSuccess; }

void raise_fault(State& s, int d, cudaError_t error) {
  if (valid_device(s, d) && s.devices[d].sticky == cudaSuccess) {
    s.devices[d].sticky = error;
    ++s.counters.faults;
  }
  s.done.notify_all();
}

// The calling thread's current device, or why there is none.
cudaError_t current_device(State& s, int& d) {
  if (s.devices.empty()) return cudaErrorNoDevice;
  d = me(s).device;
  return valid_device(s, d) ? cudaSuccess : cudaErrorInvalidDevice;
}

// The same, and the device's sticky error: what most calls check first.
cudaError_t current(State& s, int& d) {
  if (cudaError_t e = current_device(s, d)) return e;
  return sticky(s, d);
}

// ------------------------------------------------------------------ API calls

// A call may not be made from a host function; fail_next() may pick it.
cudaError_t enter(State& s, const char* name) {
  if (t_in_host_function) return cudaErrorNotPermitted;
  if (s.shut_down) return cudaErrorCudartUnloading;
  auto it = s.failures.find(name);
  if (it != s.failures.end()) {
    const cudaError_t e = it->second.first;
    if (--it->second.second <= 0) s.failures.erase(it);
    return e;
  }
  return cudaSuccess;
}

// Runs one API call under the lock; a failure becomes the thread's last error (cudaErrorNotReady
// is a status, not an error).
template <class Body>
cudaError_t api(const char* name, Body&& body) {
  State& s = state();
  Lock lk(s.mu);
  cudaError_t e = enter(s, name);
  if (e == cudaSuccess) e = body(s, lk);
  if (e != cudaSuccess && e != cudaErrorNotReady) me(s).last = e;
  return e;
}

// ------------------------------------------------------------------ memory registry

enum class Where { kPageable, kPinned, kDevice };

struct Located {
  Where where = Where::kPageable;
  int device = -1;
  std::uintptr_t base = 0;
  bool inside = true;  // [p, p + bytes) within the allocation p points into
};

Located locate(const State& s, const void* p, std::size_t bytes) {
  const auto v = reinterpret_cast<std::uintptr_t>(p);
  auto it = s.allocations.upper_bound(v);
  if (it == s.allocations.begin()) return {};
  --it;
  const std::uintptr_t offset = v - it->first;
  const Allocation& a = it->second;
  if (offset >= a.bytes) return {};
  return Located{a.pinned ? Where::kPinned : Where::kDevice, a.device, it->first, bytes <= a.bytes - offset};
}

// For an op as it runs: the registered range it was given is still registered the same way.
void recheck(const void* p, std::size_t bytes, Where where) {
  if (where == Where::kPageable) return;
  State& s = state();
  Lock lk(s.mu);
  const Located at = locate(s, p, bytes);
  if (at.where != where || !at.inside) throw Fault{cudaErrorIllegalAddress};
}

// ------------------------------------------------------------------ running operations

void count(State& s, const Op& op) {
  Counters& c = s.counters;
  switch (op.kind) {
    case OpKind::kCopy:
      switch (op.direction) {
        case cudaMemcpyHostToDevice: ++c.copies_h2d; c.bytes_h2d += op.bytes; break;
        case cudaMemcpyDeviceToHost: ++c.copies_d2h; c.bytes_d2h += op.bytes; break;
        case cudaMemcpyDeviceToDevice: ++c.copies_d2d; c.bytes_d2d += op.bytes; break;
        default: ++c.copies_h2h; c.bytes_h2h += op.bytes; break;
      }
      if (op.pageable) ++c.pageable_copies;
      break;
    case OpKind::kMemset: ++c.memsets; break;
    case OpKind::kKernel: ++c.kernels; ++c.kernel_launches[op.name]; break;
    case OpKind::kHostFunction: ++c.host_functions; break;
    case OpKind::kRecord: ++c.event_records; break;
    case OpKind::kWait: ++c.event_waits; break;
    case OpKind::kGraphBegin: ++c.graph_launches; break;
    case OpKind::kGraphEnd: break;
  }
}

// Runs one op of `device`: the lock is held on entry and on return, and released while it runs.
// On a faulted device it is skipped, except that its marker is still set, so no waiter hangs.
void run_op(State& s, Lock& lk, int device, const Op& op, bool inject) {
  const std::uint64_t epoch = s.epoch;
  if (s.op_delay.count() > 0) {
    const auto delay = s.op_delay;
    lk.unlock();
    std::this_thread::sleep_for(delay);
    lk.lock();
  }
  if (op.waits_for) {
    s.done.wait(lk, [&] { return op.waits_for->done || faulted(s, device) || s.epoch != epoch; });
  }
  const bool skip = inject || faulted(s, device) || s.epoch != epoch;
  if (!skip) count(s, op);
  cudaError_t fault = inject ? cudaErrorLaunchFailure : cudaSuccess;
  if (!skip && op.run) {
    lk.unlock();
    try {
      op.run(device);
    } catch (const Fault& f) {
      fault = f.error;
    } catch (...) {
      fault = cudaErrorLaunchFailure;
    }
    lk.lock();
  }
  if (fault != cudaSuccess && s.epoch == epoch) raise_fault(s, device, fault);
  if (op.marks) {
    op.marks->done = true;
    op.marks->when = Clock::now();
  }
  s.done.notify_all();
}

void worker_main(State& s, StreamPtr st) {
  Lock lk(s.mu);
  for (;;) {
    st->wake.wait(lk, [&] {
      return st->stop || (!st->queue.empty() && !st->hung) || (st->retiring && st->queue.empty());
    });
    if (st->stop || st->queue.empty()) break;
    Stream::Entry entry = std::move(st->queue.front());
    st->queue.pop_front();
    run_op(s, lk, st->device, *entry.op, entry.fault);
    ++st->completed;
    s.done.notify_all();
  }
  st->exited = true;
}

// Joins the workers of destroyed streams that have drained.
void reap(State& s, Lock& lk) {
  std::vector<StreamPtr> finished;
  auto keep = std::partition(s.retired.begin(), s.retired.end(), [](const StreamPtr& st) { return !st->exited; });
  finished.assign(keep, s.retired.end());
  s.retired.erase(keep, s.retired.end());
  if (finished.empty()) return;
  lk.unlock();
  for (auto& st : finished) st->worker.join();
  lk.lock();
}

// Stops every worker now (queued work is dropped, hung streams released) and joins them.
void stop_workers(State& s, Lock& lk) {
  std::vector<StreamPtr> all = s.retired;
  for (auto& [key, st] : s.streams) all.push_back(st);
  for (auto& st : all) {
    st->stop = true;
    st->hung = false;
    st->wake.notify_all();
  }
  ++s.epoch;
  s.done.notify_all();
  lk.unlock();
  for (auto& st : all) {
    if (st->worker.joinable()) st->worker.join();
  }
  lk.lock();
  s.retired.clear();
  s.streams.clear();
}

void shutdown() {
  State& s = state();
  Lock lk(s.mu);
  stop_workers(s, lk);
  s.shut_down = true;
}

// Blocks until every stream `which` selects has run what it had queued at the call, or reset()
// is called. Destroyed streams still draining count too. No wait returns early on a fault: the
// ops after it are skipped quickly, and one already running must finish before the caller may
// free what it touches.
template <class Which>
void drain(State& s, Lock& lk, Which which) {
  std::vector<std::pair<StreamPtr, std::uint64_t>> targets;
  auto consider = [&](const StreamPtr& st) {
    if (which(*st) && !st->exited) targets.emplace_back(st, st->enqueued);
  };
  for (auto& [key, st] : s.streams) consider(st);
  for (auto& st : s.retired) consider(st);
  const std::uint64_t epoch = s.epoch;
  s.done.wait(lk, [&] {
    if (s.epoch != epoch) return true;
    return std::all_of(targets.begin(), targets.end(), [&](const auto& t) {
      return t.first->completed >= t.second || t.first->stop;
    });
  });
}

void drain_blocking_streams(State& s, Lock& lk, int device) {
  drain(s, lk, [device](const Stream& st) { return st.device == device && st.blocking; });
}

// ------------------------------------------------------------------ stream capture

void invalidate(State& s, Capture& c) {
  if (c.invalidated) return;
  c.invalidated = true;
  c.ops.clear();
  ++s.counters.captures_invalidated;
}

// A "potentially unsafe" call (cudaMalloc, a synchronous copy, ...) is refused while the calling
// thread has a capture not begun in relaxed mode, or another thread has a global-mode capture
// (cudaThreadExchangeStreamCaptureMode; the calling thread's own mode is the default, global).
// The captures concerned are invalidated.
cudaError_t unsafe_call(State& s) {
  bool refused = false;
  for (auto& c : s.captures) {
    const bool mine = c->thread == std::this_thread::get_id();
    if ((mine && c->mode != cudaStreamCaptureModeRelaxed) || (!mine && c->mode == cudaStreamCaptureModeGlobal)) {
      invalidate(s, *c);
      refused = true;
    }
  }
  return refused ? cudaErrorStreamCaptureUnsupported : cudaSuccess;
}

// The legacy stream may not be used while a blocking stream of its device captures: the use
// would depend on the capture implicitly.
cudaError_t legacy_use(State& s, int device) {
  bool refused = false;
  for (auto& c : s.captures) {
    for (std::uintptr_t m : c->members) {
      auto it = s.streams.find(m);
      if (it != s.streams.end() && it->second->blocking && it->second->device == device) {
        invalidate(s, *c);
        refused = true;
        break;
      }
    }
  }
  return refused ? cudaErrorStreamCaptureImplicit : cudaSuccess;
}

std::shared_ptr<Capture> active_capture(const State& s, const std::weak_ptr<Capture>& w) {
  auto c = w.lock();
  if (c && std::find(s.captures.begin(), s.captures.end(), c) != s.captures.end()) return c;
  return nullptr;
}

// Takes every member out of capture mode and forgets the capture.
void end_capture(State& s, const std::shared_ptr<Capture>& c) {
  for (std::uintptr_t m : c->members) {
    auto it = s.streams.find(m);
    if (it != s.streams.end() && it->second->capture == c) {
      it->second->capture.reset();
      it->second->clock.clear();
    }
  }
  s.captures.erase(std::remove(s.captures.begin(), s.captures.end(), c), s.captures.end());
}

// ------------------------------------------------------------------ enqueueing

// Where an operation goes: a created stream, or (stream null) the legacy stream of `device`.
struct Target {
  StreamPtr stream;
  int device = 0;
};

bool is_legacy(cudaStream_t h) { return h == nullptr || h == cudaStreamLegacy || h == cudaStreamPerThread; }

cudaError_t resolve(State& s, cudaStream_t h, Target& t) {
  if (is_legacy(h)) {
    int d = 0;
    if (cudaError_t e = current_device(s, d)) return e;
    t = Target{nullptr, d};
    return cudaSuccess;
  }
  auto it = s.streams.find(key_of(h));
  if (it == s.streams.end()) return cudaErrorInvalidResourceHandle;
  t = Target{it->second, it->second->device};
  return cudaSuccess;
}

bool capturing(const Target& t) { return t.stream && t.stream->capture; }

// Records the op while the stream captures, runs it in the caller on the legacy stream (after
// the blocking streams, as the legacy stream synchronises with them), queues it otherwise.
cudaError_t submit(State& s, Lock& lk, const Target& t, OpPtr op) {
  if (!t.stream) {
    if (cudaError_t e = legacy_use(s, t.device)) return e;
    drain_blocking_streams(s, lk, t.device);
    const bool inject = valid_device(s, t.device) && std::exchange(s.devices[t.device].fault_next_legacy, false);
    run_op(s, lk, t.device, *op, inject);
    return sticky(s, t.device);
  }
  Stream& st = *t.stream;
  if (st.capture) {
    Capture& c = *st.capture;
    if (c.invalidated) return cudaErrorStreamCaptureInvalidated;
    c.ops.push_back(std::move(op));
    st.clock[st.key] = ++c.captured[st.key];
    return cudaSuccess;
  }
  st.queue.push_back(Stream::Entry{std::move(op), std::exchange(st.fault_next, false)});
  ++st.enqueued;
  st.wake.notify_one();
  return cudaSuccess;
}

// Waits until `st` has run everything queued on it so far.
void wait_stream(State& s, Lock& lk, Stream& st) {
  const std::uint64_t target = st.enqueued;
  const std::uint64_t epoch = s.epoch;
  s.done.wait(lk, [&] { return st.completed >= target || st.stop || s.epoch != epoch; });
}

OpPtr make_op(OpKind kind, std::function<void(int)> run = {}) {
  auto op = std::make_shared<Op>();
  op->kind = kind;
  op->run = std::move(run);
  return op;
}

// ------------------------------------------------------------------ copies and memsets

cudaError_t copy(State& s, Lock& lk, void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind,
                 const Target& t) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault) return cudaErrorInvalidMemcpyDirection;
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return cudaErrorInvalidValue;
  const Located to = locate(s, dst, bytes);
  const Located from = locate(s, src, bytes);
  const bool dst_device = to.where == Where::kDevice;
  const bool src_device = from.where == Where::kDevice;
  cudaMemcpyKind direction = kind;
  if (kind == cudaMemcpyDefault) {
    direction = src_device ? (dst_device ? cudaMemcpyDeviceToDevice : cudaMemcpyDeviceToHost)
                           : (dst_device ? cudaMemcpyHostToDevice : cudaMemcpyHostToHost);
  }
  const bool want_src_device = direction == cudaMemcpyDeviceToHost || direction == cudaMemcpyDeviceToDevice;
  const bool want_dst_device = direction == cudaMemcpyHostToDevice || direction == cudaMemcpyDeviceToDevice;
  // A range running off the end of its allocation (device or pinned) is the caller's overrun.
  if (src_device != want_src_device || dst_device != want_dst_device || !to.inside || !from.inside) {
    return cudaErrorInvalidValue;
  }
  const bool pageable = from.where == Where::kPageable || to.where == Where::kPageable;
  if (capturing(t) && !t.stream->capture->invalidated && pageable) {
    invalidate(s, *t.stream->capture);  // a graph cannot hold a copy staged through pageable memory
    return cudaErrorStreamCaptureUnsupported;
  }
  // From pageable memory the driver stages the source before the call returns (the caller may
  // reuse it at once), but the stream writes the destination later.
  std::shared_ptr<std::vector<unsigned char>> staged;
  if (t.stream && !capturing(t) && from.where == Where::kPageable) {
    staged = std::make_shared<std::vector<unsigned char>>(bytes);
    std::memcpy(staged->data(), src, bytes);
  }
  auto op = std::make_shared<Op>();
  op->kind = OpKind::kCopy;
  op->direction = direction;
  op->bytes = bytes;
  op->pageable = pageable;
  const Where to_where = to.where, from_where = from.where;
  op->run = [dst, src, bytes, staged, to_where, from_where](int) {
    recheck(dst, bytes, to_where);
    recheck(src, bytes, from_where);
    std::memcpy(dst, staged ? staged->data() : src, bytes);
  };
  if (cudaError_t e = submit(s, lk, t, std::move(op))) return e;
  // Host to host is synchronous with the host whatever the stream.
  if (direction == cudaMemcpyHostToHost && t.stream && !capturing(t)) wait_stream(s, lk, *t.stream);
  return sticky(s, t.device);
}

// Device memory, or pinned host memory (then synchronous with the host, as CUDA documents).
cudaError_t memset_op(State& s, Lock& lk, void* dst, int value, std::size_t bytes, const Target& t) {
  if (bytes == 0) return cudaSuccess;
  const Located to = locate(s, dst, bytes);
  if (to.where == Where::kPageable || !to.inside) return cudaErrorInvalidValue;
  const Where where = to.where;
  auto op = make_op(OpKind::kMemset, [dst, value, bytes, where](int) {
    recheck(dst, bytes, where);
    std::memset(dst, static_cast<unsigned char>(value), bytes);
  });
  if (cudaError_t e = submit(s, lk, t, std::move(op))) return e;
  if (where == Where::kPinned && t.stream && !capturing(t)) wait_stream(s, lk, *t.stream);
  return sticky(s, t.device);
}

// ------------------------------------------------------------------ errors

#define FASTRES_FAKE_CUDA_ERRORS(X)                                                                      \
  X(cudaSuccess, "no error")                                                                             \
  X(cudaErrorInvalidValue, "invalid argument")                                                           \
  X(cudaErrorMemoryAllocation, "out of memory")                                                          \
  X(cudaErrorInitializationError, "initialization error")                                                \
  X(cudaErrorCudartUnloading, "driver shutting down")                                                    \
  X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                                \
  X(cudaErrorInsufficientDriver, "CUDA driver version is insufficient for CUDA runtime version")         \
  X(cudaErrorNoDevice, "no CUDA-capable device is detected")                                             \
  X(cudaErrorInvalidDevice, "invalid device ordinal")                                                    \
  X(cudaErrorInvalidConfiguration, "invalid configuration argument")                                     \
  X(cudaErrorLaunchOutOfResources, "too many resources requested for launch")                            \
  X(cudaErrorInvalidResourceHandle, "invalid resource handle")                                           \
  X(cudaErrorIllegalState, "the operation cannot be performed in the present state")                     \
  X(cudaErrorNotReady, "device not ready")                                                               \
  X(cudaErrorIllegalAddress, "an illegal memory access was encountered")                                 \
  X(cudaErrorLaunchFailure, "unspecified launch failure")                                                \
  X(cudaErrorNotPermitted, "operation not permitted")                                                    \
  X(cudaErrorNotSupported, "operation not supported")                                                    \
  X(cudaErrorStreamCaptureUnsupported, "operation not permitted when stream is capturing")               \
  X(cudaErrorStreamCaptureInvalidated, "operation failed due to a previous error during capture")        \
  X(cudaErrorStreamCaptureMerge, "operation would result in a merge of separate capture sequences")      \
  X(cudaErrorStreamCaptureUnmatched, "capture was not ended in the same stream as it began")             \
  X(cudaErrorStreamCaptureUnjoined, "capturing stream has unjoined work")                                \
  X(cudaErrorStreamCaptureIsolation, "dependency created on uncaptured work in another stream")          \
  X(cudaErrorStreamCaptureImplicit, "operation would make the legacy stream depend on a capturing blocking stream") \
  X(cudaErrorCapturedEvent, "operation not permitted on an event last recorded in a capturing stream")   \
  X(cudaErrorStreamCaptureWrongThread, "attempt to terminate a thread-local capture sequence from another thread") \
  X(cudaErrorUnknown, "unknown error")

const char* error_name(cudaError_t e) {
#define FASTRES_FAKE_CUDA_NAME(code, text) \
  if (e == code) return #code;
  FASTRES_FAKE_CUDA_ERRORS(FASTRES_FAKE_CUDA_NAME)
#undef FASTRES_FAKE_CUDA_NAME
  return "unrecognized error code";
}

const char* error_string(cudaError_t e) {
#define FASTRES_FAKE_CUDA_TEXT(code, text) \
  if (e == code) return text;
  FASTRES_FAKE_CUDA_ERRORS(FASTRES_FAKE_CUDA_TEXT)
#undef FASTRES_FAKE_CUDA_TEXT
  return "unrecognized error code";
}

// ------------------------------------------------------------------ events

cudaError_t find_event(State& s, cudaEvent_t h, std::shared_ptr<Event>& ev) {
  auto it = s.events.find(key_of(h));
  if (it == s.events.end()) return cudaErrorInvalidResourceHandle;
  ev = it->second;
  return cudaSuccess;
}

// Host-side queries of an event last recorded in a capture are refused (and end that capture's
// validity): the record is a dependency inside a graph, not a point the host can wait for.
cudaError_t captured_event_query(State& s, const Event& ev) {
  if (!ev.captured_record) return cudaSuccess;
  if (auto c = active_capture(s, ev.capture)) invalidate(s, *c);
  return cudaErrorCapturedEvent;
}

// cudaStreamWaitEvent on a stream in capture.
cudaError_t wait_in_capture(State& s, Stream& st, const Event& ev) {
  Capture& mine = *st.capture;
  if (mine.invalidated) return cudaErrorStreamCaptureInvalidated;
  if (ev.captured_record) {
    auto theirs = ev.capture.lock();
    if (theirs.get() == &mine) {
      for (const auto& [member, n] : ev.clock) st.clock[member] = std::max(st.clock[member], n);
      return cudaSuccess;
    }
    invalidate(s, mine);
    return active_capture(s, ev.capture) ? cudaErrorStreamCaptureMerge : cudaErrorStreamCaptureIsolation;
  }
  if (!ev.marker) return cudaSuccess;  // never recorded: nothing to wait for
  invalidate(s, mine);
  return cudaErrorStreamCaptureIsolation;
}

// cudaStreamWaitEvent on a stream not in capture, of an event recorded in an active capture:
// the stream joins that capture (a fork), and its later work is captured too.
cudaError_t join_capture(State& s, const Target& t, const Event& ev, const std::shared_ptr<Capture>& c) {
  if (c->invalidated) return cudaErrorStreamCaptureInvalidated;
  if (!t.stream || t.device != c->device) {  // the double's graphs are single-device, one stream
    invalidate(s, *c);
    return cudaErrorStreamCaptureUnsupported;
  }
  t.stream->capture = c;
  t.stream->clock = ev.clock;
  c->members.push_back(t.stream->key);
  return cudaSuccess;
}

cudaError_t create_event(const char* name, cudaEvent_t* event, unsigned flags) {
  return api(name, [&](State& s, Lock&) -> cudaError_t {
    constexpr unsigned kKnown = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
    if (event == nullptr || (flags & ~kKnown) != 0) return cudaErrorInvalidValue;
    if ((flags & cudaEventInterprocess) != 0) {
      if ((flags & cudaEventDisableTiming) == 0) return cudaErrorInvalidValue;
      return cudaErrorNotSupported;  // interprocess events are not modelled
    }
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    auto ev = std::make_shared<Event>();
    ev->device = d;
    ev->flags = flags;
    const std::uintptr_t key = new_key(s);
    s.events.emplace(key, ev);
    *event = handle_of<cudaEvent_t>(key);
    return cudaSuccess;
  });
}

// ------------------------------------------------------------------ streams

cudaError_t create_stream(const char* name, cudaStream_t* out, unsigned flags, int priority) {
  return api(name, [&](State& s, Lock& lk) -> cudaError_t {
    if (out == nullptr || (flags & ~static_cast<unsigned>(cudaStreamNonBlocking)) != 0) return cudaErrorInvalidValue;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    reap(s, lk);
    auto st = std::make_shared<Stream>();
    st->key = new_key(s);
    st->device = d;
    st->blocking = (flags & cudaStreamNonBlocking) == 0;
    st->priority = std::clamp(priority, kGreatestPriority, 0);  // CUDA clamps out-of-range priorities
    st->worker = std::thread([&s, st] { worker_main(s, st); });
    s.streams.emplace(st->key, st);
    *out = handle_of<cudaStream_t>(st->key);
    return cudaSuccess;
  });
}

}  // namespace

// ------------------------------------------------------------------ control API

void reset() {
  State& s = state();
  Lock lk(s.mu);
  stop_workers(s, lk);
  for (auto& [base, a] : s.allocations) std::free(reinterpret_cast<void*>(base));
  s.allocations.clear();
  s.events.clear();
  s.graphs.clear();
  s.execs.clear();
  s.captures.clear();
  s.failures.clear();
  s.op_delay = std::chrono::nanoseconds{0};
  s.kernel_host_access = false;
  s.memory_limit = kDefaultMemory;
  s.counters = Counters{};
  s.devices.assign(static_cast<std::size_t>(env_device_count()), Device{});
  ++s.epoch;
}

void set_device_count(int count) {
  if (count < 0 || count > kMaxDevices) {
    throw std::invalid_argument("fake_cuda::set_device_count(" + std::to_string(count) + "): expected 0.." +
                                std::to_string(kMaxDevices));
  }
  State& s = state();
  Lock lk(s.mu);
  reap(s, lk);
  if (!s.streams.empty() || !s.retired.empty() || !s.events.empty() || !s.graphs.empty() || !s.execs.empty() ||
      !s.allocations.empty()) {
    throw std::logic_error(
        "fake_cuda::set_device_count: streams, events, graphs or allocations are alive; reset() first");
  }
  s.devices.assign(static_cast<std::size_t>(count), Device{});
}

void set_memory_limit(std::size_t bytes) {
  State& s = state();
  Lock lk(s.mu);
  s.memory_limit = bytes;
}

void fail_next(const std::string& api_name, cudaError_t error, int count) {
  State& s = state();
  Lock lk(s.mu);
  if (count <= 0) {
    s.failures.erase(api_name);
  } else {
    s.failures[api_name] = {error, count};
  }
}

void set_op_delay(std::chrono::nanoseconds delay) {
  State& s = state();
  Lock lk(s.mu);
  s.op_delay = delay;
}

void inject_fault(cudaStream_t stream) {
  State& s = state();
  Lock lk(s.mu);
  if (is_legacy(stream)) {
    const int d = me(s).device;
    if (!valid_device(s, d)) throw std::invalid_argument("fake_cuda::inject_fault: no current device");
    s.devices[d].fault_next_legacy = true;
    return;
  }
  auto it = s.streams.find(key_of(stream));
  if (it == s.streams.end()) throw std::invalid_argument("fake_cuda::inject_fault: unknown stream");
  it->second->fault_next = true;
}

void hang_stream(cudaStream_t stream, bool hang) {
  State& s = state();
  Lock lk(s.mu);
  auto it = is_legacy(stream) ? s.streams.end() : s.streams.find(key_of(stream));
  if (it == s.streams.end()) {
    throw std::invalid_argument("fake_cuda::hang_stream: not a live created stream (the legacy stream cannot hang)");
  }
  it->second->hung = hang;
  it->second->wake.notify_all();
}

void allow_kernel_host_access(bool allow) {
  State& s = state();
  Lock lk(s.mu);
  s.kernel_host_access = allow;
}

cudaError_t sticky_error(int device) {
  State& s = state();
  Lock lk(s.mu);
  if (!valid_device(s, device)) {
    throw std::invalid_argument("fake_cuda::sticky_error: no device " + std::to_string(device));
  }
  return s.devices[device].sticky;
}

bool is_device_pointer(const void* p, int* device) {
  State& s = state();
  Lock lk(s.mu);
  const Located at = locate(s, p, 1);
  if (at.where != Where::kDevice) return false;
  if (device != nullptr) *device = at.device;
  return true;
}

Counters counters() {
  State& s = state();
  Lock lk(s.mu);
  Counters c = s.counters;
  for (const auto& [base, a] : s.allocations) {
    if (a.pinned) {
      ++c.live_pinned_allocations;
      c.live_pinned_bytes += a.bytes;
    } else {
      ++c.live_device_allocations;
      c.live_device_bytes += a.bytes;
    }
  }
  c.live_streams = s.streams.size();
  c.live_events = s.events.size();
  c.live_graphs = s.graphs.size();
  c.live_graph_execs = s.execs.size();
  return c;
}

void KernelMemory::require(const void* p, std::size_t bytes) const {
  if (bytes == 0) return;
  State& s = state();
  Lock lk(s.mu);
  const Located at = locate(s, p, bytes);
  const bool device_ok = at.where == Where::kDevice && at.device == device_;
  const bool host_ok = at.where == Where::kPinned && s.kernel_host_access;
  if (!at.inside || !(device_ok || host_ok)) throw Fault{cudaErrorIllegalAddress};
}

cudaError_t launch_kernel(const char* name, cudaStream_t stream, std::function<void(const KernelMemory&)> body) {
  return api(name, [&](State& s, Lock& lk) -> cudaError_t {
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    if (t.device != d) return cudaErrorInvalidResourceHandle;  // a kernel runs on the current device
    auto op = std::make_shared<Op>();
    op->kind = OpKind::kKernel;
    op->name = name;
    op->run = [body = std::move(body)](int device) { body(KernelMemory(device)); };
    return submit(s, lk, t, std::move(op));
  });
}

std::size_t bytes_of(std::size_t count, std::size_t size) noexcept {
  std::size_t bytes = 0;
  return __builtin_mul_overflow(count, size, &bytes) ? SIZE_MAX : bytes;
}

}  // namespace fastres::fake_cuda

// ==================================================================== the CUDA runtime API

using namespace fastres::fake_cuda;  // NOLINT: the definitions below are the double's whole surface

extern "C" {

// ------------------------------------------------------------------ devices and versions

cudaError_t cudaGetDeviceCount(int* count) {
  return api("cudaGetDeviceCount", [&](State& s, Lock&) -> cudaError_t {
    if (count == nullptr) return cudaErrorInvalidValue;
    *count = static_cast<int>(s.devices.size());
    return s.devices.empty() ? cudaErrorNoDevice : cudaSuccess;
  });
}

cudaError_t cudaSetDevice(int device) {
  return api("cudaSetDevice", [&](State& s, Lock&) -> cudaError_t {
    if (s.devices.empty()) return cudaErrorNoDevice;
    if (!valid_device(s, device)) return cudaErrorInvalidDevice;
    me(s).device = device;
    return cudaSuccess;
  });
}

cudaError_t cudaGetDevice(int* device) {
  return api("cudaGetDevice", [&](State& s, Lock&) -> cudaError_t {
    if (device == nullptr) return cudaErrorInvalidValue;
    if (s.devices.empty()) return cudaErrorNoDevice;
    *device = me(s).device;
    return cudaSuccess;
  });
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return api("cudaGetDeviceProperties", [&](State& s, Lock&) -> cudaError_t {
    if (prop == nullptr) return cudaErrorInvalidValue;
    if (!valid_device(s, device)) return cudaErrorInvalidDevice;
    *prop = cudaDeviceProp{};
    std::snprintf(prop->name, sizeof prop->name, "fastres CUDA double (fake device %d)", device);
    prop->totalGlobalMem = s.memory_limit;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 132;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->canMapHostMemory = 1;
    prop->unifiedAddressing = 1;
    prop->concurrentKernels = 1;
    prop->asyncEngineCount = 2;
    prop->streamPrioritiesSupported = 1;
    prop->pciBusID = device;
    return cudaSuccess;
  });
}

cudaError_t cudaDeviceGetStreamPriorityRange(int* leastPriority, int* greatestPriority) {
  return api("cudaDeviceGetStreamPriorityRange", [&](State& s, Lock&) -> cudaError_t {
    if (s.devices.empty()) return cudaErrorNoDevice;
    if (leastPriority != nullptr) *leastPriority = 0;
    if (greatestPriority != nullptr) *greatestPriority = kGreatestPriority;
    return cudaSuccess;
  });
}

cudaError_t cudaDeviceSynchronize(void) {
  return api("cudaDeviceSynchronize", [&](State& s, Lock& lk) -> cudaError_t {
    int d = 0;
    if (cudaError_t e = current_device(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    bool capturing_here = false;  // synchronising a device that holds a capture is invalid too
    for (auto& c : s.captures) {
      if (c->device == d) {
        invalidate(s, *c);
        capturing_here = true;
      }
    }
    if (capturing_here) return cudaErrorStreamCaptureUnsupported;
    drain(s, lk, [d](const Stream& st) { return st.device == d; });
    return sticky(s, d);
  });
}

cudaError_t cudaDriverGetVersion(int* driverVersion) {
  return api("cudaDriverGetVersion", [&](State&, Lock&) -> cudaError_t {
    if (driverVersion == nullptr) return cudaErrorInvalidValue;
    *driverVersion = kDriverVersion;
    return cudaSuccess;
  });
}

cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  return api("cudaRuntimeGetVersion", [&](State&, Lock&) -> cudaError_t {
    if (runtimeVersion == nullptr) return cudaErrorInvalidValue;
    *runtimeVersion = CUDART_VERSION;
    return cudaSuccess;
  });
}

// ------------------------------------------------------------------ errors

// The last error of the calling thread, else the sticky error of its current device (which
// reading does not clear).
cudaError_t cudaGetLastError(void) {
  State& s = state();
  Lock lk(s.mu);
  if (cudaError_t e = enter(s, "cudaGetLastError")) return e;
  ThreadState& t = me(s);
  const cudaError_t last = std::exchange(t.last, cudaSuccess);
  return last != cudaSuccess ? last : sticky(s, t.device);
}

cudaError_t cudaPeekAtLastError(void) {
  State& s = state();
  Lock lk(s.mu);
  if (cudaError_t e = enter(s, "cudaPeekAtLastError")) return e;
  ThreadState& t = me(s);
  return t.last != cudaSuccess ? t.last : sticky(s, t.device);
}

const char* cudaGetErrorName(cudaError_t error) { return error_name(error); }

const char* cudaGetErrorString(cudaError_t error) { return error_string(error); }

// ------------------------------------------------------------------ memory

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  return api("cudaMalloc", [&](State& s, Lock&) -> cudaError_t {
    if (devPtr == nullptr) return cudaErrorInvalidValue;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    *devPtr = nullptr;
    if (size == 0) return cudaSuccess;
    if (size > s.memory_limit - std::min(s.memory_limit, s.devices[d].used)) return cudaErrorMemoryAllocation;
    void* p = nullptr;
    if (posix_memalign(&p, kDeviceAlignment, size) != 0) return cudaErrorMemoryAllocation;
    std::memset(p, kUninitialised, size);
    s.allocations.emplace(reinterpret_cast<std::uintptr_t>(p), Allocation{size, d, false});
    s.devices[d].used += size;
    *devPtr = p;
    return cudaSuccess;
  });
}

// Waits for the allocation's device, as the real cudaFree synchronises, then frees.
cudaError_t cudaFree(void* devPtr) {
  return api("cudaFree", [&](State& s, Lock& lk) -> cudaError_t {
    int d = 0;
    if (cudaError_t e = current_device(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    if (devPtr == nullptr) return sticky(s, d);
    const auto base = reinterpret_cast<std::uintptr_t>(devPtr);
    auto it = s.allocations.find(base);
    if (it == s.allocations.end() || it->second.pinned) return cudaErrorInvalidValue;
    const int owner = it->second.device;
    drain(s, lk, [owner](const Stream& st) { return st.device == owner; });
    it = s.allocations.find(base);  // another thread may have freed it meanwhile
    if (it == s.allocations.end() || it->second.pinned) return cudaErrorInvalidValue;
    s.devices[owner].used -= it->second.bytes;
    s.allocations.erase(it);
    std::free(devPtr);
    return faulted(s, d) ? sticky(s, d) : sticky(s, owner);
  });
}

cudaError_t cudaMemGetInfo(size_t* free, size_t* total) {
  return api("cudaMemGetInfo", [&](State& s, Lock&) -> cudaError_t {
    if (free == nullptr || total == nullptr) return cudaErrorInvalidValue;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    *total = s.memory_limit;
    *free = s.memory_limit - std::min(s.memory_limit, s.devices[d].used);
    return cudaSuccess;
  });
}

cudaError_t cudaHostAlloc(void** pHost, size_t size, unsigned int flags) {
  return api("cudaHostAlloc", [&](State& s, Lock&) -> cudaError_t {
    constexpr unsigned kKnown = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
    if (pHost == nullptr || (flags & ~kKnown) != 0) return cudaErrorInvalidValue;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    *pHost = nullptr;
    if (size == 0) return cudaSuccess;
    void* p = nullptr;
    if (posix_memalign(&p, kHostAlignment, size) != 0) return cudaErrorMemoryAllocation;
    std::memset(p, kUninitialised, size);
    s.allocations.emplace(reinterpret_cast<std::uintptr_t>(p), Allocation{size, d, true});
    *pHost = p;
    return cudaSuccess;
  });
}

// Waits for every device (the real cudaFreeHost synchronises too), then frees.
cudaError_t cudaFreeHost(void* ptr) {
  return api("cudaFreeHost", [&](State& s, Lock& lk) -> cudaError_t {
    int d = 0;
    if (cudaError_t e = current_device(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    if (ptr == nullptr) return sticky(s, d);
    const auto base = reinterpret_cast<std::uintptr_t>(ptr);
    auto it = s.allocations.find(base);
    if (it == s.allocations.end() || !it->second.pinned) return cudaErrorInvalidValue;
    drain(s, lk, [](const Stream&) { return true; });
    it = s.allocations.find(base);
    if (it == s.allocations.end() || !it->second.pinned) return cudaErrorInvalidValue;
    s.allocations.erase(it);
    std::free(ptr);
    return sticky(s, d);
  });
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  return api("cudaPointerGetAttributes", [&](State& s, Lock&) -> cudaError_t {
    if (attributes == nullptr) return cudaErrorInvalidValue;
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    *attributes = cudaPointerAttributes{};
    const Located at = locate(s, ptr, 1);
    void* p = const_cast<void*>(ptr);
    switch (at.where) {
      case Where::kDevice:
        attributes->type = cudaMemoryTypeDevice;
        attributes->device = at.device;
        attributes->devicePointer = p;
        break;
      case Where::kPinned:  // mapped into every device under unified addressing
        attributes->type = cudaMemoryTypeHost;
        attributes->device = at.device;
        attributes->devicePointer = p;
        attributes->hostPointer = p;
        break;
      case Where::kPageable:
        attributes->type = cudaMemoryTypeUnregistered;
        attributes->device = -2;
        attributes->hostPointer = p;
        break;
    }
    return cudaSuccess;
  });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return api("cudaMemcpy", [&](State& s, Lock& lk) -> cudaError_t {
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    return copy(s, lk, dst, src, count, kind, Target{nullptr, d});
  });
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  return api("cudaMemcpyAsync", [&](State& s, Lock& lk) -> cudaError_t {
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    return copy(s, lk, dst, src, count, kind, t);
  });
}

cudaError_t cudaMemset(void* devPtr, int value, size_t count) {
  return api("cudaMemset", [&](State& s, Lock& lk) -> cudaError_t {
    int d = 0;
    if (cudaError_t e = current(s, d)) return e;
    if (cudaError_t e = unsafe_call(s)) return e;
    return memset_op(s, lk, devPtr, value, count, Target{nullptr, d});
  });
}

cudaError_t cudaMemsetAsync(void* devPtr, int value, size_t count, cudaStream_t stream) {
  return api("cudaMemsetAsync", [&](State& s, Lock& lk) -> cudaError_t {
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    return memset_op(s, lk, devPtr, value, count, t);
  });
}

// ------------------------------------------------------------------ streams

cudaError_t cudaStreamCreate(cudaStream_t* pStream) {
  return create_stream("cudaStreamCreate", pStream, cudaStreamDefault, 0);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* pStream, unsigned int flags) {
  return create_stream("cudaStreamCreateWithFlags", pStream, flags, 0);
}

cudaError_t cudaStreamCreateWithPriority(cudaStream_t* pStream, unsigned int flags, int priority) {
  return create_stream("cudaStreamCreateWithPriority", pStream, flags, priority);
}

// Returns at once; the worker finishes what is queued, then exits.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  return api("cudaStreamDestroy", [&](State& s, Lock& lk) -> cudaError_t {
    if (is_legacy(stream)) return cudaErrorInvalidResourceHandle;
    auto it = s.streams.find(key_of(stream));
    if (it == s.streams.end()) return cudaErrorInvalidResourceHandle;
    StreamPtr st = it->second;
    if (auto c = st->capture) {
      // Its capture can no longer be ended well: discarded if it began here, invalidated if not.
      if (c->origin == st->key) {
        end_capture(s, c);
      } else {
        invalidate(s, *c);
      }
      st->capture.reset();
    }
    s.streams.erase(it);
    st->retiring = true;
    st->wake.notify_all();
    s.retired.push_back(st);
    const int d = st->device;
    reap(s, lk);
    return sticky(s, d);
  });
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return api("cudaStreamSynchronize", [&](State& s, Lock& lk) -> cudaError_t {
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (!t.stream) {
      if (cudaError_t e = legacy_use(s, t.device)) return e;
      if (cudaError_t e = unsafe_call(s)) return e;
      drain_blocking_streams(s, lk, t.device);
      return sticky(s, t.device);
    }
    if (t.stream->capture) {
      invalidate(s, *t.stream->capture);
      return cudaErrorStreamCaptureUnsupported;
    }
    wait_stream(s, lk, *t.stream);
    return sticky(s, t.device);
  });
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return api("cudaStreamQuery", [&](State& s, Lock&) -> cudaError_t {
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (!t.stream) {
      if (cudaError_t e = legacy_use(s, t.device)) return e;
      for (auto& [key, st] : s.streams) {
        if (st->device == t.device && st->blocking && st->completed < st->enqueued) return cudaErrorNotReady;
      }
      return cudaSuccess;
    }
    if (t.stream->capture) {
      invalidate(s, *t.stream->capture);
      return cudaErrorStreamCaptureUnsupported;
    }
    return t.stream->completed < t.stream->enqueued ? cudaErrorNotReady : cudaSuccess;
  });
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  return api("cudaStreamWaitEvent", [&](State& s, Lock& lk) -> cudaError_t {
    // External event nodes (cudaEventWaitExternal) are not modelled.
    if (flags == cudaEventWaitExternal) return cudaErrorNotSupported;
    if (flags != cudaEventWaitDefault) return cudaErrorInvalidValue;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    std::shared_ptr<Event> ev;
    if (cudaError_t e = find_event(s, event, ev)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (capturing(t)) return wait_in_capture(s, *t.stream, *ev);
    if (ev->captured_record) {
      if (auto c = active_capture(s, ev->capture)) return join_capture(s, t, *ev, c);
      return cudaErrorCapturedEvent;  // recorded in a capture that has ended
    }
    if (!ev->marker) return cudaSuccess;
    auto op = std::make_shared<Op>();
    op->kind = OpKind::kWait;
    op->waits_for = ev->marker;
    return submit(s, lk, t, std::move(op));
  });
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  return api("cudaLaunchHostFunc", [&](State& s, Lock& lk) -> cudaError_t {
    if (fn == nullptr) return cudaErrorInvalidValue;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    auto op = make_op(OpKind::kHostFunction, [fn, userData](int) {
      struct InHostFunction {
        InHostFunction() { t_in_host_function = true; }
        ~InHostFunction() { t_in_host_function = false; }
      } in;
      fn(userData);
    });
    return submit(s, lk, t, std::move(op));
  });
}

// ------------------------------------------------------------------ events

cudaError_t cudaEventCreate(cudaEvent_t* event) { return create_event("cudaEventCreate", event, cudaEventDefault); }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  return create_event("cudaEventCreateWithFlags", event, flags);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  return api("cudaEventDestroy", [&](State& s, Lock&) -> cudaError_t {
    auto it = s.events.find(key_of(event));
    if (it == s.events.end()) return cudaErrorInvalidResourceHandle;
    const int d = it->second->device;
    s.events.erase(it);  // a pending record or wait keeps its marker alive
    return sticky(s, d);
  });
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return api("cudaEventRecord", [&](State& s, Lock& lk) -> cudaError_t {
    std::shared_ptr<Event> ev;
    if (cudaError_t e = find_event(s, event, ev)) return e;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (t.device != ev->device) return cudaErrorInvalidResourceHandle;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (capturing(t)) {
      if (t.stream->capture->invalidated) return cudaErrorStreamCaptureInvalidated;
      ev->captured_record = true;
      ev->capture = t.stream->capture;
      ev->clock = t.stream->clock;
      return cudaSuccess;
    }
    auto op = std::make_shared<Op>();
    op->kind = OpKind::kRecord;
    op->marks = std::make_shared<Marker>();
    MarkerPtr marker = op->marks;
    if (!t.stream) {  // the legacy stream's blocking streams may already be capturing
      if (cudaError_t e = legacy_use(s, t.device)) return e;
    }
    ev->marker = marker;
    ev->captured_record = false;
    ev->capture.reset();
    return submit(s, lk, t, std::move(op));
  });
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  return api("cudaEventQuery", [&](State& s, Lock&) -> cudaError_t {
    std::shared_ptr<Event> ev;
    if (cudaError_t e = find_event(s, event, ev)) return e;
    if (cudaError_t e = sticky(s, ev->device)) return e;
    if (cudaError_t e = captured_event_query(s, *ev)) return e;
    return !ev->marker || ev->marker->done ? cudaSuccess : cudaErrorNotReady;
  });
}

// Blocking-sync events sleep on a condition variable; the others spin (yielding), as CUDA does.
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return api("cudaEventSynchronize", [&](State& s, Lock& lk) -> cudaError_t {
    std::shared_ptr<Event> ev;
    if (cudaError_t e = find_event(s, event, ev)) return e;
    if (cudaError_t e = captured_event_query(s, *ev)) return e;
    MarkerPtr m = ev->marker;
    if (!m) return cudaSuccess;
    const std::uint64_t epoch = s.epoch;
    auto finished = [&] { return m->done || s.epoch != epoch; };
    if ((ev->flags & cudaEventBlockingSync) != 0) {
      s.done.wait(lk, finished);
    } else {
      while (!finished()) {
        lk.unlock();
        std::this_thread::yield();
        lk.lock();
      }
    }
    return sticky(s, ev->device);
  });
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return api("cudaEventElapsedTime", [&](State& s, Lock&) -> cudaError_t {
    if (ms == nullptr) return cudaErrorInvalidValue;
    std::shared_ptr<Event> a, b;
    if (cudaError_t e = find_event(s, start, a)) return e;
    if (cudaError_t e = find_event(s, end, b)) return e;
    if (a->device != b->device) return cudaErrorInvalidResourceHandle;
    if (cudaError_t e = sticky(s, a->device)) return e;
    if (((a->flags | b->flags) & cudaEventDisableTiming) != 0) return cudaErrorInvalidResourceHandle;
    if (cudaError_t e = captured_event_query(s, *a)) return e;
    if (cudaError_t e = captured_event_query(s, *b)) return e;
    if (!a->marker || !b->marker) return cudaErrorInvalidResourceHandle;  // never recorded
    if (!a->marker->done || !b->marker->done) return cudaErrorNotReady;
    *ms = std::chrono::duration<float, std::milli>(b->marker->when - a->marker->when).count();
    return cudaSuccess;
  });
}

// ------------------------------------------------------------------ capture and graphs

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  return api("cudaStreamBeginCapture", [&](State& s, Lock&) -> cudaError_t {
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed) {
      return cudaErrorInvalidValue;
    }
    if (is_legacy(stream)) return cudaErrorStreamCaptureUnsupported;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (t.stream->capture) return cudaErrorIllegalState;
    auto c = std::make_shared<Capture>();
    c->origin = t.stream->key;
    c->device = t.device;
    c->mode = mode;
    c->thread = std::this_thread::get_id();
    c->members.push_back(t.stream->key);
    t.stream->capture = c;
    t.stream->clock.clear();
    s.captures.push_back(c);
    return cudaSuccess;
  });
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* pGraph) {
  return api("cudaStreamEndCapture", [&](State& s, Lock&) -> cudaError_t {
    if (pGraph == nullptr) return cudaErrorInvalidValue;
    if (is_legacy(stream)) return cudaErrorIllegalState;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    std::shared_ptr<Capture> c = t.stream->capture;
    if (!c) return cudaErrorIllegalState;
    if (c->origin != t.stream->key) {
      invalidate(s, *c);
      return cudaErrorStreamCaptureUnmatched;
    }
    if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id()) {
      return cudaErrorStreamCaptureWrongThread;
    }
    *pGraph = nullptr;
    const std::map<std::uintptr_t, std::uint64_t> origin_clock = t.stream->clock;
    end_capture(s, c);
    if (c->invalidated) return cudaErrorStreamCaptureInvalidated;
    for (const auto& [member, n] : c->captured) {
      if (member == c->origin) continue;
      auto known = origin_clock.find(member);
      if (known == origin_clock.end() || known->second < n) return cudaErrorStreamCaptureUnjoined;
    }
    if (cudaError_t e = sticky(s, t.device)) return e;
    auto g = std::make_shared<Graph>();
    g->device = c->device;
    g->ops = std::move(c->ops);
    const std::uintptr_t key = new_key(s);
    s.graphs.emplace(key, g);
    *pGraph = handle_of<cudaGraph_t>(key);
    return cudaSuccess;
  });
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* pCaptureStatus) {
  return api("cudaStreamIsCapturing", [&](State& s, Lock&) -> cudaError_t {
    if (pCaptureStatus == nullptr) return cudaErrorInvalidValue;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (!t.stream) {  // the legacy stream: unusable while a blocking stream of its device captures
      for (auto& c : s.captures) {
        for (std::uintptr_t m : c->members) {
          auto it = s.streams.find(m);
          if (it != s.streams.end() && it->second->blocking && it->second->device == t.device) {
            return cudaErrorStreamCaptureImplicit;
          }
        }
      }
      *pCaptureStatus = cudaStreamCaptureStatusNone;
      return cudaSuccess;
    }
    const auto& c = t.stream->capture;
    *pCaptureStatus = !c ? cudaStreamCaptureStatusNone
                         : (c->invalidated ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive);
    return cudaSuccess;
  });
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* pGraphExec, cudaGraph_t graph, unsigned long long flags) {
  return api("cudaGraphInstantiate", [&](State& s, Lock&) -> cudaError_t {
    constexpr unsigned long long kKnown =
        cudaGraphInstantiateFlagAutoFreeOnLaunch | cudaGraphInstantiateFlagUpload |
        cudaGraphInstantiateFlagDeviceLaunch | cudaGraphInstantiateFlagUseNodePriority;
    if (pGraphExec == nullptr || graph == nullptr || (flags & ~kKnown) != 0) return cudaErrorInvalidValue;
    auto it = s.graphs.find(key_of(graph));
    if (it == s.graphs.end()) return cudaErrorInvalidResourceHandle;
    if (cudaError_t e = sticky(s, it->second->device)) return e;
    auto x = std::make_shared<Exec>();
    x->device = it->second->device;
    x->ops = it->second->ops;
    const std::uintptr_t key = new_key(s);
    s.execs.emplace(key, x);
    *pGraphExec = handle_of<cudaGraphExec_t>(key);
    return cudaSuccess;
  });
}

// Enqueues the graph's ops in their captured order on `stream` (of the graph's device), after
// the previous launch of the same exec wherever that runs.
cudaError_t cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream) {
  return api("cudaGraphLaunch", [&](State& s, Lock& lk) -> cudaError_t {
    if (graphExec == nullptr) return cudaErrorInvalidValue;
    auto it = s.execs.find(key_of(graphExec));
    if (it == s.execs.end()) return cudaErrorInvalidResourceHandle;
    std::shared_ptr<Exec> x = it->second;
    Target t;
    if (cudaError_t e = resolve(s, stream, t)) return e;
    if (t.device != x->device) return cudaErrorInvalidValue;
    if (cudaError_t e = sticky(s, t.device)) return e;
    if (capturing(t)) {  // a launch inside a capture becomes part of the outer graph
      for (const OpPtr& op : x->ops) {
        if (cudaError_t e = submit(s, lk, t, op)) return e;
      }
      return cudaSuccess;
    }
    if (!t.stream) {
      if (cudaError_t e = legacy_use(s, t.device)) return e;
    }
    auto begin = std::make_shared<Op>();
    begin->kind = OpKind::kGraphBegin;
    begin->waits_for = x->last;
    auto end = std::make_shared<Op>();
    end->kind = OpKind::kGraphEnd;
    end->marks = std::make_shared<Marker>();
    x->last = end->marks;
    if (cudaError_t e = submit(s, lk, t, std::move(begin))) return e;
    for (const OpPtr& op : x->ops) {
      if (cudaError_t e = submit(s, lk, t, op)) return e;
    }
    return submit(s, lk, t, std::move(end));
  });
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  return api("cudaGraphDestroy", [&](State& s, Lock&) -> cudaError_t {
    if (graph == nullptr) return cudaErrorInvalidValue;
    return s.graphs.erase(key_of(graph)) == 1 ? cudaSuccess : cudaErrorInvalidResourceHandle;
  });
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t graphExec) {
  return api("cudaGraphExecDestroy", [&](State& s, Lock&) -> cudaError_t {
    if (graphExec == nullptr) return cudaErrorInvalidValue;
    return s.execs.erase(key_of(graphExec)) == 1 ? cudaSuccess : cudaErrorInvalidResourceHandle;
  });
}

}  // extern "C"
