// Control and observation of fastres's TensorRT test double (tensorrt_double.cpp, README.md): plans
// it can deserialize, failures to inject, and what it has done. Test builds only.
//
// The double's "network" is fixed and checkable: sample s's answer is v = its first input element
// as an integer (floats truncated). An int32/int64 output of one value a sample gets v; a float32
// (or float16) output of C values a sample gets 1 at class ((v mod C) + C) mod C and 0 elsewhere.
// Tests store each sample's QSL index (or index + offset) in its first element, so the answers are
// known without the double.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastres::trt_double {

struct TensorSpec {
  std::string name;  // no spaces
  bool input = false;
  nvinfer1::DataType dtype = nvinfer1::DataType::kFLOAT;
  nvinfer1::TensorFormat format = nvinfer1::TensorFormat::kLINEAR;
  std::vector<std::int64_t> shape;  // -1 for a dynamic dimension
};

// The input's shapes in one optimization profile (the plan's only input).
struct ProfileSpec {
  std::vector<std::int64_t> min, opt, max;
};

struct PlanSpec {
  std::string name = "double";
  std::vector<TensorSpec> tensors;
  std::vector<ProfileSpec> profiles;
};

// The bytes IRuntime::deserializeCudaEngine accepts for `plan` (a text format of the double's own).
std::vector<char> serialize(const PlanSpec& plan);

// A plan like fastres's builder makes for ResNet50: input `input_tensor:0` of `dtype`
// [-1, 3, 224, 224] (or `sample` instead of 3x224x224), answer `top1:0` int32 [-1], and
// `profiles` profiles of min 1, opt = max = `max_batch`.
PlanSpec resnet_like(int profiles, std::int64_t max_batch, nvinfer1::DataType dtype = nvinfer1::DataType::kFLOAT,
                     std::vector<std::int64_t> sample = {3, 224, 224});

// Back to the initial state: counters zeroed, injected failures dropped. Objects still alive keep
// working. Call it between test cases, with no TensorRT call in flight.
void reset();

// The next `count` calls of `method` ("createInferRuntime", "deserializeCudaEngine",
// "createExecutionContext", "setOptimizationProfileAsync", "setInputShape", "setTensorAddress",
// "enqueueV3") fail as TensorRT's do: they log an error through the runtime's logger and return
// false or null.
void fail_next(const std::string& method, int count = 1);

struct ContextInfo {
  std::uint64_t engine = 0;  // which deserialized engine (ids count from 1)
  int device = -1;           // the engine's device
  int profile = 0;           // the context's optimization profile now
  std::uint64_t enqueues = 0;
};

struct Counters {
  std::uint64_t runtimes = 0;          // createInferRuntime calls that succeeded
  std::uint64_t deserializations = 0;  // engines deserialized
  std::uint64_t contexts_created = 0;
  std::uint64_t profile_switches = 0;  // setOptimizationProfileAsync calls that succeeded
  std::uint64_t shape_calls = 0;       // setInputShape calls (any outcome)
  std::uint64_t address_calls = 0;     // setTensorAddress calls (any outcome)
  std::uint64_t enqueues = 0;          // enqueueV3 calls that succeeded, captured ones included
  std::uint64_t captured_enqueues = 0; // of those, recorded into a CUDA graph
  std::uint64_t batches_run = 0;       // batches the double's kernel computed (a graph replay runs one)
  std::uint64_t samples_run = 0;
  std::size_t live_engines = 0, live_contexts = 0;
};
Counters counters();

// Live execution contexts, in creation order.
std::vector<ContextInfo> contexts();

}  // namespace fastres::trt_double
