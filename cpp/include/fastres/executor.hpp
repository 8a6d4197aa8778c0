// Executor: the native multi-stream executor (the design of NVIDIA's LWIS harness).
//
//   submit() ──► queue ──► batcher thread ──► stream slot k (worker thread) ──► completion threads ──► sink
//               (ids,     (Batcher: deque     gather samples from the           (one sink call per
//                indices)  timeout + limit)   SampleLibrary, run the engine)    batch, then the slot
//                                                                               is free again)
//
// * submit() only enqueues; it never waits for inference.
// * The batcher thread forms batches (batcher.hpp has the exact deque/timeout semantics), waits
//   for a free stream slot for each (FIFO, like LWIS's stream queue: the backpressure point),
//   and hands the batch to that slot. The queue itself is unbounded, as in LWIS.
// * Each of `copy_streams` slots has a worker thread and its own input and output buffers. The
//   worker gathers the batch's samples into the slot's contiguous input buffer (or, when they
//   already lie contiguous in the SampleLibrary, passes that memory directly), runs the engine,
//   and queues the batch for completion. Without CUDA, the slot's worker is also its inference
//   stream; `infer_streams` is validated and passed to the engine as StreamContext::infer_stream
//   (round-robin per batch, as LWIS does), where a CUDA engine will use it.
// * `complete_threads` completion threads call the sink ONCE per batch, then free the slot. The
//   responses live in the slot's output buffer: valid until the sink call returns.
// * Every submitted sample is completed exactly once: on success, on an engine error (flagged),
//   on flush() and on stop(), and when the watchdog gives up on a hung batch (flagged).
//
// With a CUDA engine (EngineIO::device == kCuda; built with FASTRES_WITH_CUDA) the same threads
// drive NVIDIA's LWIS pipeline. Per slot: a copy stream, three events without timing (input
// copied, inference done, output copied), a device input and output buffer and a pinned host
// output buffer; per device: `infer_streams` inference streams shared by its slots. A slot's
// worker enqueues, without waiting: host-to-device copies of the batch (one per run of samples
// that lie contiguous in the pinned SampleLibrary) or, with start_from_device, either nothing
// (contiguous samples are bound in the library's device copy) or the gather kernel; the
// inference stream waits for the input event and runs the engine (or its CUDA graph); the copy
// stream waits for the inference event and copies the answers back. The completion thread waits
// for the output event (spinning with use_spin_wait, else sleeping) and completes the batch.
// Several devices: `copy_streams` slots on each, batches round-robin over the devices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fastres/engine.hpp"
#include "fastres/sample_library.hpp"

namespace fastres {

// The knobs, named as the NVIDIA harness names them (gpu_batch_size, gpu_copy_streams,
// gpu_inference_streams, complete_threads, deque_timeout_usec, use_deque_limit). Signed so that
// a negative value is reported as such. validate() gives the ranges.
struct ExecutorConfig {
  std::int64_t batch_size = 1;            // [1, engine max_batch]: largest batch formed
  std::int64_t copy_streams = 4;          // [1, 64]: stream slots, i.e. batches in flight
  std::int64_t infer_streams = 1;         // [1, 64]: inference streams (on CPU: see above)
  std::int64_t complete_threads = 1;      // [1, 64]: threads calling the completion sink
  std::int64_t batch_timeout_us = 10000;  // [0, 60e6]: the acquire window (deque_timeout_usec)
  std::int64_t deque_limit = 0;           // 0, or [batch_size, 2^31): most samples one acquire takes
                                          // (LWIS use_deque_limit=true is deque_limit=batch_size)
  // [0, 24 h]: 0 is off. A batch still running (engine call or device work) this many ms after
  // its slot started it is given up on: its samples are completed at once, flagged as failed
  // with an error naming the engine, slot and limit, and the slot is retired (never reused; its
  // thread is left to return on its own). When every slot of a device is retired, batches for
  // it fail at once. A hung engine thus ends in an error instead of a hung test.
  std::int64_t watchdog_ms = 0;

  // CUDA engines only (validate() refuses them for a CPU engine), named as LWIS names them.
  bool use_graphs = false;                 // capture the engine per (slot, batch size) into a CUDA graph
  bool start_from_device = false;          // the SampleLibrary is copied to each device's memory
  bool run_infer_on_copy_streams = false;  // the engine runs on the slot's copy stream
  bool use_spin_wait = false;              // completion threads spin on the output event
  std::vector<int> devices;                // CUDA devices to run on; empty means {0}
};

inline constexpr std::int64_t kMaxStreams = 64;
inline constexpr std::int64_t kMaxCompleteThreads = 64;
inline constexpr std::int64_t kMaxBatchTimeoutUs = 60'000'000;
inline constexpr std::int64_t kMaxWatchdogMs = 24LL * 3600 * 1000;

// Throws InvalidArgument naming the knob, its value and the allowed range. Thread-safe.
void validate(const ExecutorConfig& config, const EngineIO& io);

// One finished batch, as the completion sink sees it. Every pointer is valid only during the
// sink call: the executor reuses the memory for the slot's next batch afterwards.
struct CompletedBatch {
  std::size_t size = 0;
  const std::uint64_t* ids = nullptr;      // LoadGen response ids, [size], in submit order
  const std::uint64_t* indices = nullptr;  // QSL indices, [size]
  // Response i is responses + i * response_bytes, response_bytes bytes (an int32 label).
  const std::byte* responses = nullptr;
  std::size_t response_bytes = 0;
  // Null when the batch succeeded. Otherwise why it failed; the responses then hold 0xFF bytes
  // (label -1), and the samples are still complete.
  const char* error = nullptr;
  std::size_t slot = 0;  // the stream slot that ran it
};

// Where finished batches go: LoadGen's QuerySamplesComplete (cpp/bindings), a Python callable,
// a test recorder. complete() is called by a completion thread once per batch; with
// complete_threads > 1, concurrently from several threads, so it must be thread-safe. It may
// block briefly (it holds up its slot) and may call Executor::submit(), but never flush() or
// stop() (they would wait on the calling thread itself; the executor rejects such calls).
// If it throws, the executor records the error (last_error(), stats().sink_errors); the batch's
// samples still count as completed: the sink was called for them once.
class CompletionSink {
 public:
  virtual ~CompletionSink() = default;
  virtual void complete(const CompletedBatch& batch) = 0;
};

// A sink from a std::function. Thread-safe if the function is.
class FunctionSink final : public CompletionSink {
 public:
  explicit FunctionSink(std::function<void(const CompletedBatch&)> fn) : fn_(std::move(fn)) {}
  void complete(const CompletedBatch& batch) override { fn_(batch); }

 private:
  std::function<void(const CompletedBatch&)> fn_;
};

// A consistent-enough snapshot of the counters (each counter is exact; they are read one by one).
struct ExecutorStats {
  std::uint64_t submitted = 0;        // samples accepted by submit()
  std::uint64_t completed = 0;        // samples whose batch reached the sink
  std::uint64_t batches = 0;          // batches completed
  std::uint64_t failed_batches = 0;   // batches the engine (or the gather) failed
  std::uint64_t sink_errors = 0;      // sink calls that threw
  std::uint64_t bound_batches = 0;    // batches whose input was the SampleLibrary memory itself
  std::uint64_t queue_depth = 0;      // samples queued now, not yet taken by the batcher
  std::uint64_t max_queue_depth = 0;  // the most ever queued at once
  double mean_batch_size = 0.0;       // completed / batches
  std::uint64_t watchdog_batches = 0; // batches the watchdog gave up on (also in failed_batches)
  std::uint64_t retired_slots = 0;    // slots retired by the watchdog
  // CUDA path.
  std::uint64_t h2d_copies = 0;       // host-to-device copies of inputs (runs of contiguous samples)
  std::uint64_t device_gathers = 0;   // batches gathered by the kernel from the library's device copy
  std::uint64_t graph_captures = 0;   // CUDA graphs captured
  std::uint64_t graph_launches = 0;   // batches run as a CUDA graph
  std::uint64_t library_uploads = 0;  // times the SampleLibrary was copied to a device
  // Time spent per stage, summed over batches (ns): gather (CUDA: enqueueing the input copies),
  // engine (CUDA: enqueueing it), waiting for the device (CUDA), sink call.
  std::uint64_t gather_ns = 0;
  std::uint64_t engine_ns = 0;
  std::uint64_t device_wait_ns = 0;
  std::uint64_t complete_ns = 0;
};

class Executor {
 public:
  // Validates config against engine->io() and the library's sample size (throws
  // InvalidArgument), allocates each slot's buffers, asks the engine for per-slot state, and
  // starts the threads. The executor shares ownership of engine, library and sink.
  Executor(std::shared_ptr<Engine> engine, std::shared_ptr<const SampleLibrary> samples, ExecutorConfig config,
           std::shared_ptr<CompletionSink> sink);
  // stop(), without throwing: errors not yet reported are dropped (last_error() had them).
  // Blocks until drained. When called on one of the executor's own threads (the sink or the
  // engine dropped the last reference), the drain and join finish on a detached thread instead.
  ~Executor();

  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `count` samples: ids[i] is LoadGen's response id, indices[i] the QSL index (which
  // must be loaded in the SampleLibrary). Thread-safe; never waits for inference (one short lock
  // for the whole call). All or nothing: throws InvalidArgument, queuing none, when an index is
  // not loaded or the executor has been stopped.
  void submit(const std::uint64_t* ids, const std::uint64_t* indices, std::size_t count);
  void submit(const std::vector<std::uint64_t>& ids, const std::vector<std::uint64_t>& indices);

  // Issues everything queued now, partial batches included, without waiting for the window,
  // then blocks until every sample submitted before the call is completed (samples submitted
  // meanwhile by other threads may still be in flight). Thread-safe. Then throws EngineError
  // (or Error, for sink errors) if batches failed since the last report; nothing is lost.
  // Throws InvalidArgument when called from an executor thread (the sink or the engine).
  void flush();

  // Stops accepting work, drains (every sample submitted so far is completed exactly once,
  // partial batches issued at once), and joins the threads. Idempotent and thread-safe; then
  // reports failed batches as flush() does. After stop(), submit() throws InvalidArgument.
  void stop();

  // start_from_device: copies the SampleLibrary to every device now. Call it after
  // SampleLibrary::load() and before submitting (the native SUT does, in LoadSamplesToRam);
  // otherwise the first batch after a load does it, inside the timed run. No-op for a CPU
  // engine or without start_from_device. Not concurrent with batches in flight (same rule as
  // SampleLibrary::load). Throws CudaError.
  void sync_library();

  // Whether the buffers the device copies from and to are page-locked (true on CPU engines,
  // where there is no copy). False means a pinned allocation fell back to pageable memory.
  bool pinned() const noexcept;

  // Test knob: the batcher takes nothing until n samples are queued (then the window opens, and
  // the hold clears). flush() and stop() override it. 0 clears it. Thread-safe.
  void hold_until(std::size_t n);

  ExecutorStats stats() const;                 // thread-safe
  std::optional<std::string> last_error() const;  // the most recent engine or sink error; thread-safe
  const ExecutorConfig& config() const noexcept;
  const Engine& engine() const noexcept;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the slot workers (see the watchdog)
};

}  // namespace fastres
