// Internal to the executor: what one stream slot does with a batch between the batcher and the
// completion thread, on the CPU (cpu_pipeline.cpp) or on CUDA (cuda/cuda_pipeline.cpp). The
// executor owns the threads, the queue, the slots' life cycle and the error policy; a pipeline
// owns the slot's buffers (and streams and events) and knows how to move a batch through them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "fastres/engine.hpp"
#include "fastres/executor.hpp"
#include "fastres/sample_library.hpp"

namespace fastres::detail {

// Counters the pipelines add to; the executor reports them in ExecutorStats. Relaxed atomics.
struct PipelineCounters {
  std::atomic<std::uint64_t> bound{0}, h2d_copies{0}, device_gathers{0}, graph_captures{0}, graph_launches{0},
      library_uploads{0};
};

// The batch a slot worker hands its pipeline: host arrays owned by the slot, valid until the
// batch is completed.
struct SlotRequest {
  const std::uint64_t* ids = nullptr;
  const std::uint64_t* indices = nullptr;
  std::size_t size = 0;
};

// Nanoseconds run() spent preparing the inputs and in (or enqueueing) the engine.
struct StageTimes {
  std::uint64_t gather_ns = 0;
  std::uint64_t engine_ns = 0;
};

class SlotPipeline {
 public:
  virtual ~SlotPipeline() = default;

  // The slot's worker thread, once before its first batch (CUDA: makes the slot's device current).
  virtual void bind_thread() {}

  // The slot's worker thread: prepares the batch's inputs and runs (CPU) or enqueues (CUDA) the
  // engine and the copy of the answers back. Throws on failure (the batch fails); on CUDA it then
  // first waits for whatever it had enqueued, so nothing writes the slot's buffers afterwards.
  // `stage` is set to what is being done, for the error message.
  virtual void run(const SlotRequest& request, StreamContext& ctx, StageTimes& times, const char*& stage) = 0;

  // Whether completion threads should poll this slot (ready()) instead of blocking in wait():
  // when the watchdog may have to take a batch over, or spinning was asked for. Polling also
  // lets a completion thread complete whichever batch is ready first instead of queueing every
  // batch behind the oldest (which, if hung, would make them all look hung).
  virtual bool polls() const noexcept { return false; }

  // A completion thread, after run() returned normally. wait(): blocks until the answers are in
  // host memory. ready(): whether they are, without waiting. Both throw CudaError for a device
  // fault (the batch fails).
  virtual void wait() = 0;
  virtual bool ready() = 0;

  // The last batch's answers in host memory, [size, output_bytes]; writable by the executor (it
  // sets a failed batch's answers to 0xFF bytes). Valid until the next run().
  virtual std::byte* responses() = 0;
};

// Makes the slots' pipelines of one executor and owns what they share (per device: the inference
// streams and the library's device copy). Created and used by the executor's constructing thread,
// except sync_library() (see Executor::sync_library) and the pipelines themselves.
class PipelineFactory {
 public:
  virtual ~PipelineFactory() = default;

  // Devices the slots are spread over (1 on the CPU) and the device of a slot.
  virtual std::size_t device_count() const noexcept = 0;

  // A pipeline for slot ctx.slot; fills ctx.cuda_device and ctx.stream (the copy stream) for a
  // CUDA engine. Then runs `setup` (the engine's create_slot_state) with the slot's device current.
  virtual std::unique_ptr<SlotPipeline> make(StreamContext& ctx, std::size_t device, const std::function<void()>& setup) = 0;

  virtual void sync_library() = 0;
  virtual bool pinned() const noexcept = 0;
};

std::unique_ptr<PipelineFactory> make_cpu_pipelines(Engine& engine, const SampleLibrary& samples,
                                                    const ExecutorConfig& config, PipelineCounters& counters);

#if defined(FASTRES_WITH_CUDA)
// Throws Unavailable (no device, a device index out of range) or CudaError.
std::unique_ptr<PipelineFactory> make_cuda_pipelines(Engine& engine, const SampleLibrary& samples,
                                                     const ExecutorConfig& config, PipelineCounters& counters);
#endif

// The samples' library slots, checked: throws Error naming the first index that is not loaded.
// Returns whether they are consecutive slots (first, first + 1, ...), i.e. one contiguous run.
bool library_slots(const SampleLibrary& samples, const SlotRequest& request, std::uint32_t* slots);

}  // namespace fastres::detail
