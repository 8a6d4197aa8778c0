// Engines and sinks shared by the executor tests.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fastres/engine.hpp"
#include "fastres/executor.hpp"
#include "fastres/sample_library.hpp"
#include "fastres/status.hpp"

namespace testing {

// Per-sample input: kWords int32 values {index, index+1, ...}.
constexpr std::int64_t kWords = 4;

inline fastres::EngineIO echo_io(std::size_t max_batch = 256) {
  fastres::EngineIO io;
  io.input_dtype = fastres::DType::kInt32;
  io.input_shape = {kWords};
  io.max_batch = max_batch;
  return io;
}

// A library holding indices [0, n), each sample filled with {index, index+1, ...}.
inline std::shared_ptr<fastres::SampleLibrary> make_library(std::size_t n) {
  auto lib = std::make_shared<fastres::SampleLibrary>(kWords * sizeof(std::int32_t));
  std::vector<std::uint64_t> indices(n);
  for (std::size_t i = 0; i < n; ++i) indices[i] = i;
  lib->load(indices, [](std::uint64_t index, std::byte* dst) {
    for (std::int64_t w = 0; w < kWords; ++w) {
      const auto v = static_cast<std::int32_t>(index + static_cast<std::uint64_t>(w));
      std::memcpy(dst + w * sizeof v, &v, sizeof v);
    }
  });
  return lib;
}

// Answers each sample with the first word of its INPUT (so the gather is checked too), or -2
// when the sample's words are not what make_library wrote. Optionally sleeps per batch, and
// throws on batches holding an index divisible by fail_every.
class EchoInputEngine final : public fastres::Engine {
 public:
  explicit EchoInputEngine(std::size_t max_batch = 256, std::chrono::microseconds delay = {},
                           std::uint64_t fail_every = 0)
      : io_(echo_io(max_batch)), delay_(delay), fail_every_(fail_every) {}
  const fastres::EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "echo-input"; }
  void enqueue(const fastres::Batch& batch, fastres::StreamContext&) override {
    if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
    for (std::size_t i = 0; i < batch.size; ++i) {
      if (fail_every_ != 0 && batch.indices[i] % fail_every_ == 0) {
        throw fastres::EngineError("index " + std::to_string(batch.indices[i]) + " is cursed");
      }
    }
    for (std::size_t i = 0; i < batch.size; ++i) {
      std::int32_t words[kWords];
      std::memcpy(words, batch.input + i * sizeof words, sizeof words);
      bool ok = true;
      for (std::int64_t w = 1; w < kWords; ++w) ok = ok && words[w] == words[0] + w;
      const std::int32_t answer = ok ? words[0] : -2;
      std::memcpy(batch.output + i * sizeof answer, &answer, sizeof answer);
    }
  }

 private:
  fastres::EngineIO io_;
  std::chrono::microseconds delay_;
  std::uint64_t fail_every_;
};

// Echoes like EchoInputEngine, but a batch holding QSL index `hang_index` blocks inside
// enqueue() until release() (a hung engine call, for the watchdog tests).
class HangingEngine final : public fastres::Engine {
 public:
  explicit HangingEngine(std::uint64_t hang_index) : io_(echo_io()), hang_index_(hang_index) {}
  const fastres::EngineIO& io() const noexcept override { return io_; }
  std::string name() const override { return "hanging"; }
  void enqueue(const fastres::Batch& batch, fastres::StreamContext&) override {
    for (std::size_t i = 0; i < batch.size; ++i) {
      if (batch.indices[i] == hang_index_) {
        std::unique_lock<std::mutex> lk(mu_);
        ++hung_;
        cv_.notify_all();
        cv_.wait(lk, [this] { return released_; });
        --hung_;
        break;
      }
    }
    for (std::size_t i = 0; i < batch.size; ++i) {
      std::int32_t first = 0;
      std::memcpy(&first, batch.input + i * kWords * sizeof(std::int32_t), sizeof first);
      std::memcpy(batch.output + i * sizeof first, &first, sizeof first);
    }
  }
  void release() {
    std::lock_guard<std::mutex> lk(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool wait_hung(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, limit, [this] { return hung_ > 0; });
  }

 private:
  fastres::EngineIO io_;
  std::uint64_t hang_index_;
  std::mutex mu_;
  std::condition_variable cv_;
  int hung_ = 0;
  bool released_ = false;
};

// Records every completion; thread-safe. wait_for_completed() lets tests wait without sleeps.
class RecordingSink final : public fastres::CompletionSink {
 public:
  struct Record {
    int count = 0;
    std::int32_t label = 0;
    std::uint64_t index = 0;
    bool failed = false;
  };

  void complete(const fastres::CompletedBatch& b) override {
    std::lock_guard<std::mutex> lk(mu_);
    for (std::size_t i = 0; i < b.size; ++i) {
      Record& r = records_[b.ids[i]];
      ++r.count;
      std::memcpy(&r.label, b.responses + i * b.response_bytes, sizeof r.label);
      r.index = b.indices[i];
      r.failed = b.error != nullptr;
      order_.push_back(b.ids[i]);
    }
    batch_sizes_.push_back(b.size);
    completed_ += b.size;
    if (b.error != nullptr) ++error_batches_;
    cv_.notify_all();
  }

  bool wait_for_completed(std::size_t n, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    std::unique_lock<std::mutex> lk(mu_);
    return cv_.wait_for(lk, limit, [&] { return completed_ >= n; });
  }

  std::unordered_map<std::uint64_t, Record> records() const {
    std::lock_guard<std::mutex> lk(mu_);
    return records_;
  }
  std::vector<std::size_t> batch_sizes() const {
    std::lock_guard<std::mutex> lk(mu_);
    return batch_sizes_;
  }
  std::vector<std::uint64_t> order() const {
    std::lock_guard<std::mutex> lk(mu_);
    return order_;
  }
  std::size_t completed() const {
    std::lock_guard<std::mutex> lk(mu_);
    return completed_;
  }
  std::size_t error_batches() const {
    std::lock_guard<std::mutex> lk(mu_);
    return error_batches_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::uint64_t, Record> records_;
  std::vector<std::size_t> batch_sizes_;
  std::vector<std::uint64_t> order_;
  std::size_t completed_ = 0;
  std::size_t error_batches_ = 0;
};

}  // namespace testing
