#include "engines/timed_engine.hpp"

#include <cuda_runtime_api.h>

#include <string>

#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

namespace fastres {

TimedEngine::TimedEngine(EngineIO io, std::uint64_t batch_ns, std::uint64_t sample_ns)
    : io_(std::move(io)), batch_ns_(batch_ns), sample_ns_(sample_ns) {
  io_.device = Device::kCuda;
  io_.graph_capturable = true;
  io_.output_bytes = sizeof(std::int32_t);
  validate(io_, "TimedEngine");
  if (io_.input_bytes() < 4) {
    throw InvalidArgument("TimedEngine: samples of " + std::to_string(io_.input_bytes()) +
                          " bytes; need at least 4 (each answer is read from its sample's first 4 bytes)");
  }
  constexpr std::uint64_t kMaxNs = 60ull * 1'000'000'000ull;  // a minute a batch is already absurd
  if (batch_ns_ > kMaxNs || sample_ns_ > kMaxNs / (io_.max_batch ? io_.max_batch : 1)) {
    throw InvalidArgument("TimedEngine: batch_ns=" + std::to_string(batch_ns_) + ", sample_ns=" +
                          std::to_string(sample_ns_) + ": a batch would take over a minute; use smaller times");
  }
}

void TimedEngine::enqueue(const Batch& batch, StreamContext& stream) {
  kernels::timed_answer(reinterpret_cast<std::int32_t*>(batch.output), batch.input, io_.input_bytes(), batch.size,
                        batch_time_ns(batch.size), stream.stream);
}

}  // namespace fastres
