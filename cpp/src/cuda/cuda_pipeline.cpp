// The CUDA stream slot: LWIS's per-batch pipeline. Built only with FASTRES_WITH_CUDA.
//
//   copy stream:   [H2D runs | slot upload + gather kernel] ─► input event
//   infer stream:  wait(input event) ─► engine.enqueue or its CUDA graph ─► infer event
//   copy stream:   wait(infer event) ─► D2H of the answers ─► output event
//   completion:    wait(output event) ─► sink
//
// With run_infer_on_copy_streams the engine runs on the copy stream and the two cross-stream
// waits disappear. Nothing here waits on the host except sync_library() and the failure path.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fastres/batcher.hpp"
#include "fastres/buffers.hpp"
#include "fastres/cuda/device.hpp"
#include "fastres/cuda/device_buffer.hpp"
#include "fastres/cuda/error.hpp"
#include "fastres/cuda/event.hpp"
#include "fastres/cuda/graph.hpp"
#include "fastres/cuda/pinned_host.hpp"
#include "fastres/cuda/stream.hpp"
#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"
#include "../slot_pipeline.hpp"

namespace fastres::detail {

namespace {

using cuda::check;

std::uint64_t since_ns(Clock::time_point t0) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
}

// What the slots of one device share: its inference streams and the library's device copy.
struct DeviceShared {
  int device = 0;
  std::vector<cuda::Stream> infer_streams;

  // start_from_device: the SampleLibrary's block mirrored in this device's memory. `generation`
  // is the library generation it holds (read without the lock on the hot path; the library only
  // changes while no batch is in flight, so a stale read can only be "stale" when it truly is).
  std::mutex mirror_mu;
  cuda::DeviceBuffer mirror;
  std::atomic<std::uint64_t> generation{~std::uint64_t{0}};
};

class CudaPipelines;

class CudaPipeline final : public SlotPipeline {
 public:
  CudaPipeline(CudaPipelines& owner, DeviceShared& shared, std::size_t slot);

  void bind_thread() override {
    check(cudaSetDevice(shared_.device), "cudaSetDevice(" + std::to_string(shared_.device) + ") for stream slot " +
                                             std::to_string(slot_));
  }

  void run(const SlotRequest& request, StreamContext& ctx, StageTimes& times, const char*& stage) override;
  bool polls() const noexcept override { return polls_; }
  void wait() override { output_copied_.synchronize(); }  // sleeps in the driver (blocking-sync event)
  bool ready() override { return output_copied_.query(); }
  std::byte* responses() override { return host_output_.data(); }

  cudaStream_t copy_stream() const noexcept { return copy_stream_.get(); }

 private:
  const std::byte* prepare_input(const SlotRequest& request, bool& bound);
  void run_engine(Batch& batch, StreamContext& ctx, cudaStream_t stream);
  void drain() noexcept;

  CudaPipelines& owner_;
  DeviceShared& shared_;
  const std::size_t slot_;
  cuda::Stream copy_stream_;
  cuda::Stream capture_stream_;  // private, so a capture records this slot's work only
  cuda::Event input_copied_, inferred_, output_copied_;
  cuda::DeviceBuffer device_input_, device_output_, device_slots_;
  HostBuffer host_output_, host_slots_;  // pinned
  std::vector<std::uint32_t> slots_;
  std::vector<cuda::GraphExec> graphs_;  // [batch size]; empty until captured
  bool graphs_off_ = false;
  bool polls_ = false;
};

class CudaPipelines final : public PipelineFactory {
 public:
  CudaPipelines(Engine& engine, const SampleLibrary& samples, const ExecutorConfig& config, PipelineCounters& counters)
      : engine(engine),
        samples(samples),
        config(config),
        counters(counters),
        batch_size(static_cast<std::size_t>(config.batch_size)),
        input_bytes(engine.io().input_bytes()),
        output_bytes(engine.io().output_bytes),
        graphs(config.use_graphs && engine.io().graph_capturable),
        allocator(cuda::pinned_host_allocator()) {
    std::vector<int> devices = config.devices.empty() ? std::vector<int>{0} : config.devices;
    for (const int d : devices) {
      cuda::DeviceGuard guard(d);  // throws Unavailable naming the device
      auto shared = std::make_unique<DeviceShared>();
      shared->device = d;
      const std::size_t n = config.run_infer_on_copy_streams ? 0 : static_cast<std::size_t>(config.infer_streams);
      for (std::size_t i = 0; i < n; ++i) shared->infer_streams.emplace_back();
      devices_.push_back(std::move(shared));
    }
  }

  std::size_t device_count() const noexcept override { return devices_.size(); }

  std::unique_ptr<SlotPipeline> make(StreamContext& ctx, std::size_t device, const std::function<void()>& setup) override {
    DeviceShared& shared = *devices_.at(device);
    cuda::DeviceGuard guard(shared.device);
    auto pipeline = std::make_unique<CudaPipeline>(*this, shared, ctx.slot);
    ctx.device = Device::kCuda;
    ctx.cuda_device = shared.device;
    ctx.stream = pipeline->copy_stream();
    setup();
    return pipeline;
  }

  void sync_library() override {
    if (!config.start_from_device) return;
    for (auto& shared : devices_) {
      cuda::DeviceGuard guard(shared->device);
      sync_mirror(*shared);
    }
  }

  bool pinned() const noexcept override {
    const HostAllocator* library = samples.allocator();
    return allocator->pinned() && library != nullptr && library->pinned();
  }

  // Uploads the library to `shared`'s device when its copy is stale. Blocks; the calling thread
  // must have the device current. Thread-safe (slots of one device may race to it).
  void sync_mirror(DeviceShared& shared) {
    if (shared.generation.load(std::memory_order_acquire) == samples.generation()) return;
    std::lock_guard<std::mutex> lk(shared.mirror_mu);
    const std::uint64_t generation = samples.generation();
    if (shared.generation.load(std::memory_order_relaxed) == generation) return;
    const std::size_t bytes = samples.slots_used() * input_bytes;
    if (shared.mirror.size() < bytes) {
      shared.mirror = cuda::DeviceBuffer();  // free first: the library can be most of the device
      shared.mirror = cuda::DeviceBuffer(std::max(bytes, samples.capacity() * input_bytes));
    }
    if (bytes > 0) {
      cuda::Stream upload;
      check(cudaMemcpyAsync(shared.mirror.data(), samples.data(), bytes, cudaMemcpyHostToDevice, upload.get()),
            "cudaMemcpyAsync(SampleLibrary to device " + std::to_string(shared.device) + ", " + std::to_string(bytes) +
                " bytes)");
      upload.synchronize();
    }
    counters.library_uploads.fetch_add(1, std::memory_order_relaxed);
    shared.generation.store(generation, std::memory_order_release);
  }

  void disable_graphs(const std::string& why) {
    std::call_once(graphs_warned_, [&] {
      std::fprintf(stderr, "fastres: warning: CUDA graphs disabled for engine '%s': %s; running it directly\n",
                   engine.name().c_str(), why.c_str());
    });
  }

  Engine& engine;
  const SampleLibrary& samples;
  const ExecutorConfig config;
  PipelineCounters& counters;
  const std::size_t batch_size;
  const std::size_t input_bytes;
  const std::size_t output_bytes;
  const bool graphs;
  const std::shared_ptr<cuda::PinnedHostAllocator> allocator;

 private:
  std::vector<std::unique_ptr<DeviceShared>> devices_;
  std::once_flag graphs_warned_;
};

CudaPipeline::CudaPipeline(CudaPipelines& owner, DeviceShared& shared, std::size_t slot)
    : owner_(owner),
      shared_(shared),
      slot_(slot),
      input_copied_(cuda::EventWait::kSpin),
      inferred_(cuda::EventWait::kSpin),
      output_copied_(owner.config.use_spin_wait ? cuda::EventWait::kSpin : cuda::EventWait::kBlockingSync),
      device_input_(owner.batch_size * owner.input_bytes),
      device_output_(owner.batch_size * owner.output_bytes),
      device_slots_(owner.config.start_from_device ? owner.batch_size * sizeof(std::uint32_t) : 0),
      host_output_(owner.batch_size * owner.output_bytes, owner.allocator),
      host_slots_(owner.config.start_from_device ? owner.batch_size * sizeof(std::uint32_t) : 0, owner.allocator),
      slots_(owner.batch_size),
      graphs_(owner.graphs ? owner.batch_size + 1 : 0),
      polls_(owner.config.use_spin_wait || owner.config.watchdog_ms > 0) {}

const std::byte* CudaPipeline::prepare_input(const SlotRequest& request, bool& bound) {
  const std::size_t bytes = owner_.input_bytes;
  const bool contiguous = library_slots(owner_.samples, request, slots_.data());
  const cudaStream_t copy = copy_stream_.get();
  if (owner_.config.start_from_device) {
    owner_.sync_mirror(shared_);
    const std::byte* library = shared_.mirror.data();
    if (contiguous && !owner_.graphs) {  // a graph replays fixed addresses: always gather then
      bound = true;
      return library + static_cast<std::size_t>(slots_[0]) * bytes;
    }
    std::copy(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(request.size),
              reinterpret_cast<std::uint32_t*>(host_slots_.data()));
    check(cudaMemcpyAsync(device_slots_.data(), host_slots_.data(), request.size * sizeof(std::uint32_t),
                          cudaMemcpyHostToDevice, copy),
          "cudaMemcpyAsync(batch slots to device)");
    kernels::gather_samples(device_input_.data(), library, bytes, device_slots_.as<std::uint32_t>(), request.size, copy);
    owner_.counters.device_gathers.fetch_add(1, std::memory_order_relaxed);
    return device_input_.data();
  }
  // From the (pinned) host library: one copy per run of consecutive slots.
  const std::byte* base = owner_.samples.data();
  std::size_t i = 0;
  while (i < request.size) {
    std::size_t j = i + 1;
    while (j < request.size && slots_[j] == slots_[j - 1] + 1) ++j;
    check(cudaMemcpyAsync(device_input_.data() + i * bytes, base + static_cast<std::size_t>(slots_[i]) * bytes,
                          (j - i) * bytes, cudaMemcpyHostToDevice, copy),
          "cudaMemcpyAsync(" + std::to_string(j - i) + " sample(s) to device)");
    owner_.counters.h2d_copies.fetch_add(1, std::memory_order_relaxed);
    i = j;
  }
  return device_input_.data();
}

void CudaPipeline::run_engine(Batch& batch, StreamContext& ctx, cudaStream_t stream) {
  ctx.stream = stream;
  ctx.capturing = false;
  if (!owner_.graphs || graphs_off_) {
    owner_.engine.enqueue(batch, ctx);
    return;
  }
  cuda::GraphExec& graph = graphs_[batch.size];
  if (graph) {
    graph.launch(stream);
    owner_.counters.graph_launches.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // First batch of this size on this slot: run it directly (TensorRT wants one enqueue before a
  // capture), then record the same call on the private capture stream for the next ones.
  owner_.engine.enqueue(batch, ctx);
  ctx.stream = capture_stream_.get();
  ctx.capturing = true;
  try {
    cuda::Graph captured = cuda::capture(ctx.stream, [&] { owner_.engine.enqueue(batch, ctx); });
    graph = cuda::GraphExec(captured);
    owner_.counters.graph_captures.fetch_add(1, std::memory_order_relaxed);
  } catch (const std::exception& e) {  // CudaError, or the engine refusing to be captured
    graphs_off_ = true;
    owner_.disable_graphs(std::string("capture on slot ") + std::to_string(slot_) + " failed: " + e.what());
  }
  ctx.stream = stream;
  ctx.capturing = false;
}

void CudaPipeline::run(const SlotRequest& request, StreamContext& ctx, StageTimes& times, const char*& stage) {
  const auto t0 = Clock::now();
  try {
    stage = "copying its inputs to the device";
    bool bound = false;
    const std::byte* input = prepare_input(request, bound);
    if (bound) owner_.counters.bound.fetch_add(1, std::memory_order_relaxed);
    const cudaStream_t copy = copy_stream_.get();
    const bool same_stream = owner_.config.run_infer_on_copy_streams;
    const cudaStream_t infer =
        same_stream ? copy : shared_.infer_streams[ctx.infer_stream % shared_.infer_streams.size()].get();
    if (!same_stream) {
      input_copied_.record(copy);
      input_copied_.wait_on(infer);
    }
    times.gather_ns = since_ns(t0);

    stage = "in the engine";
    const auto t1 = Clock::now();
    Batch batch;
    batch.size = request.size;
    batch.ids = request.ids;
    batch.indices = request.indices;
    batch.input = input;
    batch.input_is_library = bound;
    batch.output = device_output_.data();
    run_engine(batch, ctx, infer);
    times.engine_ns = since_ns(t1);

    stage = "copying its answers back";
    if (!same_stream) {
      inferred_.record(infer);
      inferred_.wait_on(copy);
    }
    check(cudaMemcpyAsync(host_output_.data(), device_output_.data(), request.size * owner_.output_bytes,
                          cudaMemcpyDeviceToHost, copy),
          "cudaMemcpyAsync(answers to host)");
    output_copied_.record(copy);
  } catch (...) {
    ctx.stream = copy_stream_.get();
    ctx.capturing = false;
    drain();
    throw;
  }
}

void CudaPipeline::drain() noexcept {
  // After a failure part of the batch may be enqueued: let it finish before the buffers are
  // reused or the answers overwritten. Errors here are the batch's error, already reported.
  cudaStreamSynchronize(copy_stream_.get());
  for (auto& s : shared_.infer_streams) cudaStreamSynchronize(s.get());
  cudaGetLastError();
}

}  // namespace

std::unique_ptr<PipelineFactory> make_cuda_pipelines(Engine& engine, const SampleLibrary& samples,
                                                     const ExecutorConfig& config, PipelineCounters& counters) {
  return std::make_unique<CudaPipelines>(engine, samples, config, counters);
}

}  // namespace fastres::detail
