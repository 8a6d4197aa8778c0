// Embeds fastres's native executor without LoadGen: a SampleLibrary of synthetic samples, a
// custom Engine, a CompletionSink that records every answer, queries submitted from two threads.
// Checks that every sample is completed exactly once with the answer computed directly, then
// runs the same queries through the bundled NullEngine (index-echo mode).
// Exit status: 0 when every answer is right, 1 on any mismatch, 2 when fastres throws.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fastres/engine.hpp"
#include "fastres/engines/null_engine.hpp"
#include "fastres/executor.hpp"
#include "fastres/sample_library.hpp"
#include "fastres/status.hpp"

namespace {

constexpr std::uint64_t kSamples = 300;     // QSL indices [0, kSamples)
constexpr std::uint64_t kRounds = 2;        // each sample is queried this many times
constexpr std::uint64_t kFirstId = 100000;  // response ids differ from indices on purpose

fastres::EngineIO uint8_image_io() {
  fastres::EngineIO io;
  io.input_dtype = fastres::DType::kUInt8;
  io.input_shape = {3, 8, 8};  // a tiny CHW image; output: one int32 label per sample
  io.max_batch = 16;
  return io;
}

// Sample `index`, byte b: a fixed hash, so the expected answer can be recomputed here.
std::uint8_t sample_byte(std::uint64_t index, std::size_t b) {
  return static_cast<std::uint8_t>((index * 2654435761u + b * 40503u) >> 7);
}

// What ByteSumEngine answers for `index`, computed without the executor.
std::int32_t byte_sum_label(std::uint64_t index, std::size_t sample_bytes) {
  std::uint64_t sum = 0;
  for (std::size_t b = 0; b < sample_bytes; ++b) sum += sample_byte(index, b);
  return static_cast<std::int32_t>(sum % 1000);
}

// The "model": the sum of a sample's bytes mod 1000 is its label. Stateless, so concurrent
// enqueue() calls from different stream slots are safe.
class ByteSumEngine final : public fastres::Engine {
 public:
  const fastres::EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "byte-sum"; }
  void enqueue(const fastres::Batch& batch, fastres::StreamContext&) override {
    const std::size_t in_bytes = io_.input_bytes();
    for (std::size_t i = 0; i < batch.size; ++i) {
      const std::byte* in = batch.input + i * in_bytes;
      std::uint64_t sum = 0;
      for (std::size_t b = 0; b < in_bytes; ++b) sum += std::to_integer<std::uint8_t>(in[b]);
      const auto label = static_cast<std::int32_t>(sum % 1000);
      std::memcpy(batch.output + i * io_.output_bytes, &label, sizeof label);
    }
  }

 private:
  fastres::EngineIO io_ = uint8_image_io();
};

// Records each response id's answer and how often it was completed. complete() runs on the
// executor's completion threads (two here), hence the mutex.
class RecordingSink final : public fastres::CompletionSink {
 public:
  explicit RecordingSink(std::size_t ids) : label_(ids, -1), times_(ids, 0) {}
  void complete(const fastres::CompletedBatch& batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (batch.error != nullptr) ++failed_;
    for (std::size_t i = 0; i < batch.size; ++i) {
      const std::uint64_t slot = batch.ids[i] - kFirstId;
      std::int32_t label;
      std::memcpy(&label, batch.responses + i * batch.response_bytes, sizeof label);
      label_.at(slot) = label;
      ++times_.at(slot);
    }
  }
  // Called after stop(): no completion thread runs any more.
  std::int32_t label(std::size_t slot) const { return label_[slot]; }
  int times(std::size_t slot) const { return times_[slot]; }
  std::size_t failed_batches() const { return failed_; }

 private:
  std::mutex mu_;
  std::vector<std::int32_t> label_;
  std::vector<int> times_;
  std::size_t failed_ = 0;
};

// Runs every (id, index) query through `engine`, checks the answers against `expected`, prints
// one line. Returns the number of problems found.
int run(const char* what, std::shared_ptr<fastres::Engine> engine,
        std::shared_ptr<const fastres::SampleLibrary> library,
        const std::function<std::int32_t(std::uint64_t index)>& expected) {
  const std::size_t total = kSamples * kRounds;
  auto sink = std::make_shared<RecordingSink>(total);

  fastres::ExecutorConfig config;
  config.batch_size = 8;
  config.copy_streams = 2;
  config.complete_threads = 2;
  config.batch_timeout_us = 500;
  fastres::Executor executor(engine, library, config, sink);

  // Query k asks for sample k % kSamples under response id kFirstId + k. Two threads submit
  // alternating queries of 1..5 samples each, as LoadGen's IssueQuery would.
  auto submitter = [&](std::size_t parity) {
    std::size_t k = 0, query = 0;
    while (k < total) {
      const std::size_t n = std::min<std::size_t>(1 + query % 5, total - k);
      if (query++ % 2 == parity) {
        std::vector<std::uint64_t> ids, indices;
        for (std::size_t j = k; j < k + n; ++j) {
          ids.push_back(kFirstId + j);
          indices.push_back(j % kSamples);
        }
        executor.submit(ids, indices);
      }
      k += n;
    }
  };
  std::thread a(submitter, 0), b(submitter, 1);
  a.join();
  b.join();
  executor.flush();  // issues the partial batches, waits for every sample submitted above
  executor.stop();   // joins the executor's threads; throws if batches failed

  int problems = 0;
  for (std::size_t k = 0; k < total; ++k) {
    const std::uint64_t index = k % kSamples;
    if (sink->times(k) != 1 || sink->label(k) != expected(index)) {
      if (++problems <= 5) {
        std::fprintf(stderr, "embed: %s: id %llu (index %llu) completed %d times, label %d, expected %d\n",
                     what, static_cast<unsigned long long>(kFirstId + k),
                     static_cast<unsigned long long>(index), sink->times(k), sink->label(k),
                     expected(index));
      }
    }
  }
  const fastres::ExecutorStats stats = executor.stats();
  if (stats.completed != total || sink->failed_batches() != 0) ++problems;
  std::printf("embed: %s engine: %llu samples completed, %llu batches, mean batch size %.2f, "
              "%llu bound without a copy, %d mismatches\n",
              engine->name().c_str(), static_cast<unsigned long long>(stats.completed),
              static_cast<unsigned long long>(stats.batches), stats.mean_batch_size,
              static_cast<unsigned long long>(stats.bound_batches), problems);
  return problems;
}

}  // namespace

int main() {
  try {
    const fastres::EngineIO io = uint8_image_io();
    const std::size_t sample_bytes = io.input_bytes();

    // LoadSamplesToRam's equivalent: the library copies each sample into memory it owns.
    auto library = std::make_shared<fastres::SampleLibrary>(sample_bytes);
    std::vector<std::uint64_t> indices(kSamples);
    for (std::uint64_t i = 0; i < kSamples; ++i) indices[i] = i;
    library->load(indices, [&](std::uint64_t index, std::byte* dst) {
      for (std::size_t b = 0; b < sample_bytes; ++b) dst[b] = std::byte{sample_byte(index, b)};
    });

    int problems = run("byte-sum", std::make_shared<ByteSumEngine>(), library,
                       [&](std::uint64_t index) { return byte_sum_label(index, sample_bytes); });
    problems += run("null", std::make_shared<fastres::NullEngine>(io, fastres::NullEngine::Answer::kIndex),
                    library, [](std::uint64_t index) { return static_cast<std::int32_t>(index); });
    if (problems != 0) {
      std::fprintf(stderr, "embed: FAILED: %d mismatches\n", problems);
      return 1;
    }
    std::printf("embed: OK: every sample completed exactly once with the right answer\n");
    return 0;
  } catch (const fastres::Error& e) {
    std::fprintf(stderr, "embed: fastres error: %s\n", e.what());
    return 2;
  }
}
