#include "fastres/engine.hpp"

#include <string>

#include "fastres/status.hpp"

namespace fastres {

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kFloat32, "float32", 4}, {DType::kFloat16, "float16", 2}, {DType::kInt8, "int8", 1},
    {DType::kUInt8, "uint8", 1},     {DType::kInt32, "int32", 4},     {DType::kInt64, "int64", 8},
};

const DTypeInfo& info(DType dtype) noexcept {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d;
  }
  return kDTypes[0];  // unreachable for valid enumerators
}

}  // namespace

std::size_t dtype_size(DType dtype) noexcept { return info(dtype).size; }

const char* dtype_name(DType dtype) noexcept { return info(dtype).name; }

DType parse_dtype(const std::string& name) {
  for (const auto& d : kDTypes) {
    if (name == d.name) return d.dtype;
  }
  std::string names;
  for (const auto& d : kDTypes) names += std::string(names.empty() ? "" : ", ") + d.name;
  throw InvalidArgument("dtype '" + name + "': expected one of " + names);
}

const char* device_name(Device device) noexcept { return device == Device::kCuda ? "cuda" : "cpu"; }

std::size_t EngineIO::input_bytes() const noexcept {
  std::size_t elements = 1;
  for (const auto d : input_shape) elements *= d > 0 ? static_cast<std::size_t>(d) : 0;
  return elements * dtype_size(input_dtype);
}

void validate(const EngineIO& io, const std::string& who) {
  if (io.max_batch == 0) throw InvalidArgument(who + ": max_batch=0: must be >= 1");
  for (std::size_t i = 0; i < io.input_shape.size(); ++i) {
    if (io.input_shape[i] <= 0) {
      throw InvalidArgument(who + ": input_shape[" + std::to_string(i) + "]=" + std::to_string(io.input_shape[i]) +
                            ": every dimension must be >= 1");
    }
  }
  if (io.output_bytes == 0) throw InvalidArgument(who + ": output_bytes=0: must be >= 1 (an int32 label is 4)");
}

}  // namespace fastres
