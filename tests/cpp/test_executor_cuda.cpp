// The executor's CUDA path (cpp/src/cuda/cuda_pipeline.cpp) run on the CPU against the CUDA
// runtime double (tests/cuda_double): the same source a GPU build runs, with streams that are
// real worker threads, events, graph capture and replay, and copies whose direction and ranges
// are checked. What it proves: every answer travels with its sample through the copies, the
// gather kernel and the graphs; the knobs change the pipeline as documented; faults, hangs and
// missing devices end as errors, never as lost or duplicated responses. What it cannot: speed,
// real driver behaviour, device code (kernels are their host twins).
#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engines/timed_engine.hpp"
#include "fake_cuda.hpp"
#include "fastres/cuda/pinned_host.hpp"
#include "fastres/executor.hpp"
#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"
#include "helpers.hpp"

using fastres::Executor;
using fastres::ExecutorConfig;
using testing::RecordingSink;
using namespace std::chrono_literals;
namespace fake = fastres::fake_cuda;

namespace {

constexpr std::size_t kSampleBytes = 16;  // 4 int32 words, the first one the sample's index

fastres::EngineIO cuda_io(std::size_t max_batch = 64) {
  fastres::EngineIO io;
  io.input_dtype = fastres::DType::kInt32;
  io.input_shape = {4};
  io.max_batch = max_batch;
  return io;
}

// A pinned library of n samples, sample i starting with the int32 i (what TimedEngine answers).
std::shared_ptr<fastres::SampleLibrary> pinned_library(std::size_t n) {
  auto lib = std::make_shared<fastres::SampleLibrary>(kSampleBytes, fastres::cuda::pinned_host_allocator());
  std::vector<std::uint64_t> indices(n);
  for (std::size_t i = 0; i < n; ++i) indices[i] = i;
  lib->load(indices, [](std::uint64_t index, std::byte* dst) {
    const auto v = static_cast<std::int32_t>(index);
    std::memset(dst, 0x5A, kSampleBytes);
    std::memcpy(dst, &v, sizeof v);
  });
  return lib;
}

std::shared_ptr<fastres::TimedEngine> timed(std::size_t max_batch = 64) {
  return std::make_shared<fastres::TimedEngine>(cuda_io(max_batch), /*batch_ns=*/2000, /*sample_ns=*/10);
}

ExecutorConfig cuda_config(std::int64_t batch, std::int64_t slots, std::int64_t timeout_us = 0) {
  ExecutorConfig c;
  c.batch_size = batch;
  c.copy_streams = slots;
  c.infer_streams = 1;
  c.complete_threads = 1;
  c.batch_timeout_us = timeout_us;
  return c;
}

// Submits ids [0, n) for the given QSL indices in queries of random size from `threads` threads.
void submit_all(Executor& ex, const std::vector<std::uint64_t>& indices, int threads = 2, std::size_t max_query = 11) {
  std::vector<std::thread> pool;
  const std::size_t per = (indices.size() + threads - 1) / threads;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) + 7);
      std::size_t i = t * per;
      const std::size_t end = std::min(indices.size(), i + per);
      while (i < end) {
        const std::size_t n = std::min<std::size_t>(1 + rng() % max_query, end - i);
        std::vector<std::uint64_t> ids(n), idx(n);
        for (std::size_t k = 0; k < n; ++k) {
          ids[k] = i + k;
          idx[k] = indices[i + k];
        }
        ex.submit(ids, idx);
        i += n;
      }
    });
  }
  for (auto& th : pool) th.join();
}

std::vector<std::uint64_t> random_indices(std::size_t n, std::size_t library, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::vector<std::uint64_t> v(n);
  for (auto& x : v) x = rng() % library;
  return v;
}

void check_answers(const RecordingSink& sink, const std::vector<std::uint64_t>& indices) {
  const auto records = sink.records();
  CHECK_EQ(records.size(), indices.size());
  for (std::size_t id = 0; id < indices.size(); ++id) {
    const auto it = records.find(id);
    CHECK(it != records.end());
    CHECK_EQ(it->second.count, 1);
    CHECK(!it->second.failed);
    CHECK_EQ(it->second.label, static_cast<std::int32_t>(indices[id]));
  }
}

// A CUDA engine wrapping TimedEngine that checks what the executor hands it and can misbehave:
// fault the stream, hang it, or synchronise inside enqueue (which a graph capture forbids).
class ProbeEngine final : public fastres::Engine {
 public:
  explicit ProbeEngine(bool capturable = true) : inner_(timed()), io_(inner_->io()) {
    io_.graph_capturable = capturable;
  }
  const fastres::EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "probe"; }

  std::unique_ptr<fastres::EngineSlotState> create_slot_state(const fastres::StreamContext& ctx) override {
    int current = -1;
    cudaGetDevice(&current);
    std::lock_guard<std::mutex> lk(mu_);
    if (ctx.device != fastres::Device::kCuda || ctx.stream == nullptr || current != ctx.cuda_device) ++bad_setup_;
    ++slot_states_;
    return nullptr;
  }

  void enqueue(const fastres::Batch& batch, fastres::StreamContext& ctx) override {
    int current = -1;
    cudaGetDevice(&current);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (current != ctx.cuda_device || ctx.stream == nullptr) ++bad_calls_;
      if (!ctx.capturing) devices_.insert(ctx.cuda_device);
      if (ctx.capturing) ++captures_;
    }
    if (sync_inside_ && cudaStreamSynchronize(ctx.stream) != cudaSuccess) {
      cudaGetLastError();
      throw fastres::CudaError("cudaStreamSynchronize inside enqueue failed (capturing)");
    }
    for (std::size_t i = 0; i < batch.size; ++i) {
      if (batch.indices[i] == fault_index_) fake::inject_fault(ctx.stream);
      if (batch.indices[i] == hang_index_) {
        hung_stream_ = ctx.stream;
        fake::hang_stream(ctx.stream, true);
      }
    }
    inner_->enqueue(batch, ctx);
  }

  std::shared_ptr<fastres::TimedEngine> inner_;
  fastres::EngineIO io_;
  std::mutex mu_;
  int slot_states_ = 0, bad_setup_ = 0, bad_calls_ = 0, captures_ = 0;
  std::set<int> devices_;
  bool sync_inside_ = false;
  std::uint64_t fault_index_ = ~0ull, hang_index_ = ~0ull;
  std::atomic<cudaStream_t> hung_stream_{nullptr};
};

}  // namespace

TEST_CASE(cuda_pipeline_answers_every_sample_once_with_its_own_index) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  const auto indices = random_indices(600, 128);
  {
    auto config = cuda_config(8, 3, 200);
    config.infer_streams = 2;
    Executor ex(timed(), pinned_library(128), config, sink);
    CHECK(ex.pinned());
    submit_all(ex, indices);
    ex.flush();
    const auto s = ex.stats();
    CHECK_EQ(s.completed, indices.size());
    CHECK(s.h2d_copies >= s.batches);
    const auto c = fake::counters();  // a copy: kernel_launches below refers into it
    CHECK_EQ(c.copies_d2h, s.batches);      // one copy of the answers back per batch
    CHECK_EQ(c.pageable_copies, 0u);        // library and answers are pinned: every copy is DMA
    CHECK_EQ(c.kernel_launches.at("timed_answer"), s.batches);
    ex.stop();
  }
  check_answers(*sink, indices);
  CHECK_EQ(fake::counters().live_streams, 0u);  // every stream and buffer went with the executor
  CHECK_EQ(fake::counters().live_device_allocations, 0u);
}

TEST_CASE(contiguous_samples_are_one_copy_scattered_ones_one_per_run) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(timed(), pinned_library(64), cuda_config(8, 1, 60'000'000), sink);
  // One batch of 8 in three runs of consecutive slots: [10..12], [40..43], [7].
  const std::vector<std::uint64_t> indices{10, 11, 12, 40, 41, 42, 43, 7};
  std::vector<std::uint64_t> ids(8);
  for (std::uint64_t i = 0; i < 8; ++i) ids[i] = i;
  ex.submit(ids, indices);
  ex.flush();
  CHECK_EQ(ex.stats().h2d_copies, 3u);
  CHECK_EQ(fake::counters().copies_h2d, 3u);
  CHECK_EQ(fake::counters().bytes_h2d, 8 * kSampleBytes);
  ex.stop();
  check_answers(*sink, indices);
}

TEST_CASE(start_from_device_binds_contiguous_batches_and_gathers_the_rest) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto lib = pinned_library(64);
  auto config = cuda_config(4, 2, 60'000'000);
  config.start_from_device = true;
  std::vector<std::uint64_t> indices{20, 21, 22, 23, 3, 9, 1, 1};  // contiguous, then scattered with a repeat
  {
    Executor ex(timed(), lib, config, sink);
    ex.sync_library();
    CHECK_EQ(ex.stats().library_uploads, 1u);
    const auto before = fake::counters().copies_h2d;
    ex.hold_until(8);
    std::vector<std::uint64_t> ids{0, 1, 2, 3, 4, 5, 6, 7};
    ex.submit(ids, indices);
    ex.flush();
    auto s = ex.stats();
    CHECK_EQ(s.bound_batches, 1u);
    CHECK_EQ(s.device_gathers, 1u);
    const auto counted = fake::counters();
    CHECK_EQ(counted.kernel_launches.at("gather_samples"), 1u);
    CHECK_EQ(fake::counters().copies_h2d - before, 1u);  // only the scattered batch's slot list
    // A load while nothing is in flight makes the device copy stale; the next batch refreshes it.
    std::vector<std::uint64_t> more{100, 101};
    lib->load(more, [](std::uint64_t index, std::byte* dst) {
      const auto v = static_cast<std::int32_t>(index);
      std::memset(dst, 0, kSampleBytes);
      std::memcpy(dst, &v, sizeof v);
    });
    ex.submit(std::vector<std::uint64_t>{8, 9}, std::vector<std::uint64_t>{101, 100});
    indices.push_back(101);
    indices.push_back(100);
    ex.flush();
    CHECK_EQ(ex.stats().library_uploads, 2u);
    ex.stop();
  }
  check_answers(*sink, indices);
}

TEST_CASE(graphs_are_captured_once_per_slot_and_batch_size_then_replayed) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  auto config = cuda_config(8, 1, 60'000'000);
  config.use_graphs = true;
  std::vector<std::uint64_t> all;
  {
    Executor ex(engine, pinned_library(64), config, sink);
    // Batches of 8, 8, 3, 8, 3 on one slot: sizes 8 and 3 are captured once each.
    std::uint64_t id = 0;
    for (std::size_t n : {8u, 8u, 3u, 8u, 3u}) {
      ex.hold_until(n);
      std::vector<std::uint64_t> ids, idx;
      for (std::size_t i = 0; i < n; ++i) {
        ids.push_back(id);
        idx.push_back((id * 7) % 64);
        all.push_back((id * 7) % 64);
        ++id;
      }
      ex.submit(ids, idx);
      ex.flush();
    }
    const auto s = ex.stats();
    CHECK_EQ(s.batches, 5u);
    CHECK_EQ(s.graph_captures, 2u);
    CHECK_EQ(s.graph_launches, 3u);
    CHECK_EQ(fake::counters().graph_launches, 3u);
    ex.stop();
  }
  CHECK_EQ(engine->captures_, 2);
  CHECK_EQ(engine->bad_calls_, 0);
  check_answers(*sink, all);  // replays read the batch the slot gathered, not the captured one
}

TEST_CASE(an_engine_that_breaks_capture_runs_without_graphs) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  engine->sync_inside_ = true;  // legal when run, forbidden while capturing
  auto config = cuda_config(4, 2);
  config.use_graphs = true;
  const auto indices = random_indices(64, 64, 3);
  {
    Executor ex(engine, pinned_library(64), config, sink);
    submit_all(ex, indices, 1);
    ex.flush();
    CHECK_EQ(ex.stats().graph_launches, 0u);
    CHECK_EQ(ex.stats().failed_batches, 0u);
    CHECK(fake::counters().captures_invalidated >= 1u);
    ex.stop();
  }
  check_answers(*sink, indices);
}

TEST_CASE(run_infer_on_copy_streams_drops_the_cross_stream_waits) {
  for (bool same : {false, true}) {
    fake::reset();
    auto sink = std::make_shared<RecordingSink>();
    auto config = cuda_config(4, 2);
    config.run_infer_on_copy_streams = same;
    const auto indices = random_indices(40, 32, 5);
    {
      Executor ex(timed(), pinned_library(32), config, sink);
      submit_all(ex, indices, 1);
      ex.flush();
      const auto waits = fake::counters().event_waits;
      if (same) {
        CHECK_EQ(waits, 0u);
      } else {
        CHECK_EQ(waits, 2 * ex.stats().batches);  // inference waits for input, copy-back for inference
      }
      ex.stop();
    }
    check_answers(*sink, indices);
  }
}

TEST_CASE(several_devices_take_batches_round_robin) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  auto config = cuda_config(4, 2);
  config.devices = {1, 0};
  const auto indices = random_indices(200, 64, 9);
  {
    Executor ex(engine, pinned_library(64), config, sink);
    submit_all(ex, indices);
    ex.flush();
    ex.stop();
  }
  check_answers(*sink, indices);
  CHECK_EQ(engine->slot_states_, 4);  // copy_streams slots on each device
  CHECK_EQ(engine->bad_setup_, 0);
  CHECK_EQ(engine->bad_calls_, 0);    // each call ran with its slot's device current
  CHECK(engine->devices_ == (std::set<int>{0, 1}));
}

TEST_CASE(a_device_fault_fails_its_batches_once_and_names_the_device_stage) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  engine->fault_index_ = 5;
  const auto indices = random_indices(80, 32, 11);
  {
    Executor ex(engine, pinned_library(32), cuda_config(4, 2), sink);
    submit_all(ex, indices, 1);
    CHECK(sink->wait_for_completed(indices.size()));
    CHECK_THROWS(ex.flush(), fastres::EngineError, "cudaErrorLaunchFailure");
    CHECK(ex.last_error()->find("engine 'probe'") != std::string::npos);
    CHECK(ex.stats().failed_batches >= 1u);
    ex.stop();
  }
  // Sticky: once the device faulted, every later batch fails too; each id still completes once.
  const auto records = sink->records();
  CHECK_EQ(records.size(), indices.size());
  bool any_failed = false;
  for (const auto& [id, r] : records) {
    CHECK_EQ(r.count, 1);
    if (r.failed) {
      any_failed = true;
      CHECK_EQ(r.label, -1);
    } else {
      CHECK_EQ(r.label, static_cast<std::int32_t>(r.index));
    }
  }
  CHECK(any_failed);
}

TEST_CASE(a_pinned_allocation_that_fails_falls_back_to_pageable_and_says_so) {
  fake::reset();
  fake::fail_next("cudaHostAlloc", cudaErrorMemoryAllocation, 1000);
  auto sink = std::make_shared<RecordingSink>();
  auto lib = std::make_shared<fastres::SampleLibrary>(kSampleBytes,
                                                      std::make_shared<fastres::cuda::PinnedHostAllocator>(
                                                          [](const std::string&) {}));
  std::vector<std::uint64_t> all(16);
  for (std::uint64_t i = 0; i < 16; ++i) all[i] = i;
  lib->load(all, [](std::uint64_t index, std::byte* dst) {
    const auto v = static_cast<std::int32_t>(index);
    std::memset(dst, 0, kSampleBytes);
    std::memcpy(dst, &v, sizeof v);
  });
  const auto indices = random_indices(32, 16, 2);
  {
    Executor ex(timed(), lib, cuda_config(4, 1), sink);
    CHECK(!ex.pinned());
    submit_all(ex, indices, 1);
    ex.flush();
    CHECK(fake::counters().pageable_copies > 0u);  // correct, only slower
    ex.stop();
  }
  check_answers(*sink, indices);
}

TEST_CASE(watchdog_takes_a_batch_whose_device_work_hangs) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  engine->hang_index_ = 3;
  auto config = cuda_config(1, 2);
  config.watchdog_ms = 500;  // far above any batch's time, even under sanitizers on a busy machine
  config.run_infer_on_copy_streams = true;  // the hung stream is the slot's own: one slot is lost
  {
    Executor ex(engine, pinned_library(16), config, sink);
    std::vector<std::uint64_t> ids(16), idx(16);
    for (std::uint64_t i = 0; i < 16; ++i) ids[i] = idx[i] = i;
    ex.submit(ids, idx);
    CHECK(sink->wait_for_completed(16));
    CHECK_THROWS(ex.stop(), fastres::EngineError, "watchdog_ms=500");
    CHECK_EQ(ex.stats().watchdog_batches, 1u);
    CHECK_EQ(ex.stats().retired_slots, 1u);
  }  // returns: the retired slot's device resources are parked, not freed (that would wait)
  for (const auto& [id, r] : sink->records()) {
    CHECK_EQ(r.count, 1);
    CHECK_EQ(r.failed, r.index == 3);
  }
  if (engine->hung_stream_.load() != nullptr) fake::hang_stream(engine->hung_stream_.load(), false);
  fake::reset();  // joins the stream workers, the released one included
}

TEST_CASE(polling_completes_ready_batches_while_an_older_one_is_pending) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<ProbeEngine>();
  engine->hang_index_ = 0;
  auto config = cuda_config(1, 3);
  config.use_spin_wait = true;  // completion threads poll
  config.run_infer_on_copy_streams = true;
  {
    Executor ex(engine, pinned_library(8), config, sink);
    ex.submit(std::vector<std::uint64_t>{0}, std::vector<std::uint64_t>{0});
    for (int i = 0; i < 200 && engine->hung_stream_.load() == nullptr; ++i) std::this_thread::sleep_for(5ms);
    CHECK(engine->hung_stream_.load() != nullptr);
    ex.submit(std::vector<std::uint64_t>{1, 2, 3, 4}, std::vector<std::uint64_t>{1, 2, 3, 4});
    // One completion thread, the oldest batch still on the device: the newer ones complete.
    CHECK(sink->wait_for_completed(4));
    CHECK(sink->records().count(0) == 0);
    fake::hang_stream(engine->hung_stream_.load(), false);
    ex.flush();
    ex.stop();
  }
  check_answers(*sink, {0, 1, 2, 3, 4});
}

TEST_CASE(missing_devices_are_unavailable_before_any_work) {
  fake::reset();
  auto sink = std::make_shared<RecordingSink>();
  auto config = cuda_config(4, 1);
  config.devices = {5};
  CHECK_THROWS(Executor(timed(), pinned_library(4), config, sink), fastres::Unavailable, "CUDA device 5 requested");
  config.devices = {0, 0};
  CHECK_THROWS(Executor(timed(), pinned_library(4), config, sink), fastres::InvalidArgument, "device 0 twice");
  fake::reset();
  fake::set_device_count(0);
  CHECK_THROWS(Executor(timed(), std::make_shared<fastres::SampleLibrary>(kSampleBytes), cuda_config(4, 1), sink),
               fastres::Unavailable, "finds none");
  fake::reset();
}

int main(int argc, char** argv) { return check::run(argc, argv); }
