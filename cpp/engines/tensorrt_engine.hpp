// TensorRTEngine: a serialized TensorRT plan as an engine of the executor's CUDA path (NVIDIA's
// LWIS design). Built only with FASTRES_WITH_TENSORRT (and so FASTRES_WITH_CUDA).
//
// * The plan is deserialized once per CUDA device it runs on: at construction on
//   `TensorRTOptions::device`, then in create_slot_state() for every other device a slot is on.
// * Its IO tensors (names, dtypes, shapes, formats) become the engine's EngineIO: one input with a
//   dynamic batch dimension (-1), per-sample dims fixed; one answer tensor (int32 or int64 labels
//   [N] or [N, 1], or float32 logits [N, C]); further outputs are written to per-slot scratch.
//   max_batch is the smallest maximum batch over the plan's optimization profiles.
// * Each stream slot gets its own IExecutionContext on its own optimization profile, selected with
//   setOptimizationProfileAsync on the slot's copy stream: contexts of one engine that run
//   concurrently need distinct profiles, so a slot takes the lowest profile no other live slot of
//   its device holds (slot k of one device: profile k), and a device with more slots than the plan
//   has profiles is refused. fastres's builder makes one profile per copy stream.
// * enqueue(): setInputShape with the batch size, setTensorAddress for every IO tensor (only when
//   they changed), enqueueV3 on the batch's stream, then, unless the plan answers int32 labels
//   without an offset straight into the output, one small kernel on the same stream (int64 ->
//   int32 with kernels::narrow_labels, or logits -> labels with kernels::top1). All of it is device
//   work on that stream, so the executor may capture it into a CUDA graph (use_graphs); it runs
//   the first batch of each size directly first, as TensorRT needs before a capture.
// * TensorRT's log goes to TensorRTLogger (stderr by default; the Python bindings route it to
//   logging.getLogger("fastres.tensorrt")). A failed call becomes fastres::EngineError naming the
//   call, the tensor, the slot and the batch, with TensorRT's last error message.
//
// Verification: this file compiles and its logic is unit-tested against the TensorRT test double
// in tests/tensorrt_double/ (through the real executor and the CUDA runtime double). It has not
// been run against real TensorRT in this repository (README "TensorRT").
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fastres/engine.hpp"

namespace nvinfer1 {
class ICudaEngine;
}  // namespace nvinfer1

namespace fastres {

// The process's one TensorRT logger (TensorRT ties a process to the first logger it is given).
// Thread-safe: TensorRT logs from any thread.
class TensorRTLogger {
 public:
  // TensorRT's severities: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose.
  using Sink = std::function<void(int severity, const std::string& message)>;

  static TensorRTLogger& instance();

  // Where messages of `severity <= max_severity` go; null restores stderr. The sink must not call
  // TensorRT. Messages above max_severity are dropped before the sink.
  void set_sink(Sink sink, int max_severity = 2);
  // The most recent error (severity <= 1) TensorRT logged on the calling thread since
  // clear_thread_error(); TensorRT reports API errors on the calling thread, synchronously.
  std::string thread_error() const;
  void clear_thread_error();
  // The most recent error logged on any thread ("" if none): for errors TensorRT reported elsewhere.
  std::string last_error() const;

  // For TensorRT's ILogger adapter (and tests).
  void log(int severity, const char* message) noexcept;
  void* trt_logger() noexcept;  // the nvinfer1::ILogger& to pass to createInferRuntime

 private:
  TensorRTLogger();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct TensorRTOptions {
  std::string name;          // for messages; default "tensorrt"
  std::string input_name;    // "": the plan's only input
  std::string output_name;   // "": the plan's only output (an error when there are several)
  std::int32_t label_offset = 0;  // subtracted from every label (1 for a background class at 0)
  int device = 0;            // the CUDA device the plan is first deserialized on
  bool graph_capturable = true;   // let the executor capture enqueue() into CUDA graphs
};

// One IO tensor of the plan, as TensorRT describes it.
struct TensorRTTensor {
  std::string name;
  bool input = false;
  std::string dtype;   // "float32", "float16", "int8", "uint8", "int32", "int64", "bool", ...
  std::string format;  // "linear", "chw4", ... (TensorRT's TensorFormat)
  std::vector<std::int64_t> shape;  // as the plan declares it, -1 for the dynamic batch
};

// How the plan's answer tensor becomes the int32 label the executor copies back.
enum class TensorRTAnswer {
  kLabelsInt32,      // written by TensorRT straight into Batch::output
  kLabelsNarrowed,   // int64 (or int32 with an offset) labels, then kernels::narrow_labels
  kLogitsTop1,       // float32 logits, then kernels::top1
};
const char* answer_name(TensorRTAnswer answer) noexcept;

class TensorRTEngine final : public Engine {
 public:
  // Deserializes `plan` on options.device and reads its IO. Throws EngineError (with TensorRT's
  // message) when it does not deserialize, InvalidArgument when its IO cannot serve the executor
  // (the message says what to rebuild), Unavailable when the device is missing.
  TensorRTEngine(std::vector<char> plan, TensorRTOptions options);
  // Reads the plan file; throws InvalidArgument naming the file when it cannot be read.
  static std::shared_ptr<TensorRTEngine> from_file(const std::string& path, TensorRTOptions options);
  ~TensorRTEngine() override;

  const EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "tensorrt:" + options_.name; }
  // On the constructing thread, the slot's device current: an execution context on a profile no
  // other slot of the device holds, set on ctx.stream, plus the slot's scratch buffers. Throws
  // InvalidArgument when every profile is taken (more copy streams than profiles).
  std::unique_ptr<EngineSlotState> create_slot_state(const StreamContext& ctx) override;
  // On the slot's thread: see the file comment. Thread-safe across slots.
  void enqueue(const Batch& batch, StreamContext& ctx) override;

  const std::vector<TensorRTTensor>& tensors() const noexcept { return tensors_; }
  const std::string& input_name() const noexcept { return input_; }
  const std::string& output_name() const noexcept { return output_; }
  TensorRTAnswer answer() const noexcept { return answer_; }
  int profiles() const noexcept { return profiles_; }
  // The profile's [min, max] batch for the input.
  std::pair<std::int64_t, std::int64_t> profile_batch(int profile) const;
  const TensorRTOptions& options() const noexcept { return options_; }
  // Devices the plan is deserialized on so far.
  std::vector<int> devices() const;

 private:
  struct DevicePlan;
  struct Slot;
  std::shared_ptr<DevicePlan> plan_on(int device);
  std::shared_ptr<DevicePlan> deserialize(int device) const;
  void read_io(const nvinfer1::ICudaEngine& engine);

  TensorRTOptions options_;
  std::vector<char> plan_;
  EngineIO io_;
  std::vector<TensorRTTensor> tensors_;
  std::string input_, output_;
  std::vector<std::int64_t> input_dims_;  // the plan's input shape, -1 for the batch
  TensorRTAnswer answer_ = TensorRTAnswer::kLabelsInt32;
  std::size_t answer_bytes_ = 0;   // per sample, of the answer tensor
  std::size_t classes_ = 0;        // logits per sample (kLogitsTop1)
  int profiles_ = 0;
  std::vector<std::pair<std::int64_t, std::int64_t>> profile_batches_;
  std::vector<std::pair<std::string, std::size_t>> extra_outputs_;  // name, bytes per sample

  mutable std::mutex mu_;
  std::map<int, std::shared_ptr<DevicePlan>> plans_;
};

}  // namespace fastres
