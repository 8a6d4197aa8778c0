// TimedEngine: a CUDA engine with a known cost and checkable answers. Built only with
// FASTRES_WITH_CUDA (it launches the timed_answer kernel).
//
// Each batch of n samples is one kernel on the slot's inference stream that spins for
// batch_ns + n * sample_ns nanoseconds, then answers sample i with the int32 in its first 4 bytes
// (store each sample's QSL index there). It measures the executor's pipeline against an exact
// ideal (with one inference stream per device, n / (batch_ns + n * sample_ns) samples/s per
// stream), and proves on the GPU that every answer travels with its own sample through the
// copies, the gather and the completion. Its enqueue is graph-capturable.
#pragma once

#include <cstdint>
#include <string>

#include "fastres/engine.hpp"

namespace fastres {

class TimedEngine final : public Engine {
 public:
  // io: any valid IO with input_bytes() >= 4; device and graph_capturable are set here, and
  // output_bytes is 4. Throws InvalidArgument otherwise.
  TimedEngine(EngineIO io, std::uint64_t batch_ns, std::uint64_t sample_ns);

  const EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "timed"; }
  // Enqueues the kernel on stream.stream; thread-safe (stateless).
  void enqueue(const Batch& batch, StreamContext& stream) override;

  std::uint64_t batch_ns() const noexcept { return batch_ns_; }
  std::uint64_t sample_ns() const noexcept { return sample_ns_; }
  // The time one batch of n samples takes on the device.
  std::uint64_t batch_time_ns(std::size_t n) const noexcept { return batch_ns_ + sample_ns_ * n; }

 private:
  EngineIO io_;
  std::uint64_t batch_ns_;
  std::uint64_t sample_ns_;
};

}  // namespace fastres
