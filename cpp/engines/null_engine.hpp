// NullEngine: runs no model. It measures what the harness itself costs (LoadGen's null SUT, one
// level down), and with Answer::kIndex it answers each sample with its own QSL index, so tests
// can check that every response travels with its own sample through batching and completion.
#pragma once

#include <cstdint>
#include <string>

#include "fastres/engine.hpp"

namespace fastres {

class NullEngine final : public Engine {
 public:
  enum class Answer {
    kNone,      // writes nothing: the output keeps whatever the slot buffer held
    kConstant,  // writes `constant` as every sample's int32 answer
    kIndex,     // writes each sample's QSL index (truncated to int32) as its answer
  };

  // io: any valid IO (validate(io) is applied); kConstant/kIndex need io.output_bytes >= 4.
  // Throws InvalidArgument otherwise.
  explicit NullEngine(EngineIO io, Answer answer = Answer::kNone, std::int32_t constant = 0);

  const EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "null"; }
  // Thread-safe (stateless); never blocks.
  void enqueue(const Batch& batch, StreamContext& stream) override;

  Answer answer() const noexcept { return answer_; }

 private:
  EngineIO io_;
  Answer answer_;
  std::int32_t constant_;
};

// "none" | "constant" | "index"; parse throws InvalidArgument naming the accepted values.
const char* answer_name(NullEngine::Answer answer) noexcept;
NullEngine::Answer parse_answer(const std::string& name);

}  // namespace fastres
