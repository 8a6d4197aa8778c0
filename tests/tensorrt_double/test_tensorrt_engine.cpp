// TensorRTEngine's logic, on the CPU: the engine (cpp/engines/tensorrt_engine.cpp, unchanged) over
// the TensorRT test double, driven by the real executor through its CUDA pipeline
// (cpp/src/cuda/cuda_pipeline.cpp) on the CUDA runtime double. The oracle is the double's fixed
// network (tensorrt_double.hpp): a sample's answer is its first input element, which these tests
// set to the sample's QSL index, so every expected label is computed here from the index alone.
#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engines/tensorrt_engine.hpp"
#include "fake_cuda.hpp"
#include "fastres/cuda/device.hpp"
#include "fastres/cuda/device_buffer.hpp"
#include "fastres/cuda/pinned_host.hpp"
#include "fastres/executor.hpp"
#include "fastres/status.hpp"
#include "helpers.hpp"
#include "tensorrt_double.hpp"

namespace td = fastres::trt_double;
using fastres::TensorRTEngine;
using fastres::TensorRTOptions;
using nvinfer1::DataType;
using nvinfer1::TensorFormat;

namespace {

const std::vector<std::int64_t> kSample{3, 2, 2};  // small images: the logic does not care

void fresh() {
  fastres::fake_cuda::reset();
  td::reset();
  fastres::TensorRTLogger::instance().set_sink([](int, const std::string&) {}, 1);  // quiet, errors only
}

std::shared_ptr<TensorRTEngine> make_engine(const td::PlanSpec& plan, TensorRTOptions options = {}) {
  return std::make_shared<TensorRTEngine>(td::serialize(plan), options);
}

// A pinned library of float32 samples [3, 2, 2] whose first element is (index + bias).
std::shared_ptr<fastres::SampleLibrary> float_library(std::size_t n, float bias = 0) {
  auto lib = std::make_shared<fastres::SampleLibrary>(12 * sizeof(float), fastres::cuda::pinned_host_allocator());
  std::vector<std::uint64_t> indices(n);
  for (std::size_t i = 0; i < n; ++i) indices[i] = i;
  lib->load(indices, [bias](std::uint64_t index, std::byte* dst) {
    float v[12] = {};
    v[0] = static_cast<float>(index) + bias;
    for (int k = 1; k < 12; ++k) v[k] = -7.0f;  // never read as the answer
    std::memcpy(dst, v, sizeof v);
  });
  return lib;
}

fastres::ExecutorConfig cuda_config(std::int64_t batch, std::int64_t slots, std::vector<int> devices = {}) {
  fastres::ExecutorConfig c;
  c.batch_size = batch;
  c.copy_streams = slots;
  c.infer_streams = 2;
  c.complete_threads = 1;
  c.batch_timeout_us = 200;
  c.devices = std::move(devices);
  return c;
}

// Submits indices [0, n) (ids 1000 + i), flushes, and returns what the sink recorded.
std::unordered_map<std::uint64_t, testing::RecordingSink::Record> run(fastres::Executor& ex,
                                                                      testing::RecordingSink& sink, std::size_t n,
                                                                      std::uint64_t first_id = 1000) {
  std::vector<std::uint64_t> ids(n), indices(n);
  for (std::size_t i = 0; i < n; ++i) {
    ids[i] = first_id + i;
    indices[i] = i;
  }
  ex.submit(ids, indices);
  try {
    ex.flush();
  } catch (const fastres::EngineError&) {
    // Failed batches are the test's to inspect through the sink and last_error().
  }
  return sink.records();
}

td::PlanSpec argmax_plan() {
  // The MLPerf model as given: ArgMax:0 int64 [N] (class 0 = background) and softmax [N, 1001].
  td::PlanSpec plan = td::resnet_like(2, 8, DataType::kFLOAT, kSample);
  plan.tensors[1] = {"ArgMax:0", false, DataType::kINT64, TensorFormat::kLINEAR, {-1}};
  plan.tensors.push_back({"softmax_tensor:0", false, DataType::kFLOAT, TensorFormat::kLINEAR, {-1, 1001}});
  return plan;
}

}  // namespace

TEST_CASE(io_is_read_from_the_plan) {
  fresh();
  td::PlanSpec plan = td::resnet_like(2, 32, DataType::kINT8);
  plan.profiles[1].max[0] = 16;  // the engine can promise only the smaller of the two
  plan.profiles[1].opt[0] = 16;
  auto engine = make_engine(plan);
  const fastres::EngineIO& io = engine->io();
  CHECK(io.input_dtype == fastres::DType::kInt8);
  CHECK(io.input_shape == (std::vector<std::int64_t>{3, 224, 224}));
  CHECK_EQ(io.input_layout, std::string("NCHW"));
  CHECK_EQ(io.input_bytes(), std::size_t{3 * 224 * 224});
  CHECK_EQ(io.output_bytes, sizeof(std::int32_t));
  CHECK_EQ(io.max_batch, std::size_t{16});
  CHECK(io.device == fastres::Device::kCuda);
  CHECK(io.graph_capturable);
  CHECK_EQ(engine->profiles(), 2);
  CHECK(engine->profile_batch(0) == (std::pair<std::int64_t, std::int64_t>{1, 32}));
  CHECK(engine->profile_batch(1) == (std::pair<std::int64_t, std::int64_t>{1, 16}));
  CHECK_EQ(engine->input_name(), std::string("input_tensor:0"));
  CHECK_EQ(engine->output_name(), std::string("top1:0"));
  CHECK(engine->answer() == fastres::TensorRTAnswer::kLabelsInt32);
  CHECK_EQ(engine->tensors().size(), std::size_t{2});
  CHECK_EQ(engine->tensors()[0].dtype, std::string("int8"));
  CHECK_EQ(engine->tensors()[0].format, std::string("linear"));
  CHECK(engine->tensors()[0].shape == (std::vector<std::int64_t>{-1, 3, 224, 224}));
  CHECK(!engine->tensors()[1].input);
  CHECK_EQ(engine->name(), std::string("tensorrt:tensorrt"));
  CHECK(engine->devices() == std::vector<int>{0});
  CHECK_EQ(td::counters().deserializations, std::uint64_t{1});

  // CHW4: the per-sample shape of fastres's int8_chw4 store, channels padded to 4.
  plan.tensors[0].format = TensorFormat::kCHW4;
  auto chw4 = make_engine(plan, {"chw4", "", "", 0, 1, false});
  CHECK(chw4->io().input_shape == (std::vector<std::int64_t>{1, 224, 224, 4}));
  CHECK_EQ(chw4->io().input_layout, std::string("NC/4HW4"));
  CHECK(!chw4->io().graph_capturable);
  CHECK(chw4->devices() == std::vector<int>{1});

  // Several outputs: the named one answers; int64 labels and logits go through a kernel.
  TensorRTOptions named;
  named.output_name = "ArgMax:0";
  named.label_offset = 1;
  auto argmax = make_engine(argmax_plan(), named);
  CHECK(argmax->answer() == fastres::TensorRTAnswer::kLabelsNarrowed);
  TensorRTOptions logits;
  logits.output_name = "softmax_tensor:0";
  CHECK(make_engine(argmax_plan(), logits)->answer() == fastres::TensorRTAnswer::kLogitsTop1);
  td::PlanSpec offset_plan = td::resnet_like(1, 8, DataType::kFLOAT, kSample);
  TensorRTOptions offset;
  offset.label_offset = 1;
  CHECK(make_engine(offset_plan, offset)->answer() == fastres::TensorRTAnswer::kLabelsNarrowed);
}

TEST_CASE(plans_the_executor_cannot_run_are_refused_naming_the_fix) {
  fresh();
  using fastres::InvalidArgument;
  auto with = [](auto edit) {
    td::PlanSpec plan = td::resnet_like(1, 8, DataType::kFLOAT, kSample);
    edit(plan);
    return td::serialize(plan);
  };
  auto build = [](std::vector<char> bytes, TensorRTOptions options = {}) {
    return TensorRTEngine(std::move(bytes), options);
  };
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[0].shape[0] = 8; })), InvalidArgument,
               "no dynamic batch dimension");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[0].shape[2] = -1; })), InvalidArgument,
               "only the batch may vary");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.profiles[0].min[0] = 2; })), InvalidArgument,
               "accepts batches of 2..8; the executor sends batches of any size from 1");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[0].format = TensorFormat::kHWC8; })), InvalidArgument,
               "build the plan with the input format linear");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[0].dtype = DataType::kBOOL; })), InvalidArgument,
               "build the plan with an fp32 or int8_linear input");
  CHECK_THROWS(build(with([](td::PlanSpec& p) {
                 p.tensors.insert(p.tensors.begin(), {"mask", true, DataType::kINT32, TensorFormat::kLINEAR, {-1, 1}});
               })),
               InvalidArgument, "fastres feeds one image input; the plan's inputs are 'mask' (int32 [-1, 1], linear), "
                                "'input_tensor:0'");
  CHECK_THROWS(build(td::serialize(argmax_plan())), InvalidArgument, "the plan has several outputs: 'ArgMax:0'");
  TensorRTOptions missing;
  missing.output_name = "probabilities";
  CHECK_THROWS(build(td::serialize(argmax_plan()), missing), InvalidArgument, "no output named 'probabilities'");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[1] = {"top1:0", false, DataType::kHALF,
                                                                TensorFormat::kLINEAR, {-1, 1000}}; })),
               InvalidArgument, "not an answer fastres can read");
  CHECK_THROWS(build(with([](td::PlanSpec& p) { p.tensors[1].shape = {4}; })), InvalidArgument,
               "with a dynamic batch dimension");
  CHECK_THROWS(build({}), InvalidArgument, "the plan is empty");
  CHECK_THROWS(TensorRTEngine::from_file("/nonexistent/resnet50.plan", {}), InvalidArgument,
               "/nonexistent/resnet50.plan: cannot be opened");
  // Not a plan: TensorRT's own message travels in the EngineError.
  const std::string junk = "not a plan";
  CHECK_THROWS(build(std::vector<char>(junk.begin(), junk.end())), fastres::EngineError,
               "deserializeCudaEngine(10 bytes) on CUDA device 0 failed: IRuntime::deserializeCudaEngine: Error Code 1: "
               "Serialization (Serialization assertion failed: the blob is not a plan");
  td::fail_next("createInferRuntime");
  CHECK_THROWS(build(td::serialize(td::resnet_like(1, 8))), fastres::EngineError,
               "createInferRuntime failed: createInferRuntime: Error Code 6: injected failure");
  TensorRTOptions far;
  far.device = 5;
  CHECK_THROWS(build(td::serialize(td::resnet_like(1, 8)), far), fastres::Unavailable, "5");
  CHECK_EQ(td::counters().live_engines, std::size_t{0});
}

TEST_CASE(every_slot_gets_a_context_on_its_own_profile_and_each_device_its_own_plan) {
  fresh();
  auto engine = make_engine(td::resnet_like(3, 8, DataType::kFLOAT, kSample));
  auto sink = std::make_shared<testing::RecordingSink>();
  {
    fastres::Executor ex(engine, float_library(300), cuda_config(8, 3, {0, 1}), sink);
    // Three slots on each of two devices: the plan deserialized once more (on device 1), six
    // contexts, profiles 0, 1, 2 on each device.
    CHECK(engine->devices() == (std::vector<int>{0, 1}));
    CHECK_EQ(td::counters().deserializations, std::uint64_t{2});
    std::map<int, std::multiset<int>> profiles;
    for (const auto& c : td::contexts()) profiles[c.device].insert(c.profile);
    CHECK(profiles[0] == (std::multiset<int>{0, 1, 2}));
    CHECK(profiles[1] == (std::multiset<int>{0, 1, 2}));
    CHECK_EQ(td::counters().profile_switches, std::uint64_t{6});
    const auto records = run(ex, *sink, 300);
    CHECK_EQ(records.size(), std::size_t{300});
    for (const auto& [id, r] : records) {
      CHECK_EQ(r.count, 1);
      CHECK(!r.failed);
      CHECK_EQ(static_cast<std::uint64_t>(r.label), id - 1000);  // the sample's own index
    }
    std::set<int> used;
    for (const auto& c : td::contexts()) {
      if (c.enqueues > 0) used.insert(c.device);
    }
    CHECK(used == (std::set<int>{0, 1}));  // batches went round-robin over both devices
    CHECK_EQ(td::counters().samples_run, std::uint64_t{300});
  }
  CHECK_EQ(td::counters().live_contexts, std::size_t{0});  // the executor's slots released them
  engine.reset();
  CHECK_EQ(td::counters().live_engines, std::size_t{0});
}

TEST_CASE(more_slots_on_a_device_than_profiles_are_refused) {
  fresh();
  auto engine = make_engine(td::resnet_like(2, 8, DataType::kFLOAT, kSample));
  auto sink = std::make_shared<testing::RecordingSink>();
  CHECK_THROWS(fastres::Executor(engine, float_library(8), cuda_config(8, 3), sink), fastres::InvalidArgument,
               "finds all 2 optimization profiles taken by the device's other slots; execution contexts that run "
               "concurrently need distinct profiles: lower copy_streams to 2");
  // Two slots on each of two devices fit: each device has its own profiles 0 and 1.
  {
    fastres::Executor ex(engine, float_library(8), cuda_config(8, 2, {0, 1}), sink);
    std::map<int, std::multiset<int>> profiles;
    for (const auto& c : td::contexts()) profiles[c.device].insert(c.profile);
    CHECK(profiles[0] == (std::multiset<int>{0, 1}));
    CHECK(profiles[1] == (std::multiset<int>{0, 1}));
  }
  // A slot that goes gives its profile back.
  fastres::Executor again(engine, float_library(8), cuda_config(8, 2), sink);
  CHECK_EQ(td::contexts().size(), std::size_t{2});
}

TEST_CASE(int64_labels_and_logits_become_int32_labels_minus_the_offset) {
  fresh();
  struct Case {
    const char* output;
    std::int32_t offset;
    float bias;  // first element = index + bias
    std::uint64_t (*want)(std::uint64_t index);
    const char* kernel;
  };
  const Case cases[] = {
      // ArgMax over 1001 classes with the background at 0: the MLPerf model as given.
      {"ArgMax:0", 1, 1.0f, [](std::uint64_t i) { return i; }, "narrow_labels"},
      // Logits [N, 1001]: top-1 over the softmax, then the offset.
      {"softmax_tensor:0", 1, 1.0f, [](std::uint64_t i) { return (i + 1) % 1001 - 1; }, "top1"},
  };
  for (const Case& c : cases) {
    fastres::fake_cuda::reset();
    td::reset();
    TensorRTOptions options;
    options.output_name = c.output;
    options.label_offset = c.offset;
    auto engine = make_engine(argmax_plan(), options);
    auto sink = std::make_shared<testing::RecordingSink>();
    fastres::Executor ex(engine, float_library(40, c.bias), cuda_config(8, 2), sink);
    const auto records = run(ex, *sink, 40);
    CHECK_EQ(ex.last_error().value_or(""), std::string(""));
    CHECK_EQ(records.size(), std::size_t{40});
    for (const auto& [id, r] : records) {
      CHECK(!r.failed);
      CHECK_EQ(static_cast<std::uint64_t>(r.label), c.want(id - 1000));
    }
    const auto launches = fastres::fake_cuda::counters().kernel_launches;
    const auto it = launches.find(c.kernel);
    CHECK(it != launches.end() && it->second == ex.stats().batches);  // one conversion a batch
  }
}

TEST_CASE(failed_tensorrt_calls_fail_their_batch_with_tensorrts_message) {
  const struct {
    const char* method;
    const char* call;
  } failures[] = {{"setInputShape", "setInputShape('input_tensor:0', [4, 3, 2, 2]) failed: "
                                    "IExecutionContext::setInputShape: Error Code 3: API Usage Error (injected failure)"},
                  {"setTensorAddress", "setTensorAddress('input_tensor:0') failed: IExecutionContext::setTensorAddress: "
                                       "Error Code 3: API Usage Error (injected failure)"},
                  {"enqueueV3", "enqueueV3 failed: IExecutionContext::enqueueV3: Error Code 3: API Usage Error "
                                "(injected failure)"}};
  for (const auto& f : failures) {
    fresh();
    auto engine = make_engine(td::resnet_like(1, 4, DataType::kFLOAT, kSample));
    auto sink = std::make_shared<testing::RecordingSink>();
    fastres::ExecutorConfig config = cuda_config(4, 1);
    config.batch_timeout_us = 0;
    fastres::Executor ex(engine, float_library(16), config, sink);
    td::fail_next(f.method);
    ex.hold_until(4);
    ex.submit({1, 2, 3, 4}, {0, 1, 2, 3});
    CHECK_THROWS(ex.flush(), fastres::EngineError, f.call);
    CHECK(ex.last_error().value_or("").find("tensorrt:tensorrt slot 0, batch of 4: ") != std::string::npos);
    const auto records = sink->records();
    for (std::uint64_t id = 1; id <= 4; ++id) CHECK(records.at(id).failed && records.at(id).label == -1);
    CHECK_EQ(td::counters().batches_run, std::uint64_t{0});
  }
}

TEST_CASE(shape_errors_name_the_tensor_the_shape_and_the_profile) {
  fresh();
  // A plan whose profile the slot cannot honour: the executor's batch never exceeds max_batch,
  // so the engine's own guard and TensorRT's refusal are reached by calling enqueue() directly.
  auto engine = make_engine(td::resnet_like(2, 4, DataType::kFLOAT, kSample));
  fastres::cuda::DeviceGuard guard(0);
  cudaStream_t stream = nullptr;
  CHECK(cudaStreamCreate(&stream) == cudaSuccess);
  fastres::StreamContext ctx;
  ctx.device = fastres::Device::kCuda;
  ctx.cuda_device = 0;
  ctx.stream = stream;
  auto first = engine->create_slot_state(ctx);  // slot 0 takes profile 0, so slot 1 gets profile 1
  ctx.slot = 1;
  auto state = engine->create_slot_state(ctx);
  const auto live = td::contexts();  // a copy: CHECK_EQ keeps a reference to what it reads
  CHECK_EQ(live.back().profile, 1);
  ctx.engine_state = state.get();
  fastres::Batch batch;
  batch.size = 5;
  CHECK_THROWS(engine->enqueue(batch, ctx), fastres::EngineError,
               "slot 1, batch of 5: the slot's optimization profile 1 takes batches of at most 4; lower batch_size");
  // TensorRT's own check (the double enforces the profile's [min, max] as TensorRT does).
  td::fail_next("setInputShape");
  batch.size = 2;
  CHECK_THROWS(engine->enqueue(batch, ctx), fastres::EngineError,
               "setInputShape('input_tensor:0', [2, 3, 2, 2]) failed: IExecutionContext::setInputShape: Error Code 3: "
               "API Usage Error (injected failure); the slot's optimization profile 1 takes batches of 1..4");
  // No buffers in this batch: TensorRT's enqueueV3 refuses (the input's address was never set).
  CHECK_THROWS(engine->enqueue(batch, ctx), fastres::EngineError,
               "enqueueV3 failed: IExecutionContext::enqueueV3: Error Code 3: API Usage Error (Parameter check "
               "failed: the address of input_tensor:0 is not set");
  // After failures the engine sets the shape and both addresses again: real device buffers run.
  const std::size_t before = td::counters().shape_calls;
  fastres::cuda::DeviceBuffer input(4 * 12 * sizeof(float)), output(4 * sizeof(std::int32_t));
  std::vector<float> host(4 * 12, -7.0f);
  host[0] = 17;
  host[12] = 23;
  input.copy_from_host(host.data(), host.size() * sizeof(float), stream);
  batch.input = input.data();
  batch.output = output.data();
  td::fail_next("setTensorAddress");
  CHECK_THROWS(engine->enqueue(batch, ctx), fastres::EngineError, "setTensorAddress('input_tensor:0') failed");
  engine->enqueue(batch, ctx);
  std::int32_t labels[2] = {0, 0};
  output.copy_to_host(labels, sizeof labels, stream);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  CHECK_EQ(labels[0], 17);
  CHECK_EQ(labels[1], 23);
  // After a failure the context may hold anything, so each of the two calls set the shape again.
  CHECK_EQ(td::counters().shape_calls, before + 2);
  engine->enqueue(batch, ctx);  // nothing failed: shape and addresses are not set again
  CHECK_EQ(td::counters().shape_calls, before + 2);
  CHECK(cudaStreamSynchronize(stream) == cudaSuccess);
  state.reset();
  first.reset();
  CHECK(cudaStreamDestroy(stream) == cudaSuccess);
}

TEST_CASE(graphs_are_captured_once_per_slot_and_batch_size_then_replayed) {
  for (const bool capturable : {true, false}) {
    fresh();
    TensorRTOptions options;
    options.graph_capturable = capturable;
    auto engine = make_engine(td::resnet_like(2, 8, DataType::kFLOAT, kSample), options);
    auto sink = std::make_shared<testing::RecordingSink>();
    fastres::ExecutorConfig config = cuda_config(8, 2);
    config.use_graphs = true;
    config.batch_timeout_us = 0;
    fastres::Executor ex(engine, float_library(64), config, sink);
    // Rounds of full batches of 8 (held until queued), then one of 3: sizes 8 and 3 on two slots.
    std::uint64_t id = 1;
    for (int round = 0; round < 6; ++round) {
      std::vector<std::uint64_t> ids, indices;
      for (std::uint64_t k = 0; k < 8; ++k) {
        ids.push_back(id++);
        indices.push_back((static_cast<std::uint64_t>(round) * 8 + k) % 64);
      }
      ex.hold_until(8);
      ex.submit(ids, indices);
      ex.flush();
    }
    ex.submit({id, id + 1, id + 2}, {61, 62, 63});
    ex.flush();
    const auto records = sink->records();
    CHECK_EQ(records.size(), std::size_t{51});
    for (const auto& [rid, r] : records) {
      CHECK(!r.failed);
      CHECK_EQ(static_cast<std::uint64_t>(r.label), r.index);  // replays read each batch's own inputs
    }
    const fastres::ExecutorStats stats = ex.stats();
    const td::Counters c = td::counters();
    if (capturable) {
      // Each (slot, size) pair seen is captured exactly once, after one direct run.
      CHECK(stats.graph_captures >= 2 && stats.graph_captures <= 4);
      CHECK_EQ(c.captured_enqueues, stats.graph_captures);
      CHECK_EQ(stats.graph_launches + (c.enqueues - c.captured_enqueues), stats.batches);
      CHECK(stats.graph_launches >= 3);
    } else {
      CHECK_EQ(stats.graph_captures, std::uint64_t{0});
      CHECK_EQ(stats.graph_launches, std::uint64_t{0});
      CHECK_EQ(c.enqueues, stats.batches);
    }
    CHECK_EQ(c.batches_run, stats.batches);  // a replay runs the network like a direct enqueue
  }
}

TEST_CASE(tensorrts_log_reaches_the_sink_and_errors_are_kept_per_thread) {
  fresh();
  std::vector<std::pair<int, std::string>> seen;
  std::mutex mu;
  fastres::TensorRTLogger::instance().set_sink(
      [&](int severity, const std::string& msg) {
        std::lock_guard<std::mutex> lk(mu);
        seen.emplace_back(severity, msg);
      },
      3);
  auto engine = make_engine(td::resnet_like(1, 8, DataType::kFLOAT, kSample));
  const std::string junk = "junk";
  CHECK_THROWS(TensorRTEngine(std::vector<char>(junk.begin(), junk.end()), {}), fastres::EngineError, "Serialization");
  {
    std::lock_guard<std::mutex> lk(mu);
    const auto info = std::find_if(seen.begin(), seen.end(), [](const auto& s) {
      return s.first == 3 && s.second.find("Loaded engine size") != std::string::npos;
    });
    CHECK(info != seen.end());
    const auto error = std::find_if(seen.begin(), seen.end(), [](const auto& s) { return s.first == 1; });
    CHECK(error != seen.end() && error->second.find("Serialization assertion failed") != std::string::npos);
  }
  auto& logger = fastres::TensorRTLogger::instance();
  CHECK(logger.thread_error().find("Serialization") != std::string::npos);
  std::string other;
  std::thread([&] { other = logger.thread_error(); }).join();
  CHECK(other.empty());  // another thread's error is not this one's
  CHECK(logger.last_error().find("Serialization") != std::string::npos);
  logger.set_sink(nullptr);
}

int main(int argc, char** argv) { return check::run(argc, argv); }
