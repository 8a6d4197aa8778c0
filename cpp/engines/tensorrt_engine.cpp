// TensorRTEngine (tensorrt_engine.hpp). The TensorRT calls here are exactly the subset the test
// double in tests/tensorrt_double/ declares; each was checked against TensorRT 10.x's
// NvInferRuntime.h / NvInferRuntimeBase.h and the 11.x migration guide (README.md there). The
// same source compiles against real TensorRT and against the double: no #ifdef for either.
#include "engines/tensorrt_engine.hpp"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "fastres/cuda/device.hpp"
#include "fastres/cuda/device_buffer.hpp"
#include "fastres/cuda/error.hpp"
#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

namespace fastres {

// ---------------------------------------------------------------- logger

namespace {

thread_local std::string t_error;  // the calling thread's last TensorRT error

const char* severity_name(int severity) noexcept {
  switch (severity) {
    case 0: return "internal error";
    case 1: return "error";
    case 2: return "warning";
    case 3: return "info";
    default: return "verbose";
  }
}

class LoggerAdapter final : public nvinfer1::ILogger {
 public:
  explicit LoggerAdapter(TensorRTLogger& owner) : owner_(owner) {}
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    owner_.log(static_cast<int>(severity), msg);
  }

 private:
  TensorRTLogger& owner_;
};

}  // namespace

struct TensorRTLogger::Impl {
  explicit Impl(TensorRTLogger& owner) : adapter(owner) {}
  LoggerAdapter adapter;
  mutable std::mutex mu;
  Sink sink;
  int max_severity = 2;
  std::string last_error;
};

TensorRTLogger::TensorRTLogger() : impl_(std::make_unique<Impl>(*this)) {}

TensorRTLogger& TensorRTLogger::instance() {
  static TensorRTLogger* logger = new TensorRTLogger();  // never destroyed: TensorRT may log at exit
  return *logger;
}

void TensorRTLogger::set_sink(Sink sink, int max_severity) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->sink = std::move(sink);
  impl_->max_severity = max_severity;
}

std::string TensorRTLogger::thread_error() const { return t_error; }
void TensorRTLogger::clear_thread_error() { t_error.clear(); }

std::string TensorRTLogger::last_error() const {
  std::lock_guard<std::mutex> lk(impl_->mu);
  return impl_->last_error;
}

void TensorRTLogger::log(int severity, const char* message) noexcept {
  try {
    const std::string text = message ? message : "";
    if (severity <= 1) t_error = text;
    Sink sink;
    {
      std::lock_guard<std::mutex> lk(impl_->mu);
      if (severity <= 1) impl_->last_error = text;
      if (severity > impl_->max_severity) return;
      sink = impl_->sink;
    }
    if (sink) {
      sink(severity, text);
    } else {
      std::fprintf(stderr, "fastres: TensorRT %s: %s\n", severity_name(severity), text.c_str());
    }
  } catch (...) {
    // A logger must not throw into TensorRT; a sink that fails loses its message.
  }
}

void* TensorRTLogger::trt_logger() noexcept { return &impl_->adapter; }

// ---------------------------------------------------------------- IO description

namespace {

std::string trt_dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kBOOL: return "bool";
    case nvinfer1::DataType::kUINT8: return "uint8";
    case nvinfer1::DataType::kFP8: return "fp8";
    case nvinfer1::DataType::kBF16: return "bfloat16";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT4: return "int4";
  }
  return "type " + std::to_string(static_cast<int>(t));
}

std::string trt_format_name(nvinfer1::TensorFormat f) {
  switch (f) {
    case nvinfer1::TensorFormat::kLINEAR: return "linear";
    case nvinfer1::TensorFormat::kCHW2: return "chw2";
    case nvinfer1::TensorFormat::kHWC8: return "hwc8";
    case nvinfer1::TensorFormat::kCHW4: return "chw4";
    case nvinfer1::TensorFormat::kCHW16: return "chw16";
    case nvinfer1::TensorFormat::kCHW32: return "chw32";
    case nvinfer1::TensorFormat::kDHWC8: return "dhwc8";
    case nvinfer1::TensorFormat::kCDHW32: return "cdhw32";
    case nvinfer1::TensorFormat::kHWC: return "hwc";
    case nvinfer1::TensorFormat::kDLA_LINEAR: return "dla_linear";
    case nvinfer1::TensorFormat::kDLA_HWC4: return "dla_hwc4";
    case nvinfer1::TensorFormat::kHWC16: return "hwc16";
    case nvinfer1::TensorFormat::kDHWC: return "dhwc";
  }
  return "format " + std::to_string(static_cast<int>(f));
}

// The fastres dtype of a TensorRT type, and whether there is one.
bool fastres_dtype(const std::string& name, DType& out) {
  if (name == "float32") out = DType::kFloat32;
  else if (name == "float16") out = DType::kFloat16;
  else if (name == "int8") out = DType::kInt8;
  else if (name == "uint8") out = DType::kUInt8;
  else if (name == "int32") out = DType::kInt32;
  else if (name == "int64") out = DType::kInt64;
  else return false;
  return true;
}

std::vector<std::int64_t> to_vector(const nvinfer1::Dims& d) {
  if (d.nbDims < 0) return {};
  return std::vector<std::int64_t>(d.d, d.d + std::min<std::int32_t>(d.nbDims, nvinfer1::Dims::MAX_DIMS));
}

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::ostringstream o;
  o << "[";
  for (std::size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << "]";
  return o.str();
}

std::string describe(const TensorRTTensor& t) {
  return "'" + t.name + "' (" + t.dtype + " " + shape_text(t.shape) + ", " + t.format + ")";
}

std::int64_t per_sample_volume(const std::vector<std::int64_t>& shape) {
  std::int64_t v = 1;
  for (std::size_t i = 1; i < shape.size(); ++i) v *= shape[i];
  return v;
}

std::string trt_message(const std::string& fallback_hint) {
  std::string msg = TensorRTLogger::instance().thread_error();
  if (msg.empty()) msg = TensorRTLogger::instance().last_error();
  if (msg.empty()) msg = "TensorRT logged no error" + fallback_hint;
  return msg;
}

constexpr const char* kRebuild = "rebuild the plan with fastres.engines.tensorrt.build_engine";

}  // namespace

const char* answer_name(TensorRTAnswer answer) noexcept {
  switch (answer) {
    case TensorRTAnswer::kLabelsInt32: return "labels";
    case TensorRTAnswer::kLabelsNarrowed: return "narrowed labels";
    case TensorRTAnswer::kLogitsTop1: return "logits";
  }
  return "?";
}

// ---------------------------------------------------------------- plans per device

struct TensorRTEngine::DevicePlan {
  int device = 0;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;  // destroyed before the runtime
  std::mutex mu;
  std::vector<bool> held;  // [profile]: taken by a live slot of this device

  ~DevicePlan() {
    try {
      cuda::DeviceGuard guard(device);
      engine.reset();
      runtime.reset();
    } catch (...) {
      // The device is gone (a failing driver): free without it.
    }
  }
};

std::shared_ptr<TensorRTEngine::DevicePlan> TensorRTEngine::deserialize(int device) const {
  cuda::DeviceGuard guard(device);  // Unavailable names a missing device
  auto& logger = TensorRTLogger::instance();
  logger.clear_thread_error();
  auto plan = std::make_shared<DevicePlan>();
  plan->device = device;
  plan->held.assign(static_cast<std::size_t>(std::max(profiles_, 1)), false);
  plan->runtime.reset(nvinfer1::createInferRuntime(*static_cast<nvinfer1::ILogger*>(logger.trt_logger())));
  if (!plan->runtime) {
    throw EngineError("TensorRT engine '" + options_.name + "': createInferRuntime failed: " + trt_message("") +
                      "; check that the TensorRT libraries found at run time match the headers fastres was "
                      "built with (TensorRT " + std::to_string(NV_TENSORRT_MAJOR) + "." +
                      std::to_string(NV_TENSORRT_MINOR) + "." + std::to_string(NV_TENSORRT_PATCH) + ")");
  }
  plan->engine.reset(plan->runtime->deserializeCudaEngine(plan_.data(), plan_.size()));
  if (!plan->engine) {
    throw EngineError("TensorRT engine '" + options_.name + "': deserializeCudaEngine(" + std::to_string(plan_.size()) +
                      " bytes) on CUDA device " + std::to_string(device) + " failed: " + trt_message("") +
                      "; a plan runs only with the TensorRT version and the GPU it was built for: " + kRebuild);
  }
  return plan;
}

std::shared_ptr<TensorRTEngine::DevicePlan> TensorRTEngine::plan_on(int device) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = plans_.find(device);
  if (it != plans_.end()) return it->second;
  auto plan = deserialize(device);
  const nvinfer1::ICudaEngine& e = *plan->engine;
  // One plan, so the same IO on every device; anything else is a TensorRT bug worth naming.
  bool same = e.getNbIOTensors() == static_cast<std::int32_t>(tensors_.size());
  for (std::int32_t i = 0; same && i < e.getNbIOTensors(); ++i) same = tensors_[i].name == e.getIOTensorName(i);
  if (!same || e.getNbOptimizationProfiles() != profiles_) {
    throw EngineError("TensorRT engine '" + options_.name + "': the plan deserialized on CUDA device " +
                      std::to_string(device) + " describes other IO tensors or profiles than on device " +
                      std::to_string(options_.device) + "; " + kRebuild);
  }
  plans_.emplace(device, plan);
  return plan;
}

std::vector<int> TensorRTEngine::devices() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<int> out;
  for (const auto& kv : plans_) out.push_back(kv.first);
  return out;
}

// ---------------------------------------------------------------- construction

TensorRTEngine::TensorRTEngine(std::vector<char> plan, TensorRTOptions options)
    : options_(std::move(options)), plan_(std::move(plan)) {
  if (options_.name.empty()) options_.name = "tensorrt";
  if (plan_.empty()) {
    throw InvalidArgument("TensorRT engine '" + options_.name + "': the plan is empty; pass a serialized engine (" +
                          kRebuild + ")");
  }
  auto first = deserialize(options_.device);
  read_io(*first->engine);
  first->held.assign(static_cast<std::size_t>(profiles_), false);
  plans_.emplace(options_.device, std::move(first));
}

std::shared_ptr<TensorRTEngine> TensorRTEngine::from_file(const std::string& path, TensorRTOptions options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InvalidArgument("TensorRT plan " + path + ": cannot be opened; " + kRebuild);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InvalidArgument("TensorRT plan " + path + ": read failed");
  if (options.name.empty()) options.name = path;
  return std::make_shared<TensorRTEngine>(std::move(bytes), std::move(options));
}

TensorRTEngine::~TensorRTEngine() = default;

std::pair<std::int64_t, std::int64_t> TensorRTEngine::profile_batch(int profile) const {
  if (profile < 0 || profile >= profiles_) {
    throw InvalidArgument("TensorRT engine '" + options_.name + "': profile " + std::to_string(profile) +
                          " does not exist; the plan has " + std::to_string(profiles_));
  }
  return profile_batches_[static_cast<std::size_t>(profile)];
}

void TensorRTEngine::read_io(const nvinfer1::ICudaEngine& engine) {
  const std::string who = "TensorRT engine '" + options_.name + "'";
  std::vector<const TensorRTTensor*> inputs, outputs;
  const std::int32_t n = engine.getNbIOTensors();
  tensors_.clear();
  for (std::int32_t i = 0; i < n; ++i) {
    TensorRTTensor t;
    const char* name = engine.getIOTensorName(i);
    t.name = name ? name : "";
    t.input = engine.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
    t.dtype = trt_dtype_name(engine.getTensorDataType(name));
    t.format = trt_format_name(engine.getTensorFormat(name));
    t.shape = to_vector(engine.getTensorShape(name));
    tensors_.push_back(std::move(t));
  }
  for (const auto& t : tensors_) (t.input ? inputs : outputs).push_back(&t);
  auto list = [](const std::vector<const TensorRTTensor*>& ts) {
    std::string s;
    for (const auto* t : ts) s += (s.empty() ? "" : ", ") + describe(*t);
    return s.empty() ? std::string("none") : s;
  };

  // The input: the only one there is (fastres feeds one tensor a sample).
  if (inputs.size() != 1 || (!options_.input_name.empty() && inputs[0]->name != options_.input_name)) {
    throw InvalidArgument(who + ": fastres feeds one image input" +
                          (options_.input_name.empty() ? "" : " named '" + options_.input_name + "'") +
                          "; the plan's inputs are " + list(inputs) + "; " + kRebuild + " from a model with one input");
  }
  const TensorRTTensor& in = *inputs[0];
  input_ = in.name;
  input_dims_ = in.shape;
  if (in.shape.size() < 2 || in.shape[0] != -1) {
    throw InvalidArgument(who + ": input " + describe(in) + " has no dynamic batch dimension; the executor runs "
                          "batches of any size from 1, so the first dimension must be -1: " + kRebuild);
  }
  for (std::size_t i = 1; i < in.shape.size(); ++i) {
    if (in.shape[i] <= 0) {
      throw InvalidArgument(who + ": input " + describe(in) + " has a dynamic dimension " + std::to_string(i) +
                            "; only the batch may vary (fix the image shape when building): " + kRebuild);
    }
  }
  if (!fastres_dtype(in.dtype, io_.input_dtype) || io_.input_dtype == DType::kInt64) {
    throw InvalidArgument(who + ": input " + describe(in) + ": fastres stores float32, float16, int8, uint8 or "
                          "int32 samples; build the plan with an fp32 or int8_linear input");
  }
  io_.input_shape.assign(in.shape.begin() + 1, in.shape.end());
  if (in.format == "linear") {
    io_.input_layout = in.shape.size() == 4 ? "NCHW" : "linear";
  } else if (in.format == "chw4" && in.shape.size() == 4) {
    // NC/4HW4: channels padded to a multiple of 4 and innermost, as fastres's int8_chw4 store.
    io_.input_shape = {(in.shape[1] + 3) / 4, in.shape[2], in.shape[3], 4};
    io_.input_layout = "NC/4HW4";
  } else {
    throw InvalidArgument(who + ": input " + describe(in) + " is in a format fastres does not store; build the plan "
                          "with the input format linear (fp32, int8_linear) or chw4 (int8_chw4)");
  }

  // Profiles: every batch size from 1 to max_batch must fit the profile of every slot.
  profiles_ = engine.getNbOptimizationProfiles();
  if (profiles_ < 1) throw InvalidArgument(who + ": the plan has no optimization profile; " + kRebuild);
  profile_batches_.clear();
  std::int64_t max_batch = -1;
  for (int p = 0; p < profiles_; ++p) {
    const auto lo = to_vector(engine.getProfileShape(input_.c_str(), p, nvinfer1::OptProfileSelector::kMIN));
    const auto hi = to_vector(engine.getProfileShape(input_.c_str(), p, nvinfer1::OptProfileSelector::kMAX));
    if (lo.size() != in.shape.size() || hi.size() != in.shape.size()) {
      throw InvalidArgument(who + ": optimization profile " + std::to_string(p) + " gives input '" + input_ +
                            "' the shapes " + shape_text(lo) + ".." + shape_text(hi) + ", not of rank " +
                            std::to_string(in.shape.size()) + "; " + kRebuild);
    }
    if (lo[0] != 1 || hi[0] < 1) {
      throw InvalidArgument(who + ": optimization profile " + std::to_string(p) + " accepts batches of " +
                            std::to_string(lo[0]) + ".." + std::to_string(hi[0]) + "; the executor sends batches of "
                            "any size from 1, so every profile needs min batch 1: " + kRebuild);
    }
    profile_batches_.emplace_back(lo[0], hi[0]);
    max_batch = max_batch < 0 ? hi[0] : std::min(max_batch, hi[0]);
  }
  io_.max_batch = static_cast<std::size_t>(max_batch);

  // The answer: named, or the only output.
  const TensorRTTensor* answer = nullptr;
  for (const auto* t : outputs) {
    if (t->name == options_.output_name) answer = t;
  }
  if (answer == nullptr && options_.output_name.empty() && outputs.size() == 1) answer = outputs[0];
  if (answer == nullptr) {
    throw InvalidArgument(who + ": " +
                          (options_.output_name.empty() ? std::string("the plan has several outputs")
                                                        : "no output named '" + options_.output_name + "'") +
                          ": " + list(outputs) + "; pass output_name (fastres's models answer top1:0, the MLPerf "
                          "model ArgMax:0)");
  }
  output_ = answer->name;
  for (const auto* t : outputs) {
    if (t->shape.empty() || t->shape[0] != -1 || t->format != "linear") {
      throw InvalidArgument(who + ": output " + describe(*t) + ": fastres binds outputs with a dynamic batch "
                            "dimension in the linear format; " + kRebuild);
    }
    for (std::size_t i = 1; i < t->shape.size(); ++i) {
      if (t->shape[i] <= 0) {
        throw InvalidArgument(who + ": output " + describe(*t) + " has a data-dependent dimension; " + kRebuild);
      }
    }
  }
  const std::int64_t volume = per_sample_volume(answer->shape);
  DType answer_dtype{};
  const bool known = fastres_dtype(answer->dtype, answer_dtype);
  if (known && volume == 1 && (answer_dtype == DType::kInt32 || answer_dtype == DType::kInt64)) {
    const bool direct = answer_dtype == DType::kInt32 && options_.label_offset == 0;
    answer_ = direct ? TensorRTAnswer::kLabelsInt32 : TensorRTAnswer::kLabelsNarrowed;
    answer_bytes_ = dtype_size(answer_dtype);
  } else if (known && volume >= 2 && answer_dtype == DType::kFloat32) {
    answer_ = TensorRTAnswer::kLogitsTop1;
    classes_ = static_cast<std::size_t>(volume);
    answer_bytes_ = classes_ * sizeof(float);
  } else {
    throw InvalidArgument(who + ": output " + describe(*answer) + " is not an answer fastres can read: int32 or int64 "
                          "labels [N] or [N, 1], or float32 logits [N, C]; build the plan from fastres's top-1 "
                          "model (top1:0) or name another output_name");
  }
  extra_outputs_.clear();
  for (const auto* t : outputs) {
    if (t == answer) continue;
    DType dt{};
    std::size_t bytes = 0;
    if (fastres_dtype(t->dtype, dt)) bytes = dtype_size(dt);
    else if (t->dtype == "bool" || t->dtype == "fp8") bytes = 1;
    else if (t->dtype == "bfloat16") bytes = 2;
    else throw InvalidArgument(who + ": output " + describe(*t) + " has a type fastres cannot size; " + kRebuild);
    extra_outputs_.emplace_back(t->name, bytes * static_cast<std::size_t>(per_sample_volume(t->shape)));
  }

  io_.output_bytes = sizeof(std::int32_t);
  io_.device = Device::kCuda;
  io_.graph_capturable = options_.graph_capturable;
  validate(io_, name());
}

// ---------------------------------------------------------------- slots

struct TensorRTEngine::Slot final : EngineSlotState {
  std::shared_ptr<DevicePlan> plan;  // keeps the device's runtime and engine alive past the engine object
  int device = 0;
  std::size_t slot = 0;
  int profile = -1;
  std::pair<std::int64_t, std::int64_t> batches{1, 1};
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  cuda::DeviceBuffer answer;               // the plan's answer tensor, when a kernel converts it
  std::vector<cuda::DeviceBuffer> extras;  // outputs fastres does not read
  // What the context holds now, so unchanged calls are skipped.
  std::int64_t shaped = -1;
  const void* bound_input = nullptr;
  void* bound_answer = nullptr;

  ~Slot() override {
    try {
      cuda::DeviceGuard guard(device);
      context.reset();
      extras.clear();
      answer = cuda::DeviceBuffer();
    } catch (...) {
    }
    if (plan && profile >= 0) {
      std::lock_guard<std::mutex> lk(plan->mu);
      plan->held[static_cast<std::size_t>(profile)] = false;
    }
  }
};

std::unique_ptr<EngineSlotState> TensorRTEngine::create_slot_state(const StreamContext& ctx) {
  const int device = ctx.cuda_device >= 0 ? ctx.cuda_device : options_.device;
  auto plan = plan_on(device);
  auto state = std::make_unique<Slot>();
  state->device = device;
  state->slot = ctx.slot;
  {
    std::lock_guard<std::mutex> lk(plan->mu);
    const auto free = std::find(plan->held.begin(), plan->held.end(), false);
    if (free == plan->held.end()) {
      throw InvalidArgument(name() + ": slot " + std::to_string(ctx.slot) + " on CUDA device " +
                            std::to_string(device) + " finds all " + std::to_string(profiles_) +
                            " optimization profiles taken by the device's other slots; execution contexts that run "
                            "concurrently need distinct profiles: lower copy_streams to " + std::to_string(profiles_) +
                            " or rebuild the plan with one profile per copy stream");
    }
    *free = true;
    state->profile = static_cast<int>(free - plan->held.begin());
  }
  state->plan = plan;  // from here on, the slot's destructor gives the profile back
  state->batches = profile_batches_[static_cast<std::size_t>(state->profile)];
  const std::string where = name() + " slot " + std::to_string(ctx.slot) + " (CUDA device " + std::to_string(device) +
                            ", profile " + std::to_string(state->profile) + ")";
  auto& logger = TensorRTLogger::instance();
  logger.clear_thread_error();
  state->context.reset(plan->engine->createExecutionContext());
  if (!state->context) {
    throw EngineError(where + ": createExecutionContext failed: " + trt_message("") +
                      "; each slot needs the plan's activation memory: lower copy_streams or the batch size");
  }
  if (!state->context->setOptimizationProfileAsync(state->profile, ctx.stream)) {
    throw EngineError(where + ": setOptimizationProfileAsync(" + std::to_string(state->profile) + ") failed: " +
                      trt_message(""));
  }
  // The switch may enqueue copies on the copy stream; finish them before the first batch runs
  // on an inference stream.
  cuda::check(cudaStreamSynchronize(ctx.stream), where + ": cudaStreamSynchronize after the profile switch");
  if (answer_ != TensorRTAnswer::kLabelsInt32) state->answer = cuda::DeviceBuffer(io_.max_batch * answer_bytes_);
  for (const auto& [out_name, bytes] : extra_outputs_) {
    state->extras.emplace_back(io_.max_batch * bytes);
    if (!state->context->setTensorAddress(out_name.c_str(), state->extras.back().data())) {
      throw EngineError(where + ": setTensorAddress('" + out_name + "') for an output fastres does not read failed: " +
                        trt_message(""));
    }
  }
  return state;
}

void TensorRTEngine::enqueue(const Batch& batch, StreamContext& ctx) {
  auto* slot = dynamic_cast<Slot*>(ctx.engine_state);
  if (slot == nullptr) {
    throw EngineError(name() + ": enqueue on slot " + std::to_string(ctx.slot) +
                      " without its execution context (create_slot_state was not called for it)");
  }
  if (batch.size == 0) return;
  const auto n = static_cast<std::int64_t>(batch.size);
  const std::string where = name() + " slot " + std::to_string(slot->slot) + ", batch of " + std::to_string(n);
  auto& logger = TensorRTLogger::instance();
  logger.clear_thread_error();
  auto fail = [&](const std::string& call, const std::string& hint) {
    slot->shaped = -1;  // the context may hold anything now: set everything again next time
    slot->bound_input = nullptr;
    slot->bound_answer = nullptr;
    throw EngineError(where + ": " + call + " failed: " + trt_message("") + hint);
  };
  if (n > slot->batches.second) {
    throw EngineError(where + ": the slot's optimization profile " + std::to_string(slot->profile) +
                      " takes batches of at most " + std::to_string(slot->batches.second) +
                      "; lower batch_size or rebuild the plan with a larger batch");
  }
  if (slot->shaped != n) {
    nvinfer1::Dims dims{};
    dims.nbDims = static_cast<std::int32_t>(input_dims_.size());
    for (std::size_t i = 0; i < input_dims_.size(); ++i) dims.d[i] = i == 0 ? n : input_dims_[i];
    const std::vector<std::int64_t> given(dims.d, dims.d + dims.nbDims);
    if (!slot->context->setInputShape(input_.c_str(), dims)) {
      fail("setInputShape('" + input_ + "', " + shape_text(given) + ")",
           "; the slot's optimization profile " + std::to_string(slot->profile) + " takes batches of " +
               std::to_string(slot->batches.first) + ".." + std::to_string(slot->batches.second));
    }
    slot->shaped = n;
  }
  if (slot->bound_input != batch.input) {
    // TensorRT reads inputs only; its setTensorAddress takes void* for inputs and outputs alike.
    if (!slot->context->setTensorAddress(input_.c_str(), const_cast<std::byte*>(batch.input))) {
      fail("setTensorAddress('" + input_ + "')", "");
    }
    slot->bound_input = batch.input;
  }
  void* answer = answer_ == TensorRTAnswer::kLabelsInt32 ? static_cast<void*>(batch.output) : slot->answer.data();
  if (slot->bound_answer != answer) {
    if (!slot->context->setTensorAddress(output_.c_str(), answer)) fail("setTensorAddress('" + output_ + "')", "");
    slot->bound_answer = answer;
  }
  if (!slot->context->enqueueV3(ctx.stream)) {
    fail(std::string("enqueueV3") + (ctx.capturing ? " (while capturing a CUDA graph)" : ""),
         ctx.capturing ? "; the executor then runs this engine without graphs" : "");
  }
  auto* labels = reinterpret_cast<std::int32_t*>(batch.output);
  switch (answer_) {
    case TensorRTAnswer::kLabelsInt32:
      break;
    case TensorRTAnswer::kLabelsNarrowed:
      if (answer_bytes_ == sizeof(std::int64_t)) {
        kernels::narrow_labels(labels, slot->answer.as<std::int64_t>(), batch.size, options_.label_offset, ctx.stream);
      } else {
        kernels::narrow_labels(labels, slot->answer.as<std::int32_t>(), batch.size, options_.label_offset, ctx.stream);
      }
      break;
    case TensorRTAnswer::kLogitsTop1:
      kernels::top1(labels, slot->answer.as<float>(), batch.size, classes_, options_.label_offset, ctx.stream);
      break;
  }
}

}  // namespace fastres
