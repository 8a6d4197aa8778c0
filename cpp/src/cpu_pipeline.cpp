// The CPU stream slot: gather the batch into the slot's host buffer (or bind the SampleLibrary
// block when the samples lie contiguous there) and run the engine synchronously.
#include <cstring>
#include <string>
#include <vector>

#include "fastres/batcher.hpp"
#include "fastres/buffers.hpp"
#include "fastres/status.hpp"
#include "slot_pipeline.hpp"

namespace fastres::detail {

bool library_slots(const SampleLibrary& samples, const SlotRequest& request, std::uint32_t* slots) {
  bool contiguous = true;
  for (std::size_t i = 0; i < request.size; ++i) {
    const std::uint32_t slot = samples.slot_of(request.indices[i]);
    if (slot == SampleLibrary::npos) {
      throw Error("QSL index " + std::to_string(request.indices[i]) +
                  " is not loaded in the SampleLibrary (unloaded while queued?)");
    }
    if (i > 0 && slot != slots[0] + i) contiguous = false;
    slots[i] = slot;
  }
  return contiguous;
}

namespace {

std::uint64_t since_ns(Clock::time_point t0) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}

class CpuPipeline final : public SlotPipeline {
 public:
  CpuPipeline(Engine& engine, const SampleLibrary& samples, std::size_t batch_size, PipelineCounters& counters)
      : engine_(engine),
        samples_(samples),
        input_bytes_(engine.io().input_bytes()),
        input_(batch_size * input_bytes_, nullptr),
        output_(batch_size * engine.io().output_bytes, nullptr),
        slots_(batch_size),
        counters_(counters) {}

  void run(const SlotRequest& request, StreamContext& ctx, StageTimes& times, const char*& stage) override {
    const auto t0 = Clock::now();
    stage = "gathering its inputs";
    Batch batch;
    batch.size = request.size;
    batch.ids = request.ids;
    batch.indices = request.indices;
    batch.output = output_.data();
    const bool contiguous = library_slots(samples_, request, slots_.data());
    if (contiguous) {
      batch.input = samples_.data() + static_cast<std::size_t>(slots_[0]) * input_bytes_;
      batch.input_is_library = true;
      counters_.bound.fetch_add(1, std::memory_order_relaxed);
    } else {
      std::byte* dst = input_.data();
      for (std::size_t i = 0; i < request.size; ++i, dst += input_bytes_) {
        std::memcpy(dst, samples_.data() + static_cast<std::size_t>(slots_[i]) * input_bytes_, input_bytes_);
      }
      batch.input = input_.data();
    }
    times.gather_ns = since_ns(t0);
    stage = "in the engine";
    const auto t1 = Clock::now();
    engine_.enqueue(batch, ctx);
    times.engine_ns = since_ns(t1);
  }

  void wait() override {}  // run() computed the answers
  bool ready() override { return true; }

  std::byte* responses() override { return output_.data(); }

 private:
  Engine& engine_;
  const SampleLibrary& samples_;
  const std::size_t input_bytes_;
  HostBuffer input_;   // [batch_size, input_bytes]
  HostBuffer output_;  // [batch_size, output_bytes]
  std::vector<std::uint32_t> slots_;
  PipelineCounters& counters_;
};

class CpuPipelines final : public PipelineFactory {
 public:
  CpuPipelines(Engine& engine, const SampleLibrary& samples, const ExecutorConfig& config, PipelineCounters& counters)
      : engine_(engine), samples_(samples), batch_size_(static_cast<std::size_t>(config.batch_size)), counters_(counters) {}

  std::size_t device_count() const noexcept override { return 1; }

  std::unique_ptr<SlotPipeline> make(StreamContext& ctx, std::size_t, const std::function<void()>& setup) override {
    ctx.device = Device::kCpu;
    auto pipeline = std::make_unique<CpuPipeline>(engine_, samples_, batch_size_, counters_);
    setup();
    return pipeline;
  }

  void sync_library() override {}
  bool pinned() const noexcept override { return true; }  // nothing is copied to a device

 private:
  Engine& engine_;
  const SampleLibrary& samples_;
  const std::size_t batch_size_;
  PipelineCounters& counters_;
};

}  // namespace

std::unique_ptr<PipelineFactory> make_cpu_pipelines(Engine& engine, const SampleLibrary& samples,
                                                    const ExecutorConfig& config, PipelineCounters& counters) {
  return std::make_unique<CpuPipelines>(engine, samples, config, counters);
}

}  // namespace fastres::detail
