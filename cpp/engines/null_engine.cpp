#include "engines/null_engine.hpp"

#include <cstring>
#include <utility>

#include "fastres/status.hpp"

namespace fastres {

NullEngine::NullEngine(EngineIO io, Answer answer, std::int32_t constant)
    : io_(std::move(io)), answer_(answer), constant_(constant) {
  validate(io_, "NullEngine");
  if (answer_ != Answer::kNone && io_.output_bytes < sizeof(std::int32_t)) {
    throw InvalidArgument("NullEngine answer='" + std::string(answer_name(answer_)) +
                          "' writes an int32 per sample: output_bytes=" + std::to_string(io_.output_bytes) +
                          " must be >= 4");
  }
}

void NullEngine::enqueue(const Batch& batch, StreamContext&) {
  if (answer_ == Answer::kNone) return;
  for (std::size_t i = 0; i < batch.size; ++i) {
    const std::int32_t value = answer_ == Answer::kIndex ? static_cast<std::int32_t>(batch.indices[i]) : constant_;
    std::memcpy(batch.output + i * io_.output_bytes, &value, sizeof value);
  }
}

const char* answer_name(NullEngine::Answer answer) noexcept {
  switch (answer) {
    case NullEngine::Answer::kConstant: return "constant";
    case NullEngine::Answer::kIndex: return "index";
    case NullEngine::Answer::kNone: break;
  }
  return "none";
}

NullEngine::Answer parse_answer(const std::string& name) {
  if (name == "none") return NullEngine::Answer::kNone;
  if (name == "constant") return NullEngine::Answer::kConstant;
  if (name == "index") return NullEngine::Answer::kIndex;
  throw InvalidArgument("NullEngine answer='" + name + "': expected 'none', 'constant' or 'index'");
}

}  // namespace fastres
