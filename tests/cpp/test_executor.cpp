// The executor end to end: exactly-once completion, answers travel with their samples,
// deterministic batching, timeouts, stop with work in flight, engine and sink failures, knobs.
// Thread counts stay small so the suite runs in seconds under ThreadSanitizer on 2 cores.
#include <atomic>
#include <future>
#include <chrono>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "check.hpp"
#include "engines/null_engine.hpp"
#include "fastres/executor.hpp"
#include "fastres/status.hpp"
#include "helpers.hpp"

using fastres::Executor;
using fastres::ExecutorConfig;
using testing::EchoInputEngine;
using testing::RecordingSink;
using namespace std::chrono_literals;

namespace {

ExecutorConfig make_config(std::int64_t batch, std::int64_t slots, std::int64_t complete_threads,
                           std::int64_t timeout_us, std::int64_t deque_limit = 0) {
  ExecutorConfig c;
  c.batch_size = batch;
  c.copy_streams = slots;
  c.infer_streams = 1;
  c.complete_threads = complete_threads;
  c.batch_timeout_us = timeout_us;
  c.deque_limit = deque_limit;
  return c;
}

// `threads` threads each submit `per_thread` samples in queries of random size [1, max_query],
// with random QSL indices below `library`. Returns id -> index of everything submitted.
std::unordered_map<std::uint64_t, std::uint64_t> submit_from_threads(Executor& ex, int threads, std::size_t per_thread,
                                                                     std::size_t max_query, std::size_t library) {
  std::vector<std::vector<std::pair<std::uint64_t, std::uint64_t>>> sent(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(1234 + t);
      std::uniform_int_distribution<std::size_t> qsize(1, max_query);
      std::uniform_int_distribution<std::uint64_t> qindex(0, library - 1);
      std::size_t done = 0;
      while (done < per_thread) {
        const std::size_t n = std::min(qsize(rng), per_thread - done);
        std::vector<std::uint64_t> ids(n), indices(n);
        for (std::size_t i = 0; i < n; ++i) {
          ids[i] = (static_cast<std::uint64_t>(t + 1) << 32) | (done + i);
          indices[i] = qindex(rng);
          sent[t].emplace_back(ids[i], indices[i]);
        }
        ex.submit(ids, indices);
        done += n;
      }
    });
  }
  for (auto& th : pool) th.join();
  std::unordered_map<std::uint64_t, std::uint64_t> all;
  for (const auto& v : sent) all.insert(v.begin(), v.end());
  return all;
}

void check_exactly_once_with_answers(const RecordingSink& sink,
                                     const std::unordered_map<std::uint64_t, std::uint64_t>& sent) {
  const auto records = sink.records();
  CHECK_EQ(records.size(), sent.size());
  for (const auto& [id, index] : sent) {
    const auto it = records.find(id);
    CHECK(it != records.end());
    CHECK_EQ(it->second.count, 1);
    CHECK_EQ(it->second.index, index);
    CHECK(!it->second.failed);
    CHECK_EQ(it->second.label, static_cast<std::int32_t>(index));
  }
}

}  // namespace

TEST_CASE(exactly_once_from_many_threads_with_random_query_sizes) {
  auto sink = std::make_shared<RecordingSink>();
  auto library = testing::make_library(500);
  Executor ex(std::make_shared<EchoInputEngine>(), library, make_config(16, 3, 2, 200), sink);
  const auto sent = submit_from_threads(ex, 4, 1500, 40, 500);
  ex.flush();
  check_exactly_once_with_answers(*sink, sent);
  const auto stats = ex.stats();
  CHECK_EQ(stats.submitted, sent.size());
  CHECK_EQ(stats.completed, sent.size());
  CHECK_EQ(stats.failed_batches, 0u);
  CHECK(stats.mean_batch_size >= 1.0 && stats.mean_batch_size <= 16.0);
  CHECK(stats.max_queue_depth >= 1);
  ex.stop();
  CHECK_EQ(sink->completed(), sent.size());  // stop after flush completes nothing twice
}

TEST_CASE(each_response_carries_its_own_samples_answer) {
  // NullEngine answering with the QSL index, deque limit on, one completion thread per slot.
  auto sink = std::make_shared<RecordingSink>();
  auto library = testing::make_library(64);
  auto engine = std::make_shared<fastres::NullEngine>(testing::echo_io(), fastres::NullEngine::Answer::kIndex);
  Executor ex(engine, library, make_config(8, 2, 2, 100, 8), sink);
  const auto sent = submit_from_threads(ex, 2, 700, 13, 64);
  ex.stop();
  check_exactly_once_with_answers(*sink, sent);
}

TEST_CASE(hold_until_forms_full_batches_then_the_rest) {
  // No deque limit: the held take of 10 splits into 4 + 4 + 2 in queue order.
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(32), make_config(4, 1, 1, 60'000'000), sink);
  ex.hold_until(10);
  for (std::uint64_t i = 0; i < 10; ++i) ex.submit(std::vector<std::uint64_t>{100 + i}, std::vector<std::uint64_t>{i});
  CHECK(sink->wait_for_completed(10));
  CHECK(sink->batch_sizes() == (std::vector<std::size_t>{4, 4, 2}));
  std::vector<std::uint64_t> expected(10);
  for (std::uint64_t i = 0; i < 10; ++i) expected[i] = 100 + i;
  CHECK(sink->order() == expected);  // one slot: completion order is queue order
  ex.stop();
}

TEST_CASE(deque_limit_leaves_the_partial_batch_for_its_window) {
  // deque_limit = batch size (LWIS use_deque_limit): two full batches go at once; the last two
  // samples wait for their (60 s) window until flush() issues them.
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(32), make_config(4, 2, 1, 60'000'000, 4),
              sink);
  ex.hold_until(10);
  std::vector<std::uint64_t> ids(10), indices(10);
  for (std::uint64_t i = 0; i < 10; ++i) ids[i] = indices[i] = i;
  ex.submit(ids, indices);
  CHECK(sink->wait_for_completed(8));
  CHECK_EQ(ex.stats().queue_depth, 2u);
  CHECK_EQ(sink->completed(), 8u);
  ex.flush();
  CHECK_EQ(sink->completed(), 10u);
  auto sizes = sink->batch_sizes();
  CHECK(sizes == (std::vector<std::size_t>{4, 4, 2}));
  ex.stop();
}

TEST_CASE(partial_batch_is_issued_when_its_window_ends) {
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(8), make_config(8, 1, 1, 20'000), sink);
  const auto start = std::chrono::steady_clock::now();
  ex.submit(std::vector<std::uint64_t>{1, 2, 3}, std::vector<std::uint64_t>{5, 6, 7});
  CHECK(sink->wait_for_completed(3, 5s));  // no flush: only the 20 ms window issues it
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited < 5s);
  CHECK(sink->batch_sizes() == (std::vector<std::size_t>{3}));
  ex.stop();
  CHECK_EQ(ex.stats().batches, 1u);  // counted after the sink returns: read once joined
}

TEST_CASE(stop_with_work_in_flight_completes_everything_once) {
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<EchoInputEngine>(256, 2ms);  // slow: work piles up
  Executor ex(engine, testing::make_library(100), make_config(8, 2, 1, 50'000), sink);
  const auto sent = submit_from_threads(ex, 2, 300, 20, 100);
  ex.stop();  // most of it is still queued or in flight here
  check_exactly_once_with_answers(*sink, sent);
  CHECK_THROWS(ex.submit(std::vector<std::uint64_t>{1}, std::vector<std::uint64_t>{1}), fastres::InvalidArgument,
               "stopped");
  ex.stop();  // idempotent
  ex.flush();  // nothing left to wait for
}

TEST_CASE(engine_errors_fail_their_batches_once_and_are_reported) {
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<EchoInputEngine>(256, 0us, /*fail_every=*/37);
  Executor ex(engine, testing::make_library(200), make_config(8, 3, 2, 100), sink);
  const auto sent = submit_from_threads(ex, 2, 800, 10, 200);
  CHECK_THROWS(ex.flush(), fastres::EngineError, "is cursed");
  const auto records = sink->records();
  CHECK_EQ(records.size(), sent.size());
  std::size_t failed = 0;
  for (const auto& [id, index] : sent) {
    const auto& r = records.at(id);
    CHECK_EQ(r.count, 1);
    if (r.failed) {
      ++failed;
      CHECK_EQ(r.label, -1);
    } else {
      CHECK(index % 37 != 0);
      CHECK_EQ(r.label, static_cast<std::int32_t>(index));
    }
  }
  CHECK(failed > 0);
  const auto stats = ex.stats();
  CHECK_EQ(stats.failed_batches, sink->error_batches());
  CHECK_EQ(stats.completed, sent.size());
  CHECK(ex.last_error().has_value());
  CHECK(ex.last_error()->find("echo-input") != std::string::npos);
  ex.flush();  // already reported: no second throw
  ex.stop();
}

TEST_CASE(a_failed_batch_does_not_fail_the_slots_next_batch) {
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<EchoInputEngine>(256, 0us, /*fail_every=*/100);  // index 0 fails
  Executor ex(engine, testing::make_library(8), make_config(4, 1, 1, 0), sink);  // one slot
  ex.submit(std::vector<std::uint64_t>{10}, std::vector<std::uint64_t>{0});
  CHECK_THROWS(ex.flush(), fastres::EngineError, "is cursed");
  ex.submit(std::vector<std::uint64_t>{11, 12}, std::vector<std::uint64_t>{1, 2});
  ex.flush();  // the same slot runs it, and it succeeds
  const auto records = sink->records();
  CHECK(records.at(10).failed);
  CHECK(!records.at(11).failed && !records.at(12).failed);
  CHECK_EQ(records.at(12).label, 2);
  CHECK_EQ(ex.stats().failed_batches, 1u);
  ex.stop();
}

TEST_CASE(sink_errors_are_recorded_and_reported_by_stop) {
  auto recorder = std::make_shared<RecordingSink>();
  std::atomic<int> calls{0};
  auto sink = std::make_shared<fastres::FunctionSink>([&](const fastres::CompletedBatch& b) {
    recorder->complete(b);
    if (calls.fetch_add(1) == 0) throw std::runtime_error("sink is down");
  });
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(16), make_config(4, 1, 1, 100), sink);
  std::vector<std::uint64_t> ids(12), indices(12);
  for (std::uint64_t i = 0; i < 12; ++i) ids[i] = indices[i] = i;
  ex.submit(ids, indices);
  CHECK_THROWS(ex.stop(), fastres::Error, "sink is down");
  CHECK_EQ(recorder->completed(), 12u);
  CHECK_EQ(ex.stats().sink_errors, 1u);
  CHECK_EQ(ex.stats().completed, 12u);
}

TEST_CASE(flush_or_stop_from_inside_the_sink_is_rejected) {
  std::atomic<Executor*> self{nullptr};
  std::atomic<int> rejected{0};
  auto recorder = std::make_shared<RecordingSink>();
  auto sink = std::make_shared<fastres::FunctionSink>([&](const fastres::CompletedBatch& b) {
    try {
      self.load()->flush();
    } catch (const fastres::InvalidArgument&) {
      rejected.fetch_add(1);
    }
    try {
      self.load()->stop();
    } catch (const fastres::InvalidArgument&) {
      rejected.fetch_add(1);
    }
    recorder->complete(b);
  });
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(4), make_config(2, 1, 1, 0), sink);
  self = &ex;
  ex.submit(std::vector<std::uint64_t>{1, 2}, std::vector<std::uint64_t>{0, 1});
  ex.flush();
  CHECK_EQ(rejected.load(), 2);
  ex.stop();
}

TEST_CASE(destroying_the_executor_from_its_own_sink_drains_it) {
  // The sink drops the last reference to the executor while running on its completion thread.
  struct Gone {
    std::promise<void> promise;
    ~Gone() { promise.set_value(); }
  };
  auto gone = std::make_unique<Gone>();
  std::future<void> destroyed = gone->promise.get_future();
  auto recorder = std::make_shared<RecordingSink>();
  std::mutex mu;
  std::unique_ptr<Executor> owner;
  auto sink = std::make_shared<fastres::FunctionSink>(
      [&mu, &owner, recorder, g = std::shared_ptr<Gone>(std::move(gone))](const fastres::CompletedBatch& b) {
        recorder->complete(b);
        std::unique_ptr<Executor> last;
        {
          std::lock_guard<std::mutex> lk(mu);
          last = std::move(owner);
        }
        last.reset();  // on the executor's own thread
      });
  {
    std::lock_guard<std::mutex> lk(mu);
    owner = std::make_unique<Executor>(std::make_shared<EchoInputEngine>(256, 1ms), testing::make_library(64),
                                       make_config(4, 2, 1, 100), sink);
    std::vector<std::uint64_t> ids(40), indices(40);
    for (std::uint64_t i = 0; i < 40; ++i) ids[i] = indices[i] = i;
    owner->submit(ids, indices);
  }
  sink.reset();
  CHECK(destroyed.wait_for(20s) == std::future_status::ready);  // the sink (and executor) are gone
  CHECK_EQ(recorder->completed(), 40u);                          // after draining everything
  for (const auto& [id, r] : recorder->records()) CHECK_EQ(r.count, 1);
}

TEST_CASE(contiguous_samples_are_bound_without_a_copy) {
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(64), make_config(8, 1, 1, 60'000'000), sink);
  ex.hold_until(16);
  std::vector<std::uint64_t> ids(16), indices(16);
  for (std::uint64_t i = 0; i < 16; ++i) {
    ids[i] = i;
    indices[i] = i < 8 ? 10 + i : 40 - i;  // first batch contiguous, second reversed
  }
  ex.submit(ids, indices);
  ex.flush();
  CHECK_EQ(ex.stats().bound_batches, 1u);
  for (const auto& [id, r] : sink->records()) CHECK_EQ(r.label, static_cast<std::int32_t>(r.index));
  ex.stop();
}

TEST_CASE(submit_rejects_unloaded_indices_atomically) {
  auto sink = std::make_shared<RecordingSink>();
  Executor ex(std::make_shared<EchoInputEngine>(), testing::make_library(4), make_config(2, 1, 1, 0), sink);
  CHECK_THROWS(ex.submit(std::vector<std::uint64_t>{1, 2}, std::vector<std::uint64_t>{0, 9}), fastres::InvalidArgument,
               "QSL index 9");
  CHECK_THROWS(ex.submit(std::vector<std::uint64_t>{1, 2}, std::vector<std::uint64_t>{0}), fastres::InvalidArgument,
               "2 ids but 1 indices");
  ex.flush();
  CHECK_EQ(ex.stats().submitted, 0u);
  CHECK_EQ(sink->completed(), 0u);
  ex.stop();
}

TEST_CASE(invalid_knobs_name_the_knob_value_and_range) {
  auto engine = std::make_shared<EchoInputEngine>(/*max_batch=*/64);
  auto library = testing::make_library(4);
  auto sink = std::make_shared<RecordingSink>();
  auto build = [&](ExecutorConfig c) { Executor ex(engine, library, c, sink); };
  auto with = [](auto mutate) {
    ExecutorConfig c;
    mutate(c);
    return c;
  };
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.batch_size = 0; })), fastres::InvalidArgument,
               "batch_size=0: must be in [1, 64]");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.batch_size = 65; })), fastres::InvalidArgument,
               "the engine's max batch is 64");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.copy_streams = 0; })), fastres::InvalidArgument, "copy_streams=0");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.copy_streams = 65; })), fastres::InvalidArgument, "[1, 64]");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.infer_streams = 0; })), fastres::InvalidArgument,
               "infer_streams=0");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.complete_threads = -1; })), fastres::InvalidArgument,
               "complete_threads=-1");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.batch_timeout_us = -5; })), fastres::InvalidArgument,
               "batch_timeout_us=-5");
  CHECK_THROWS(build(with([](ExecutorConfig& c) {
                 c.batch_size = 8;
                 c.deque_limit = 4;
               })),
               fastres::InvalidArgument, "deque_limit=4");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.deque_limit = -1; })), fastres::InvalidArgument, "deque_limit=-1");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.watchdog_ms = -1; })), fastres::InvalidArgument, "watchdog_ms=-1");
  // The CUDA knobs are refused for a CPU engine, by name.
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.use_graphs = true; })), fastres::InvalidArgument,
               "use_graphs applies to CUDA engines only");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.start_from_device = true; })), fastres::InvalidArgument,
               "start_from_device");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.run_infer_on_copy_streams = true; })), fastres::InvalidArgument,
               "run_infer_on_copy_streams");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.use_spin_wait = true; })), fastres::InvalidArgument,
               "use_spin_wait");
  CHECK_THROWS(build(with([](ExecutorConfig& c) { c.devices = {0}; })), fastres::InvalidArgument, "devices");
  // The library's sample size must match the engine's input.
  auto wrong = std::make_shared<fastres::SampleLibrary>(3);
  CHECK_THROWS(Executor(engine, wrong, ExecutorConfig{}, sink), fastres::InvalidArgument, "sample_bytes=3");
  CHECK_THROWS(Executor(nullptr, library, ExecutorConfig{}, sink), fastres::InvalidArgument, "engine is null");
  CHECK_THROWS(Executor(engine, library, ExecutorConfig{}, nullptr), fastres::InvalidArgument, "sink is null");
  // A valid config builds.
  build(with([](ExecutorConfig& c) {
    c.batch_size = 64;
    c.deque_limit = 64;
    c.batch_timeout_us = 0;
  }));
}

TEST_CASE(null_engine_options) {
  auto io = testing::echo_io();
  io.output_bytes = 2;
  CHECK_THROWS(fastres::NullEngine(io, fastres::NullEngine::Answer::kIndex), fastres::InvalidArgument,
               "output_bytes=2");
  CHECK_THROWS(fastres::parse_answer("echo"), fastres::InvalidArgument, "'none', 'constant' or 'index'");
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<fastres::NullEngine>(testing::echo_io(), fastres::NullEngine::Answer::kConstant, 7);
  Executor ex(engine, testing::make_library(4), make_config(4, 1, 1, 0), sink);
  ex.submit(std::vector<std::uint64_t>{1, 2}, std::vector<std::uint64_t>{0, 3});
  ex.stop();
  for (const auto& [id, r] : sink->records()) CHECK_EQ(r.label, 7);
}

// Waits (bounded) until nothing but the test holds `p`: the executor, kept alive by a retired
// slot's hung worker, is gone. Keeps sanitizer runs free of a thread still tearing down at exit.
template <class T>
bool wait_sole_owner(const std::shared_ptr<T>& p) {
  for (int i = 0; i < 2000 && p.use_count() > 1; ++i) std::this_thread::sleep_for(5ms);
  return p.use_count() == 1;
}

TEST_CASE(watchdog_fails_a_hung_batch_once_and_the_others_still_run) {
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<testing::HangingEngine>(/*hang_index=*/7);
  auto config = make_config(1, 2, 1, 0);
  config.watchdog_ms = 500;  // far above any other batch's time, even under sanitizers on a busy machine
  {
    Executor ex(engine, testing::make_library(32), config, sink);
    ex.submit(std::vector<std::uint64_t>{100}, std::vector<std::uint64_t>{7});
    CHECK(engine->wait_hung());
    std::vector<std::uint64_t> ids, indices;
    for (std::uint64_t i = 0; i < 20; ++i) {
      ids.push_back(i);
      indices.push_back(i + 8);
    }
    ex.submit(ids, indices);
    CHECK(sink->wait_for_completed(21));
    CHECK_THROWS(ex.flush(), fastres::EngineError, "hung");
    const auto records = sink->records();
    CHECK_EQ(records.size(), 21u);
    for (const auto& [id, r] : records) {
      CHECK_EQ(r.count, 1);
      CHECK_EQ(r.failed, id == 100);
      CHECK_EQ(r.label, id == 100 ? -1 : static_cast<std::int32_t>(r.index));
    }
    const auto stats = ex.stats();
    CHECK_EQ(stats.watchdog_batches, 1u);
    CHECK_EQ(stats.retired_slots, 1u);
    CHECK_EQ(stats.failed_batches, 1u);
    CHECK(ex.last_error()->find("watchdog_ms=500") != std::string::npos);
    CHECK(ex.last_error()->find("slot") != std::string::npos);
    ex.stop();  // returns although the engine call still hangs
  }
  CHECK(engine.use_count() > 1);  // the hung worker still holds the executor, and so the engine
  engine->release();
  CHECK(wait_sole_owner(engine));
  CHECK_EQ(sink->completed(), 21u);  // the late return completed nothing twice
}

TEST_CASE(watchdog_with_every_slot_retired_fails_batches_at_once) {
  auto sink = std::make_shared<RecordingSink>();
  auto engine = std::make_shared<testing::HangingEngine>(/*hang_index=*/0);
  auto config = make_config(2, 1, 1, 0);
  config.watchdog_ms = 300;
  {
    Executor ex(engine, testing::make_library(16), config, sink);
    ex.submit(std::vector<std::uint64_t>{1}, std::vector<std::uint64_t>{0});
    CHECK(sink->wait_for_completed(1));
    ex.submit(std::vector<std::uint64_t>{2, 3, 4}, std::vector<std::uint64_t>{5, 6, 7});
    CHECK(sink->wait_for_completed(4));
    CHECK_THROWS(ex.stop(), fastres::EngineError, "no stream slot left");
    for (const auto& [id, r] : sink->records()) {
      CHECK_EQ(r.count, 1);
      CHECK(r.failed);
      CHECK_EQ(r.label, -1);
    }
    CHECK_EQ(sink->records().size(), 4u);
    CHECK_EQ(ex.stats().retired_slots, 1u);
    CHECK_EQ(ex.stats().failed_batches, 3u);  // the hung one, then [5, 6] and [7] at once
  }
  engine->release();
  CHECK(wait_sole_owner(engine));
}

int main(int argc, char** argv) { return check::run(argc, argv); }
