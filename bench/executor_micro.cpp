// executor_micro: what the executor itself costs, with the null engine.
//
// For each batch size it measures, in one run:
//   direct   the irreducible work done inline on one thread, no executor: look the samples up,
//            gather them into a buffer, call the engine, call the sink, per batch;
//   offline  the executor fed as fast as one thread can submit (queries of `batch` samples),
//            to the last completion: samples/s and ns per sample, and the ratio to `direct`;
//   latency  closed loop, one query of `batch` samples at a time, submit to completion
//            (batch_timeout_us=0): the hand-offs batcher -> slot -> completion, mean and p99.
//
// Usage: executor_micro [--samples N] [--sample-bytes B] [--copy-streams S] [--complete-threads C]
//                       [--batches 1,8,32,128] [--latency-queries Q]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engines/null_engine.hpp"
#include "fastres/buffers.hpp"
#include "fastres/executor.hpp"
#include "fastres/sample_library.hpp"

using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::size_t samples = 200000;
  std::size_t sample_bytes = 64;
  std::int64_t copy_streams = 2;
  std::int64_t complete_threads = 1;
  std::vector<std::size_t> batches = {1, 8, 32, 128};
  std::size_t latency_queries = 2000;
  std::size_t library = 1024;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const std::string v = argv[i + 1];
    if (k == "--samples") o.samples = std::stoull(v);
    else if (k == "--sample-bytes") o.sample_bytes = std::stoull(v);
    else if (k == "--copy-streams") o.copy_streams = std::stoll(v);
    else if (k == "--complete-threads") o.complete_threads = std::stoll(v);
    else if (k == "--latency-queries") o.latency_queries = std::stoull(v);
    else if (k == "--batches") {
      o.batches.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) o.batches.push_back(std::stoull(item));
    } else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      std::exit(2);
    }
  }
  return o;
}

// Counts completions; lets the closed loop wait for a given count.
class CountingSink final : public fastres::CompletionSink {
 public:
  void complete(const fastres::CompletedBatch& b) override {
    std::lock_guard<std::mutex> lk(mu_);
    done_ += b.size;
    cv_.notify_all();
  }
  void wait_for(std::uint64_t n) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return done_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t done_ = 0;
};

double ns_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);

  fastres::EngineIO io;
  io.input_dtype = fastres::DType::kUInt8;
  io.input_shape = {static_cast<std::int64_t>(opt.sample_bytes)};
  io.max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
  auto engine = std::make_shared<fastres::NullEngine>(io, fastres::NullEngine::Answer::kNone);

  auto library = std::make_shared<fastres::SampleLibrary>(opt.sample_bytes);
  std::vector<std::uint64_t> loaded(opt.library);
  std::iota(loaded.begin(), loaded.end(), 0);
  library->load(loaded, [&](std::uint64_t index, std::byte* dst) { std::memset(dst, int(index & 0xFF), opt.sample_bytes); });

  // Random QSL indices, as LoadGen issues them: batches are gathered, rarely bound.
  std::mt19937_64 rng(7);
  std::vector<std::uint64_t> indices(opt.samples), ids(opt.samples);
  for (std::size_t i = 0; i < opt.samples; ++i) {
    indices[i] = rng() % opt.library;
    ids[i] = i + 1;
  }

  std::printf("executor_micro: null engine, %zu samples of %zu B, copy_streams=%lld complete_threads=%lld, %u cores\n",
              opt.samples, opt.sample_bytes, static_cast<long long>(opt.copy_streams),
              static_cast<long long>(opt.complete_threads), std::thread::hardware_concurrency());
  std::printf("%6s %14s %12s %12s %8s %12s %12s %12s %10s\n", "batch", "offline/s", "ns/sample", "direct ns", "ratio",
              "lat mean us", "lat p99 us", "mean batch", "bound");

  for (const std::size_t batch : opt.batches) {
    // --- direct: the same work inline, no threads.
    double direct_ns = 0;
    {
      CountingSink sink;
      fastres::HostBuffer in(batch * opt.sample_bytes, nullptr);
      fastres::HostBuffer out(batch * io.output_bytes, nullptr);
      fastres::StreamContext ctx;
      const auto t0 = Clock::now();
      for (std::size_t off = 0; off < opt.samples; off += batch) {
        const std::size_t n = std::min(batch, opt.samples - off);
        for (std::size_t i = 0; i < n; ++i) {
          std::memcpy(in.data() + i * opt.sample_bytes, library->sample(indices[off + i]), opt.sample_bytes);
        }
        fastres::Batch b;
        b.size = n;
        b.ids = ids.data() + off;
        b.indices = indices.data() + off;
        b.input = in.data();
        b.output = out.data();
        engine->enqueue(b, ctx);
        fastres::CompletedBatch c;
        c.size = n;
        c.ids = b.ids;
        c.indices = b.indices;
        c.responses = out.data();
        c.response_bytes = io.output_bytes;
        sink.complete(c);
      }
      direct_ns = ns_since(t0) / static_cast<double>(opt.samples);
    }

    fastres::ExecutorConfig config;
    config.batch_size = static_cast<std::int64_t>(batch);
    config.copy_streams = opt.copy_streams;
    config.complete_threads = opt.complete_threads;

    // --- offline: submit everything in queries of `batch`, wait for the last completion.
    double offline_ns = 0;
    fastres::ExecutorStats stats;
    {
      config.batch_timeout_us = 1000;
      auto sink = std::make_shared<CountingSink>();
      fastres::Executor ex(engine, library, config, sink);
      const auto t0 = Clock::now();
      for (std::size_t off = 0; off < opt.samples; off += batch) {
        ex.submit(ids.data() + off, indices.data() + off, std::min(batch, opt.samples - off));
      }
      ex.flush();
      offline_ns = ns_since(t0) / static_cast<double>(opt.samples);
      stats = ex.stats();
      ex.stop();
    }

    // --- latency: one query in flight at a time.
    std::vector<double> latencies_us;
    {
      config.batch_timeout_us = 0;
      auto sink = std::make_shared<CountingSink>();
      fastres::Executor ex(engine, library, config, sink);
      std::uint64_t expected = 0;
      for (std::size_t q = 0; q < opt.latency_queries; ++q) {
        const std::size_t off = (q * batch) % (opt.samples - batch + 1);
        const auto t0 = Clock::now();
        ex.submit(ids.data() + off, indices.data() + off, batch);
        expected += batch;
        sink->wait_for(expected);
        latencies_us.push_back(ns_since(t0) / 1000.0);
      }
      ex.stop();
    }
    std::sort(latencies_us.begin(), latencies_us.end());
    const double mean_us = std::accumulate(latencies_us.begin(), latencies_us.end(), 0.0) / static_cast<double>(latencies_us.size());
    const double p99_us = latencies_us[std::min(latencies_us.size() - 1, latencies_us.size() * 99 / 100)];

    std::printf("%6zu %14.0f %12.1f %12.1f %8.2f %12.1f %12.1f %12.1f %10llu\n", batch, 1e9 / offline_ns, offline_ns,
                direct_ns, offline_ns / direct_ns, mean_us, p99_us, stats.mean_batch_size,
                static_cast<unsigned long long>(stats.bound_batches));
  }
  return 0;
}
