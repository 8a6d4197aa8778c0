// fastres's TensorRT test double: the runtime subset of TensorRT's NvInferRuntime.h that
// cpp/engines/tensorrt_engine.cpp calls, declared as TensorRT 10.x declares it (names,
// parameter types, const and noexcept; the classes forward to an implementation object, as
// TensorRT's forward to mImpl). Implemented on the CPU in tests/tensorrt_double/tensorrt_double.cpp.
#ifndef NV_INFER_RUNTIME_H
#define NV_INFER_RUNTIME_H

#include "NvInferRuntimeBase.h"

namespace nvinfer1 {

class IExecutionContext;
class ICudaEngine;
class IRuntime;

namespace apiv {
class VExecutionContext;
class VCudaEngine;
class VRuntime;
}  // namespace apiv

enum class TensorIOMode : int32_t {
  kNONE = 0,
  kINPUT = 1,
  kOUTPUT = 2,
};

enum class OptProfileSelector : int32_t {
  kMIN = 0,
  kOPT = 1,
  kMAX = 2,
};

enum class ExecutionContextAllocationStrategy : int32_t {
  kSTATIC = 0,
  kON_PROFILE_CHANGE = 1,
  kUSER_MANAGED = 2,
};

class INoCopy {
 protected:
  INoCopy() = default;
  virtual ~INoCopy() = default;
  INoCopy(INoCopy const& other) = delete;
  INoCopy& operator=(INoCopy const& other) = delete;
  INoCopy(INoCopy&& other) = delete;
  INoCopy& operator=(INoCopy&& other) = delete;
};

class IExecutionContext : public INoCopy {
 public:
  virtual ~IExecutionContext() noexcept;
  bool setOptimizationProfileAsync(int32_t profileIndex, cudaStream_t stream) noexcept;
  int32_t getOptimizationProfile() const noexcept;
  bool setInputShape(char const* tensorName, Dims const& dims) noexcept;
  bool setTensorAddress(char const* tensorName, void* data) noexcept;
  bool enqueueV3(cudaStream_t stream) noexcept;

 protected:
  apiv::VExecutionContext* mImpl = nullptr;
};

class ICudaEngine : public INoCopy {
 public:
  virtual ~ICudaEngine() noexcept;
  Dims getTensorShape(char const* tensorName) const noexcept;
  DataType getTensorDataType(char const* tensorName) const noexcept;
  TensorIOMode getTensorIOMode(char const* tensorName) const noexcept;
  TensorFormat getTensorFormat(char const* tensorName) const noexcept;
  int32_t getNbIOTensors() const noexcept;
  char const* getIOTensorName(int32_t index) const noexcept;
  int32_t getNbOptimizationProfiles() const noexcept;
  Dims getProfileShape(char const* tensorName, int32_t profileIndex, OptProfileSelector select) const noexcept;
  IExecutionContext* createExecutionContext(
      ExecutionContextAllocationStrategy strategy = ExecutionContextAllocationStrategy::kSTATIC) noexcept;
  char const* getName() const noexcept;

 protected:
  apiv::VCudaEngine* mImpl = nullptr;
};

class IRuntime : public INoCopy {
 public:
  virtual ~IRuntime() noexcept;
  ICudaEngine* deserializeCudaEngine(void const* blob, std::size_t size) noexcept;

 protected:
  apiv::VRuntime* mImpl = nullptr;
};

}  // namespace nvinfer1

extern "C" void* createInferRuntime_INTERNAL(void* logger, int32_t version) noexcept;
extern "C" int32_t getInferLibVersion() noexcept;

namespace nvinfer1 {
namespace {
inline IRuntime* createInferRuntime(ILogger& logger) noexcept {
  return static_cast<IRuntime*>(createInferRuntime_INTERNAL(&logger, NV_TENSORRT_VERSION));
}
}  // namespace
}  // namespace nvinfer1

#endif  // NV_INFER_RUNTIME_H
