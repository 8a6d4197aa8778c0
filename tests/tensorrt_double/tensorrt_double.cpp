// fastres's TensorRT test double: the runtime subset of include/NvInferRuntime.h implemented on the
// CPU, over the CUDA runtime double (tests/cuda_double). What it holds a caller to, each a rule of
// real TensorRT (README.md says where each is documented):
//
// * deserializeCudaEngine of bytes that are not a plan logs an error and returns null;
// * a new context is on profile 0; setOptimizationProfileAsync refuses a profile that does not
//   exist, and a switch forgets the input shapes;
// * setInputShape refuses a non-input, another rank, or a dimension outside the current profile's
//   [min, max] (or unequal to a fixed one); setTensorAddress refuses unknown names and null;
// * enqueueV3 needs every input shape and every IO address, the engine's device current, and —
//   while its stream captures a CUDA graph — one enqueueV3 with the same shapes before the capture;
//   two contexts enqueueing on one profile are refused (contexts that run concurrently need
//   distinct profiles);
// * the work itself is one "kernel" on the stream (fake_cuda::launch_kernel), so it runs
//   asynchronously, is captured and replayed with the addresses of its enqueue, and faults (sticky
//   cudaErrorIllegalAddress) on memory that is not a device allocation of the right size.
#include "tensorrt_double.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

#include "fake_cuda.hpp"

namespace fastres::trt_double {
namespace {

using nvinfer1::DataType;
using nvinfer1::ILogger;
using Severity = nvinfer1::ILogger::Severity;

std::mutex g_mu;
std::map<std::string, int> g_fail;  // method -> calls left to fail
Counters g_counters;                 // guarded by g_mu, except the two atomics below
std::atomic<std::uint64_t> g_batches_run{0}, g_samples_run{0};

// Whether `method` is to fail now (and one fewer time after).
bool injected(const std::string& method) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_fail.find(method);
  if (it == g_fail.end() || it->second <= 0) return false;
  if (--it->second == 0) g_fail.erase(it);
  return true;
}

template <class F>
void count(F f) {
  std::lock_guard<std::mutex> lk(g_mu);
  f(g_counters);
}

std::size_t dtype_bytes(DataType t) {
  switch (t) {
    case DataType::kFLOAT:
    case DataType::kINT32: return 4;
    case DataType::kHALF:
    case DataType::kBF16: return 2;
    case DataType::kINT64: return 8;
    default: return 1;
  }
}

std::string dims_text(const std::vector<std::int64_t>& d) {
  std::ostringstream o;
  o << "[";
  for (std::size_t i = 0; i < d.size(); ++i) o << (i ? "," : "") << d[i];
  o << "]";
  return o.str();
}

std::int64_t volume(const std::vector<std::int64_t>& d) {
  std::int64_t v = 1;
  for (auto x : d) v *= x;
  return v;
}

nvinfer1::Dims to_dims(const std::vector<std::int64_t>& v) {
  nvinfer1::Dims d{};
  d.nbDims = static_cast<std::int32_t>(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
  return d;
}

nvinfer1::Dims invalid_dims() {
  nvinfer1::Dims d{};
  d.nbDims = -1;
  return d;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  std::uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal
      int e = -1;
      std::uint32_t m = mant;
      do {
        ++e;
        m <<= 1;
      } while ((m & 0x400u) == 0);
      bits = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (m & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Bytes of one sample (all dimensions but the first) in `format`: vectorized formats pad the
// channel dimension (1) to their vector width.
std::size_t sample_bytes(const TensorSpec& t) {
  std::vector<std::int64_t> d(t.shape.begin() + 1, t.shape.end());
  int vec = 1;
  if (t.format == nvinfer1::TensorFormat::kCHW4) vec = 4;
  if (t.format == nvinfer1::TensorFormat::kCHW32) vec = 32;
  if (vec > 1 && !d.empty()) d[0] = (d[0] + vec - 1) / vec * vec;
  return static_cast<std::size_t>(volume(d)) * dtype_bytes(t.dtype);
}

std::int64_t first_value(const std::byte* p, DataType t) {
  switch (t) {
    case DataType::kFLOAT: {
      float f;
      std::memcpy(&f, p, sizeof f);
      return static_cast<std::int64_t>(f);
    }
    case DataType::kHALF: {
      std::uint16_t h;
      std::memcpy(&h, p, sizeof h);
      return static_cast<std::int64_t>(half_to_float(h));
    }
    case DataType::kINT32: {
      std::int32_t v;
      std::memcpy(&v, p, sizeof v);
      return v;
    }
    case DataType::kINT64: {
      std::int64_t v;
      std::memcpy(&v, p, sizeof v);
      return v;
    }
    case DataType::kINT8: return static_cast<std::int8_t>(p[0]);
    case DataType::kUINT8: return static_cast<std::uint8_t>(p[0]);
    default: return 0;
  }
}

void write_answer(std::byte* out, const TensorSpec& t, std::int64_t v) {
  const std::int64_t c = volume(std::vector<std::int64_t>(t.shape.begin() + 1, t.shape.end()));
  const std::int64_t hot = ((v % c) + c) % c;
  for (std::int64_t i = 0; i < c; ++i) {
    switch (t.dtype) {
      case DataType::kINT32: {
        const auto x = static_cast<std::int32_t>(c == 1 ? v : i == hot);
        std::memcpy(out + i * 4, &x, 4);
        break;
      }
      case DataType::kINT64: {
        const std::int64_t x = c == 1 ? v : i == hot;
        std::memcpy(out + i * 8, &x, 8);
        break;
      }
      case DataType::kFLOAT: {
        const float x = i == hot ? 1.0f : 0.0f;
        std::memcpy(out + i * 4, &x, 4);
        break;
      }
      case DataType::kHALF: {
        const std::uint16_t x = i == hot ? 0x3C00u : 0u;
        std::memcpy(out + i * 2, &x, 2);
        break;
      }
      default: out[i] = static_cast<std::byte>(i == hot);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- plan text

std::vector<char> serialize(const PlanSpec& plan) {
  std::ostringstream o;
  o << "FASTRES-TRT-DOUBLE 1\nname " << plan.name << "\n";
  for (const auto& t : plan.tensors) {
    o << "tensor " << (t.input ? "in" : "out") << " " << t.name << " " << static_cast<int>(t.dtype) << " "
      << static_cast<int>(t.format) << " " << t.shape.size();
    for (auto d : t.shape) o << " " << d;
    o << "\n";
  }
  for (const auto& p : plan.profiles) {
    o << "profile " << p.min.size();
    for (const auto* v : {&p.min, &p.opt, &p.max}) {
      for (auto d : *v) o << " " << d;
    }
    o << "\n";
  }
  o << "end\n";
  const std::string s = o.str();
  return std::vector<char>(s.begin(), s.end());
}

PlanSpec resnet_like(int profiles, std::int64_t max_batch, DataType dtype, std::vector<std::int64_t> sample) {
  PlanSpec plan;
  plan.name = "resnet-like";
  TensorSpec in{"input_tensor:0", true, dtype, nvinfer1::TensorFormat::kLINEAR, {-1}};
  in.shape.insert(in.shape.end(), sample.begin(), sample.end());
  plan.tensors.push_back(in);
  plan.tensors.push_back({"top1:0", false, DataType::kINT32, nvinfer1::TensorFormat::kLINEAR, {-1}});
  for (int p = 0; p < profiles; ++p) {
    ProfileSpec spec;
    spec.min = {1};
    spec.opt = {max_batch};
    spec.max = {max_batch};
    for (auto d : sample) {
      spec.min.push_back(d);
      spec.opt.push_back(d);
      spec.max.push_back(d);
    }
    plan.profiles.push_back(spec);
  }
  return plan;
}

namespace {

// Parses serialize()'s text; false (and why) on anything else.
bool parse(const char* data, std::size_t size, PlanSpec& plan, std::string& why) {
  std::istringstream in(std::string(data, size));
  std::string magic;
  int version = 0;
  if (!(in >> magic >> version) || magic != "FASTRES-TRT-DOUBLE" || version != 1) {
    why = "the blob is not a plan (magic tag mismatch)";
    return false;
  }
  std::string word;
  while (in >> word) {
    if (word == "end") {
      if (!plan.tensors.empty() && !plan.profiles.empty()) return true;
      why = "a plan without tensors or profiles";
      return false;
    }
    if (word == "name") {
      in >> plan.name;
    } else if (word == "tensor") {
      TensorSpec t;
      std::string mode;
      int dtype = 0, format = 0;
      std::size_t n = 0;
      if (!(in >> mode >> t.name >> dtype >> format >> n) || n > 8) break;
      t.input = mode == "in";
      t.dtype = static_cast<DataType>(dtype);
      t.format = static_cast<nvinfer1::TensorFormat>(format);
      t.shape.resize(n);
      for (auto& d : t.shape) in >> d;
      plan.tensors.push_back(t);
    } else if (word == "profile") {
      ProfileSpec p;
      std::size_t n = 0;
      if (!(in >> n) || n > 8) break;
      for (auto* v : {&p.min, &p.opt, &p.max}) {
        v->resize(n);
        for (auto& d : *v) in >> d;
      }
      plan.profiles.push_back(p);
    } else {
      break;
    }
  }
  why = "truncated or corrupt plan";
  return false;
}

}  // namespace
}  // namespace fastres::trt_double

// ---------------------------------------------------------------- the implementation objects

namespace nvinfer1::apiv {

using fastres::trt_double::PlanSpec;
using fastres::trt_double::TensorSpec;
using Severity = ILogger::Severity;

class VExecutionContext;

class VCudaEngine {
 public:
  VCudaEngine(PlanSpec plan, ILogger* logger, int device, std::uint64_t id)
      : plan(std::move(plan)), logger(logger), device(device), id(id) {}

  const TensorSpec* find(char const* name) const {
    if (name == nullptr) return nullptr;
    for (const auto& t : plan.tensors) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
  const TensorSpec& input() const {
    for (const auto& t : plan.tensors) {
      if (t.input) return t;
    }
    return plan.tensors.front();
  }
  void error(const std::string& where, const std::string& what) const {
    const std::string msg = where + ": Error Code 3: API Usage Error (" + what + ")";
    logger->log(Severity::kERROR, msg.c_str());
  }

  PlanSpec plan;
  ILogger* logger;
  int device;
  std::uint64_t id;
  // Which contexts have enqueued on each profile: two live ones on one profile are refused.
  std::mutex mu;
  std::map<int, std::set<const VExecutionContext*>> profile_users;
  std::vector<const VExecutionContext*> live;  // creation order
};

class VExecutionContext {
 public:
  explicit VExecutionContext(VCudaEngine& engine) : engine(engine) {}
  ~VExecutionContext() {
    std::lock_guard<std::mutex> lk(engine.mu);
    for (auto& kv : engine.profile_users) kv.second.erase(this);
    engine.live.erase(std::find(engine.live.begin(), engine.live.end(), this));
  }

  bool set_profile(int32_t index, cudaStream_t) {
    if (fastres::trt_double::injected("setOptimizationProfileAsync")) {
      engine.error("IExecutionContext::setOptimizationProfileAsync", "injected failure");
      return false;
    }
    if (index < 0 || index >= static_cast<int32_t>(engine.plan.profiles.size())) {
      engine.error("IExecutionContext::setOptimizationProfileAsync",
                   "Parameter check failed, condition: profileIndex >= 0 && profileIndex < getNbOptimizationProfiles(). "
                   "profileIndex = " + std::to_string(index) + ", profiles = " +
                       std::to_string(engine.plan.profiles.size()));
      return false;
    }
    {
      std::lock_guard<std::mutex> lk(engine.mu);
      for (auto& kv : engine.profile_users) kv.second.erase(this);
      profile = index;
    }
    shapes.clear();
    fastres::trt_double::count([](auto& c) { ++c.profile_switches; });
    return true;
  }

  bool set_shape(char const* name, Dims const& dims) {
    fastres::trt_double::count([](auto& c) { ++c.shape_calls; });
    const char* where = "IExecutionContext::setInputShape";
    if (fastres::trt_double::injected("setInputShape")) {
      engine.error(where, "injected failure");
      return false;
    }
    const TensorSpec* t = engine.find(name);
    if (t == nullptr || !t->input) {
      engine.error(where, std::string("Parameter check failed, condition: mEngine.tensorIsInput(tensorName). ") +
                              (name ? name : "(null)") + " is not an input tensor");
      return false;
    }
    if (dims.nbDims != static_cast<int32_t>(t->shape.size())) {
      engine.error(where, "Parameter check failed: the shape of " + t->name + " has " + std::to_string(dims.nbDims) +
                              " dimensions, the engine's " + std::to_string(t->shape.size()));
      return false;
    }
    const auto& p = engine.plan.profiles[static_cast<std::size_t>(profile)];
    std::vector<std::int64_t> given(dims.d, dims.d + dims.nbDims);
    for (std::size_t i = 0; i < given.size(); ++i) {
      const bool fixed = t->shape[i] != -1;
      if ((fixed && given[i] != t->shape[i]) || (!fixed && (given[i] < p.min[i] || given[i] > p.max[i]))) {
        engine.error(where, "Parameter check failed, condition: supplied dimension " + fastres::trt_double::dims_text(given) +
                                " for " + t->name + " exceeds the min ~ max range at index " + std::to_string(i) +
                                ", maximum dimension in profile " + std::to_string(profile) + " is " +
                                std::to_string(fixed ? t->shape[i] : p.max[i]) + ", minimum dimension in profile is " +
                                std::to_string(fixed ? t->shape[i] : p.min[i]) + ", but supplied dimension is " +
                                std::to_string(given[i]) + ".");
        return false;
      }
    }
    shapes[t->name] = given;
    return true;
  }

  bool set_address(char const* name, void* data) {
    fastres::trt_double::count([](auto& c) { ++c.address_calls; });
    const char* where = "IExecutionContext::setTensorAddress";
    if (fastres::trt_double::injected("setTensorAddress")) {
      engine.error(where, "injected failure");
      return false;
    }
    const TensorSpec* t = engine.find(name);
    if (t == nullptr) {
      engine.error(where, std::string("Given invalid tensor name: ") + (name ? name : "(null)"));
      return false;
    }
    if (data == nullptr) {
      engine.error(where, "Parameter check failed, condition: data != nullptr. address of " + t->name + " is null");
      return false;
    }
    addresses[t->name] = data;
    return true;
  }

  bool enqueue(cudaStream_t stream) {
    const char* where = "IExecutionContext::enqueueV3";
    if (fastres::trt_double::injected("enqueueV3")) {
      engine.error(where, "injected failure");
      return false;
    }
    std::vector<std::int64_t> in_shape;
    for (const auto& t : engine.plan.tensors) {
      if (t.input) {
        auto it = shapes.find(t.name);
        if (it == shapes.end()) {
          engine.error(where, "Parameter check failed, condition: allInputShapesSpecified(). the shape of input " +
                                  t.name + " is not set (setInputShape)");
          return false;
        }
        in_shape = it->second;
      }
      if (addresses.find(t.name) == addresses.end()) {
        engine.error(where, "Parameter check failed: the address of " + t.name + " is not set (setTensorAddress)");
        return false;
      }
    }
    int current = -1;
    if (cudaGetDevice(&current) != cudaSuccess || current != engine.device) {
      engine.error(where, "the engine was deserialized on device " + std::to_string(engine.device) +
                              " but device " + std::to_string(current) + " is current");
      return false;
    }
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
      engine.error(where, "cudaStreamIsCapturing failed on the given stream");
      return false;
    }
    const bool capturing = capture == cudaStreamCaptureStatusActive;
    if (capturing && in_shape != last_direct_shape) {
      engine.error(where, "enqueueV3 is being captured with input shape " + fastres::trt_double::dims_text(in_shape) +
                              " but the last enqueueV3 outside a capture ran " + fastres::trt_double::dims_text(last_direct_shape) +
                              "; call enqueueV3 once without capture after changing shapes");
      return false;
    }
    {
      std::lock_guard<std::mutex> lk(engine.mu);
      auto& users = engine.profile_users[profile];
      for (const auto* other : users) {
        if (other != this) {
          engine.error(where, "optimization profile " + std::to_string(profile) +
                                  " is already used by another execution context of this engine; contexts that run "
                                  "concurrently need distinct profiles");
          return false;
        }
      }
      users.insert(this);
    }
    // The kernel: everything it needs copied in, so a graph replays this enqueue's bindings.
    const std::int64_t n = in_shape.empty() ? 0 : in_shape[0];
    struct Binding {
      TensorSpec spec;
      std::byte* data;
      std::size_t bytes;
    };
    std::vector<Binding> bindings;
    for (const auto& t : engine.plan.tensors) {
      const std::size_t per = fastres::trt_double::sample_bytes(t);
      bindings.push_back({t, static_cast<std::byte*>(addresses[t.name]),
                          fastres::fake_cuda::bytes_of(static_cast<std::size_t>(n), per)});
    }
    const cudaError_t e = fastres::fake_cuda::launch_kernel(
        "tensorrt_double_enqueueV3", stream, [bindings, n](const fastres::fake_cuda::KernelMemory& mem) {
          const Binding* input = nullptr;
          for (const auto& b : bindings) {
            mem.require(b.data, b.bytes);
            if (b.spec.input) input = &b;
          }
          const std::size_t in_per = fastres::trt_double::sample_bytes(input->spec);
          for (std::int64_t s = 0; s < n; ++s) {
            const std::int64_t v = fastres::trt_double::first_value(input->data + s * in_per, input->spec.dtype);
            for (const auto& b : bindings) {
              if (!b.spec.input) {
                fastres::trt_double::write_answer(b.data + s * fastres::trt_double::sample_bytes(b.spec), b.spec, v);
              }
            }
          }
          fastres::trt_double::g_batches_run.fetch_add(1);
          fastres::trt_double::g_samples_run.fetch_add(static_cast<std::uint64_t>(n));
        });
    if (e != cudaSuccess) {
      cudaGetLastError();
      engine.error(where, std::string("kernel launch failed: ") + cudaGetErrorName(e));
      return false;
    }
    if (!capturing) last_direct_shape = in_shape;
    ++enqueues;
    fastres::trt_double::count([capturing](auto& c) {
      ++c.enqueues;
      if (capturing) ++c.captured_enqueues;
    });
    return true;
  }

  VCudaEngine& engine;
  int profile = 0;
  std::uint64_t enqueues = 0;
  std::map<std::string, std::vector<std::int64_t>> shapes;
  std::map<std::string, void*> addresses;
  std::vector<std::int64_t> last_direct_shape;
};

class VRuntime {
 public:
  explicit VRuntime(ILogger* logger) : logger(logger) {}
  ILogger* logger;
};

}  // namespace nvinfer1::apiv

namespace fastres::trt_double {
namespace {

using namespace nvinfer1;

std::atomic<std::uint64_t> g_next_engine{1};

class ContextObject final : public IExecutionContext {
 public:
  explicit ContextObject(apiv::VCudaEngine& engine) : impl_(engine) {
    mImpl = &impl_;
    std::lock_guard<std::mutex> lk(engine.mu);
    engine.live.push_back(&impl_);
  }
  ~ContextObject() noexcept override { count([](auto& c) { --c.live_contexts; }); }

 private:
  apiv::VExecutionContext impl_;
};

class EngineObject final : public ICudaEngine {
 public:
  EngineObject(PlanSpec plan, ILogger* logger, int device)
      : impl_(std::move(plan), logger, device, g_next_engine.fetch_add(1)) {
    mImpl = &impl_;
  }
  ~EngineObject() noexcept override;
  apiv::VCudaEngine* impl() noexcept { return &impl_; }

 private:
  apiv::VCudaEngine impl_;
};

class RuntimeObject final : public IRuntime {
 public:
  explicit RuntimeObject(ILogger* logger) : impl_(logger) { mImpl = &impl_; }

 private:
  apiv::VRuntime impl_;
};

std::mutex g_registry_mu;
std::vector<const apiv::VCudaEngine*> g_engines;  // live engines, for contexts()

EngineObject::~EngineObject() noexcept {
  {
    std::lock_guard<std::mutex> lk(g_registry_mu);
    g_engines.erase(std::remove(g_engines.begin(), g_engines.end(), &impl_), g_engines.end());
  }
  count([](auto& c) { --c.live_engines; });
}

}  // namespace

void reset() {
  std::lock_guard<std::mutex> lk(g_mu);
  g_fail.clear();
  const std::size_t engines = g_counters.live_engines, contexts = g_counters.live_contexts;
  g_counters = Counters{};
  g_counters.live_engines = engines;
  g_counters.live_contexts = contexts;
  g_batches_run = 0;
  g_samples_run = 0;
}

void fail_next(const std::string& method, int count_) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_fail[method] = count_;
}

Counters counters() {
  std::lock_guard<std::mutex> lk(g_mu);
  Counters c = g_counters;
  c.batches_run = g_batches_run.load();
  c.samples_run = g_samples_run.load();
  return c;
}

std::vector<ContextInfo> contexts() {
  std::vector<ContextInfo> out;
  std::lock_guard<std::mutex> lk(g_registry_mu);
  for (const auto* e : g_engines) {
    auto& engine = const_cast<apiv::VCudaEngine&>(*e);
    std::lock_guard<std::mutex> elk(engine.mu);
    for (const auto* ctx : engine.live) out.push_back({engine.id, engine.device, ctx->profile, ctx->enqueues});
  }
  return out;
}

}  // namespace fastres::trt_double

// ---------------------------------------------------------------- the public classes

namespace nvinfer1 {

using fastres::trt_double::count;

IExecutionContext::~IExecutionContext() noexcept = default;

bool IExecutionContext::setOptimizationProfileAsync(int32_t profileIndex, cudaStream_t stream) noexcept {
  return mImpl->set_profile(profileIndex, stream);
}
int32_t IExecutionContext::getOptimizationProfile() const noexcept { return mImpl->profile; }
bool IExecutionContext::setInputShape(char const* tensorName, Dims const& dims) noexcept {
  return mImpl->set_shape(tensorName, dims);
}
bool IExecutionContext::setTensorAddress(char const* tensorName, void* data) noexcept {
  return mImpl->set_address(tensorName, data);
}
bool IExecutionContext::enqueueV3(cudaStream_t stream) noexcept { return mImpl->enqueue(stream); }

ICudaEngine::~ICudaEngine() noexcept = default;

Dims ICudaEngine::getTensorShape(char const* tensorName) const noexcept {
  const auto* t = mImpl->find(tensorName);
  return t ? fastres::trt_double::to_dims(t->shape) : fastres::trt_double::invalid_dims();
}
DataType ICudaEngine::getTensorDataType(char const* tensorName) const noexcept {
  const auto* t = mImpl->find(tensorName);
  return t ? t->dtype : DataType::kFLOAT;
}
TensorIOMode ICudaEngine::getTensorIOMode(char const* tensorName) const noexcept {
  const auto* t = mImpl->find(tensorName);
  return t ? (t->input ? TensorIOMode::kINPUT : TensorIOMode::kOUTPUT) : TensorIOMode::kNONE;
}
TensorFormat ICudaEngine::getTensorFormat(char const* tensorName) const noexcept {
  const auto* t = mImpl->find(tensorName);
  return t ? t->format : TensorFormat::kLINEAR;
}
int32_t ICudaEngine::getNbIOTensors() const noexcept { return static_cast<int32_t>(mImpl->plan.tensors.size()); }
char const* ICudaEngine::getIOTensorName(int32_t index) const noexcept {
  if (index < 0 || index >= getNbIOTensors()) return nullptr;
  return mImpl->plan.tensors[static_cast<std::size_t>(index)].name.c_str();
}
int32_t ICudaEngine::getNbOptimizationProfiles() const noexcept {
  return static_cast<int32_t>(mImpl->plan.profiles.size());
}
Dims ICudaEngine::getProfileShape(char const* tensorName, int32_t profileIndex, OptProfileSelector select) const noexcept {
  const auto* t = mImpl->find(tensorName);
  if (t == nullptr || !t->input || profileIndex < 0 || profileIndex >= getNbOptimizationProfiles()) {
    mImpl->error("ICudaEngine::getProfileShape", "invalid tensor name or profile index");
    return fastres::trt_double::invalid_dims();
  }
  const auto& p = mImpl->plan.profiles[static_cast<std::size_t>(profileIndex)];
  const auto& v = select == OptProfileSelector::kMIN ? p.min : select == OptProfileSelector::kOPT ? p.opt : p.max;
  return fastres::trt_double::to_dims(v);
}
IExecutionContext* ICudaEngine::createExecutionContext(ExecutionContextAllocationStrategy) noexcept {
  if (fastres::trt_double::injected("createExecutionContext")) {
    mImpl->logger->log(ILogger::Severity::kERROR,
                       "ICudaEngine::createExecutionContext: Error Code 2: OutOfMemory (injected failure)");
    return nullptr;
  }
  count([](auto& c) {
    ++c.contexts_created;
    ++c.live_contexts;
  });
  return new fastres::trt_double::ContextObject(*mImpl);
}
char const* ICudaEngine::getName() const noexcept { return mImpl->plan.name.c_str(); }

IRuntime::~IRuntime() noexcept = default;

ICudaEngine* IRuntime::deserializeCudaEngine(void const* blob, std::size_t size) noexcept {
  ILogger* logger = mImpl->logger;
  if (fastres::trt_double::injected("deserializeCudaEngine")) {
    logger->log(ILogger::Severity::kERROR, "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (injected failure)");
    return nullptr;
  }
  fastres::trt_double::PlanSpec plan;
  std::string why;
  if (blob == nullptr || !fastres::trt_double::parse(static_cast<const char*>(blob), size, plan, why)) {
    const std::string msg = "IRuntime::deserializeCudaEngine: Error Code 1: Serialization (Serialization assertion "
                            "failed: " + (blob ? why : std::string("blob is null")) + ")";
    logger->log(ILogger::Severity::kERROR, msg.c_str());
    return nullptr;
  }
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) {
    logger->log(ILogger::Severity::kERROR, "IRuntime::deserializeCudaEngine: Error Code 6: no CUDA device");
    return nullptr;
  }
  const std::string info = "Loaded engine size: " + std::to_string(size) + " bytes (" + plan.name + ")";
  logger->log(ILogger::Severity::kINFO, info.c_str());
  auto* engine = new fastres::trt_double::EngineObject(std::move(plan), logger, device);
  {
    std::lock_guard<std::mutex> lk(fastres::trt_double::g_registry_mu);
    fastres::trt_double::g_engines.push_back(engine->impl());
  }
  count([](auto& c) {
    ++c.deserializations;
    ++c.live_engines;
  });
  return engine;
}

}  // namespace nvinfer1

extern "C" void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept {
  auto* log = static_cast<nvinfer1::ILogger*>(logger);
  if (fastres::trt_double::injected("createInferRuntime")) {
    log->log(nvinfer1::ILogger::Severity::kERROR, "createInferRuntime: Error Code 6: injected failure");
    return nullptr;
  }
  if (version != NV_TENSORRT_VERSION) {
    log->log(nvinfer1::ILogger::Severity::kERROR, "createInferRuntime: the headers' version does not match the library");
    return nullptr;
  }
  fastres::trt_double::count([](auto& c) { ++c.runtimes; });
  return static_cast<nvinfer1::IRuntime*>(new fastres::trt_double::RuntimeObject(log));
}

extern "C" int32_t getInferLibVersion() noexcept { return NV_TENSORRT_VERSION; }
