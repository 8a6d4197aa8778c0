#include "fastres/executor.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <utility>

#include "fastres/batcher.hpp"
#include "fastres/buffers.hpp"
#include "fastres/status.hpp"

namespace fastres {

namespace {

// The executor whose thread this is (batcher, slot worker or completion thread), so that
// flush()/stop() from inside the sink or the engine fail loudly instead of deadlocking.
thread_local const void* t_executor_thread_owner = nullptr;

struct QueuedSample {
  std::uint64_t id;
  std::uint64_t index;
};

std::uint64_t elapsed_ns(Clock::time_point from, Clock::time_point to) {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(to - from).count());
}

void check_knob(const char* knob, std::int64_t value, std::int64_t lo, std::int64_t hi, const std::string& note = "") {
  if (value >= lo && value <= hi) return;
  std::ostringstream msg;
  msg << "ExecutorConfig." << knob << "=" << value << ": must be in [" << lo << ", " << hi << "]";
  if (!note.empty()) msg << " (" << note << ")";
  throw InvalidArgument(msg.str());
}

std::string shape_string(const EngineIO& io) {
  std::ostringstream s;
  s << "[";
  for (std::size_t i = 0; i < io.input_shape.size(); ++i) s << (i ? ", " : "") << io.input_shape[i];
  s << "] " << dtype_name(io.input_dtype);
  return s.str();
}

}  // namespace

void validate(const ExecutorConfig& c, const EngineIO& io) {
  const auto max_batch = static_cast<std::int64_t>(std::min<std::size_t>(io.max_batch, std::size_t{1} << 31));
  check_knob("batch_size", c.batch_size, 1, max_batch, "the engine's max batch is " + std::to_string(io.max_batch));
  check_knob("copy_streams", c.copy_streams, 1, kMaxStreams, "stream slots: batches in flight at once");
  check_knob("infer_streams", c.infer_streams, 1, kMaxStreams);
  check_knob("complete_threads", c.complete_threads, 1, kMaxCompleteThreads);
  check_knob("batch_timeout_us", c.batch_timeout_us, 0, kMaxBatchTimeoutUs, "microseconds; 0 issues at once");
  if (c.deque_limit != 0) {
    check_knob("deque_limit", c.deque_limit, c.batch_size, (std::int64_t{1} << 31) - 1,
               "0 for no limit, else at least batch_size=" + std::to_string(c.batch_size) +
                   "; LWIS use_deque_limit=true is deque_limit=batch_size");
  }
}

// ---------------------------------------------------------------------------------------------
struct Executor::Impl {
  // A stream slot: everything one batch needs from gather to completion. The batcher fills
  // ids/indices while the slot is free; the worker owns it while has_work; the completion
  // thread owns it until it pushes the slot back on the free list.
  struct Slot {
    StreamContext ctx;
    std::unique_ptr<EngineSlotState> engine_state;
    HostBuffer input;   // [batch_size, input_bytes]
    HostBuffer output;  // [batch_size, output_bytes]
    std::vector<std::uint64_t> ids;
    std::vector<std::uint64_t> indices;
    std::vector<const std::byte*> sources;  // the samples' addresses in the library
    std::uint64_t first_seq = 0;            // sequence number of ids[0]
    std::string error;                      // empty: the batch succeeded

    std::mutex mu;  // guards the mailbox
    std::condition_variable cv;
    bool has_work = false;
    bool closing = false;
    std::thread worker;
  };

  Impl(std::shared_ptr<Engine> engine_in, std::shared_ptr<const SampleLibrary> samples_in, ExecutorConfig config_in,
       std::shared_ptr<CompletionSink> sink_in);
  ~Impl();

  void start();
  void shutdown();
  void close_slots();
  void report_errors();

  void batcher_loop();
  void slot_loop(Slot& slot);
  void completion_loop();

  void dispatch(std::vector<QueuedSample>& taken, std::uint64_t first_seq, std::size_t& next_infer_stream);
  std::size_t acquire_free_slot();
  void run_batch(Slot& slot);
  void gather(Slot& slot, Batch& batch);
  void record_error(const std::string& message, bool engine_error);
  void check_not_own_thread(const char* what) const;
  std::uint64_t watermark() const { return active.empty() ? taken : *active.begin(); }

  const std::shared_ptr<Engine> engine;
  const std::shared_ptr<const SampleLibrary> samples;
  const ExecutorConfig config;
  const std::shared_ptr<CompletionSink> sink;
  const std::size_t batch_size;
  const std::size_t input_bytes;
  const std::size_t output_bytes;

  // Submission queue, and the batcher's view of it.
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<QueuedSample> queue;
  std::uint64_t submitted = 0;   // sequence number the next submitted sample gets
  std::uint64_t head_seq = 0;    // sequence number of queue.front()
  std::uint64_t flush_upto = 0;  // samples with seq < flush_upto are urgent
  bool stopping = false;
  Clock::time_point nonempty_since{};
  Batcher batcher;

  // Stream slots and the free list (FIFO, like LWIS's stream queue).
  std::vector<std::unique_ptr<Slot>> slots;
  std::mutex free_mu;
  std::condition_variable free_cv;
  std::deque<std::size_t> free_slots;

  // Batches the workers finished, waiting for a completion thread.
  std::mutex done_mu;
  std::condition_variable done_cv;
  std::deque<std::size_t> done;
  bool done_closing = false;

  // Progress, for flush(): the first sequence number of every batch taken but not completed.
  std::mutex progress_mu;
  std::condition_variable progress_cv;
  std::set<std::uint64_t> active;
  std::uint64_t taken = 0;  // samples taken off the queue so far

  mutable std::mutex error_mu;
  std::string last_error;
  std::uint64_t unreported_engine_errors = 0;
  std::uint64_t unreported_sink_errors = 0;

  std::atomic<std::uint64_t> n_submitted{0}, n_completed{0}, n_batches{0}, n_failed{0}, n_sink_errors{0},
      n_bound{0}, n_queue_depth{0}, n_max_queue_depth{0}, ns_gather{0}, ns_engine{0}, ns_complete{0};

  std::thread batcher_thread;
  std::vector<std::thread> completion_threads;
  std::mutex lifecycle_mu;
  bool joined = false;
};

Executor::Impl::Impl(std::shared_ptr<Engine> engine_in, std::shared_ptr<const SampleLibrary> samples_in,
                     ExecutorConfig config_in, std::shared_ptr<CompletionSink> sink_in)
    : engine(std::move(engine_in)),
      samples(std::move(samples_in)),
      config(config_in),
      sink(std::move(sink_in)),
      batch_size(static_cast<std::size_t>(std::max<std::int64_t>(config.batch_size, 1))),
      input_bytes(engine ? engine->io().input_bytes() : 0),
      output_bytes(engine ? engine->io().output_bytes : 0),
      batcher(BatchPolicy{batch_size, std::chrono::microseconds(std::max<std::int64_t>(config.batch_timeout_us, 0)),
                          static_cast<std::size_t>(std::max<std::int64_t>(config.deque_limit, 0))},
              Clock::now()) {
  if (!engine) throw InvalidArgument("Executor: engine is null; pass an Engine (e.g. NullEngine)");
  if (!samples) throw InvalidArgument("Executor: samples is null; pass the SampleLibrary the queries index into");
  if (!sink) throw InvalidArgument("Executor: completion sink is null; pass where finished batches go");
  const EngineIO& io = engine->io();
  validate(io, "engine '" + engine->name() + "'");
  validate(config, io);
  if (samples->sample_bytes() != input_bytes) {
    throw InvalidArgument("Executor: SampleLibrary sample_bytes=" + std::to_string(samples->sample_bytes()) +
                          " does not match engine '" + engine->name() + "' input of " + shape_string(io) + " (" +
                          std::to_string(input_bytes) + " bytes); build the SampleLibrary with the engine's input size");
  }
  const auto slot_count = static_cast<std::size_t>(config.copy_streams);
  slots.reserve(slot_count);
  for (std::size_t k = 0; k < slot_count; ++k) {
    auto slot = std::make_unique<Slot>();
    slot->ctx.slot = k;
    slot->ctx.device = io.device;
    // Pageable host memory today; the CUDA path allocates these pinned (buffers.hpp) when the
    // engine's device is kCuda, and adds the slot's device buffers, streams and events.
    slot->input = HostBuffer(batch_size * input_bytes, nullptr);
    slot->output = HostBuffer(batch_size * output_bytes, nullptr);
    slot->ids.reserve(batch_size);
    slot->indices.reserve(batch_size);
    slot->sources.reserve(batch_size);
    slot->engine_state = engine->create_slot_state(slot->ctx);
    slot->ctx.engine_state = slot->engine_state.get();
    slots.push_back(std::move(slot));
    free_slots.push_back(k);
  }
}

Executor::Impl::~Impl() {
  try {
    shutdown();
  } catch (...) {
    // Only reachable when destroyed from its own thread, which the contract forbids.
  }
}

void Executor::Impl::start() {
  try {
    for (std::int64_t i = 0; i < config.complete_threads; ++i) completion_threads.emplace_back([this] { completion_loop(); });
    for (auto& slot : slots) slot->worker = std::thread([this, s = slot.get()] { slot_loop(*s); });
    batcher_thread = std::thread([this] { batcher_loop(); });
  } catch (...) {
    shutdown();  // joins whatever started
    throw;
  }
}

void Executor::Impl::check_not_own_thread(const char* what) const {
  if (t_executor_thread_owner == this) {
    throw InvalidArgument(std::string("Executor.") + what +
                          " was called from one of the executor's own threads (inside the completion sink or the "
                          "engine), where it would wait for itself; call it from another thread");
  }
}

void Executor::Impl::shutdown() {
  check_not_own_thread("stop()");
  std::lock_guard<std::mutex> life(lifecycle_mu);
  if (joined) return;
  {
    std::lock_guard<std::mutex> lk(queue_mu);
    stopping = true;
  }
  queue_cv.notify_all();
  if (batcher_thread.joinable()) batcher_thread.join();  // drains the queue into the slots
  close_slots();
  for (auto& slot : slots) {
    if (slot->worker.joinable()) slot->worker.join();
  }
  {
    std::lock_guard<std::mutex> lk(done_mu);
    done_closing = true;
  }
  done_cv.notify_all();
  for (auto& t : completion_threads) {
    if (t.joinable()) t.join();
  }
  joined = true;
}

void Executor::Impl::close_slots() {
  for (auto& slot : slots) {
    {
      std::lock_guard<std::mutex> lk(slot->mu);
      slot->closing = true;
    }
    slot->cv.notify_one();
  }
}

void Executor::Impl::record_error(const std::string& message, bool engine_error) {
  std::lock_guard<std::mutex> lk(error_mu);
  last_error = message;
  ++(engine_error ? unreported_engine_errors : unreported_sink_errors);
}

void Executor::Impl::report_errors() {
  std::lock_guard<std::mutex> lk(error_mu);
  const auto engine_errors = std::exchange(unreported_engine_errors, 0);
  const auto sink_errors = std::exchange(unreported_sink_errors, 0);
  if (engine_errors > 0) {
    throw EngineError(std::to_string(engine_errors) +
                      " batch(es) failed since the last flush()/stop(); each of their samples was still completed "
                      "once, flagged as failed. Last error: " +
                      last_error);
  }
  if (sink_errors > 0) {
    throw Error("the completion sink raised on " + std::to_string(sink_errors) +
                " batch(es) since the last flush()/stop(); those samples may not have reached LoadGen. Last error: " +
                last_error);
  }
}

// ---------------------------------------------------------------------------------- batcher
void Executor::Impl::batcher_loop() {
  t_executor_thread_owner = this;
  std::vector<QueuedSample> taken_now;
  taken_now.reserve(batch_size);
  std::size_t next_infer_stream = 0;
  for (;;) {
    std::uint64_t first_seq = 0;
    {
      std::unique_lock<std::mutex> lk(queue_mu);
      batcher.begin_acquire(Clock::now());  // ready for more: the acquire window opens
      for (;;) {
        const auto now = Clock::now();
        const QueueState state{queue.size(), nonempty_since, stopping || head_seq < flush_upto};
        const BatchDecision decision = batcher.next(state, now);
        if (decision.take > 0) {
          first_seq = head_seq;
          const auto end = queue.begin() + static_cast<std::ptrdiff_t>(decision.take);
          taken_now.assign(queue.begin(), end);
          queue.erase(queue.begin(), end);
          head_seq += decision.take;
          n_queue_depth.store(queue.size(), std::memory_order_relaxed);
          break;
        }
        if (stopping && queue.empty()) return;  // shutdown() closes the slots
        if (decision.wait) {
          queue_cv.wait_for(lk, *decision.wait);
        } else {
          queue_cv.wait(lk);
        }
      }
    }
    dispatch(taken_now, first_seq, next_infer_stream);
  }
}

void Executor::Impl::dispatch(std::vector<QueuedSample>& taken_now, std::uint64_t first_seq,
                              std::size_t& next_infer_stream) {
  // Register the batches before any can complete, so flush() never sees a gap.
  {
    std::lock_guard<std::mutex> lk(progress_mu);
    for (std::size_t off = 0; off < taken_now.size(); off += batch_size) active.insert(first_seq + off);
    taken = first_seq + taken_now.size();
  }
  const auto infer_streams = static_cast<std::size_t>(config.infer_streams);
  for (std::size_t off = 0; off < taken_now.size(); off += batch_size) {
    const std::size_t n = std::min(batch_size, taken_now.size() - off);
    Slot& slot = *slots[acquire_free_slot()];  // blocks while every slot is busy: the backpressure
    slot.ids.clear();
    slot.indices.clear();
    for (std::size_t i = off; i < off + n; ++i) {
      slot.ids.push_back(taken_now[i].id);
      slot.indices.push_back(taken_now[i].index);
    }
    slot.first_seq = first_seq + off;
    slot.ctx.infer_stream = next_infer_stream;
    next_infer_stream = (next_infer_stream + 1) % infer_streams;
    {
      std::lock_guard<std::mutex> lk(slot.mu);
      slot.has_work = true;
    }
    slot.cv.notify_one();
  }
  taken_now.clear();
}

std::size_t Executor::Impl::acquire_free_slot() {
  std::unique_lock<std::mutex> lk(free_mu);
  free_cv.wait(lk, [this] { return !free_slots.empty(); });
  const std::size_t k = free_slots.front();
  free_slots.pop_front();
  return k;
}

// ------------------------------------------------------------------------------- stream slot
void Executor::Impl::slot_loop(Slot& slot) {
  t_executor_thread_owner = this;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(slot.mu);
      slot.cv.wait(lk, [&slot] { return slot.has_work || slot.closing; });
      if (!slot.has_work) return;
      slot.has_work = false;
    }
    run_batch(slot);
    {
      std::lock_guard<std::mutex> lk(done_mu);
      done.push_back(slot.ctx.slot);
    }
    done_cv.notify_one();
  }
}

void Executor::Impl::gather(Slot& slot, Batch& batch) {
  // Look every sample up once; detect whether they already lie contiguous in the library.
  slot.sources.clear();
  bool contiguous = true;
  for (std::size_t i = 0; i < batch.size; ++i) {
    const std::byte* src = samples->sample(batch.indices[i]);
    if (src == nullptr) {
      throw Error("QSL index " + std::to_string(batch.indices[i]) +
                  " is not loaded in the SampleLibrary (unloaded while queued?)");
    }
    if (i > 0 && src != slot.sources.front() + i * input_bytes) contiguous = false;
    slot.sources.push_back(src);
  }
  if (contiguous) {
    batch.input = slot.sources.front();
    batch.input_is_library = true;
    n_bound.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::byte* dst = slot.input.data();
  for (const std::byte* src : slot.sources) {
    std::memcpy(dst, src, input_bytes);
    dst += input_bytes;
  }
  batch.input = slot.input.data();
  batch.input_is_library = false;
}

void Executor::Impl::run_batch(Slot& slot) {
  Batch batch;
  batch.size = slot.ids.size();
  batch.ids = slot.ids.data();
  batch.indices = slot.indices.data();
  batch.output = slot.output.data();
  slot.error.clear();
  const char* stage = "gathering its inputs";
  const auto t0 = Clock::now();
  auto t1 = t0;
  try {
    gather(slot, batch);
    t1 = Clock::now();
    stage = "in the engine";
    engine->enqueue(batch, slot.ctx);
    ns_engine.fetch_add(elapsed_ns(t1, Clock::now()), std::memory_order_relaxed);
  } catch (const std::exception& e) {
    slot.error = e.what();
  } catch (...) {
    slot.error = "unknown exception";
  }
  ns_gather.fetch_add(elapsed_ns(t0, t1), std::memory_order_relaxed);
  if (!slot.error.empty()) {
    std::ostringstream msg;
    msg << "engine '" << engine->name() << "': a batch of " << batch.size << " sample(s) on slot " << slot.ctx.slot
        << " (first QSL index " << slot.indices.front() << ") failed " << stage << ": " << slot.error;
    slot.error = msg.str();
    std::memset(slot.output.data(), 0xFF, batch.size * output_bytes);
    n_failed.fetch_add(1, std::memory_order_relaxed);
    record_error(slot.error, /*engine_error=*/true);
  }
}

// -------------------------------------------------------------------------------- completion
void Executor::Impl::completion_loop() {
  t_executor_thread_owner = this;
  for (;;) {
    std::size_t k = 0;
    {
      std::unique_lock<std::mutex> lk(done_mu);
      done_cv.wait(lk, [this] { return !done.empty() || done_closing; });
      if (done.empty()) return;
      k = done.front();
      done.pop_front();
    }
    Slot& slot = *slots[k];
    // The CUDA path waits here for the slot's output-copied event.
    CompletedBatch completed;
    completed.size = slot.ids.size();
    completed.ids = slot.ids.data();
    completed.indices = slot.indices.data();
    completed.responses = slot.output.data();
    completed.response_bytes = output_bytes;
    completed.error = slot.error.empty() ? nullptr : slot.error.c_str();
    completed.slot = k;
    const auto t0 = Clock::now();
    try {
      sink->complete(completed);
    } catch (const std::exception& e) {
      n_sink_errors.fetch_add(1, std::memory_order_relaxed);
      record_error(std::string("completion sink: ") + e.what(), /*engine_error=*/false);
    } catch (...) {
      n_sink_errors.fetch_add(1, std::memory_order_relaxed);
      record_error("completion sink: unknown exception", /*engine_error=*/false);
    }
    ns_complete.fetch_add(elapsed_ns(t0, Clock::now()), std::memory_order_relaxed);
    n_completed.fetch_add(completed.size, std::memory_order_relaxed);
    n_batches.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(progress_mu);
      active.erase(slot.first_seq);
    }
    progress_cv.notify_all();
    {
      std::lock_guard<std::mutex> lk(free_mu);
      free_slots.push_back(k);
    }
    free_cv.notify_one();
  }
}

// ---------------------------------------------------------------------------- public surface
Executor::Executor(std::shared_ptr<Engine> engine, std::shared_ptr<const SampleLibrary> samples,
                   ExecutorConfig config, std::shared_ptr<CompletionSink> sink)
    : impl_(std::make_unique<Impl>(std::move(engine), std::move(samples), config, std::move(sink))) {
  impl_->start();
}

Executor::~Executor() {
  if (impl_ && t_executor_thread_owner == impl_.get()) {
    // Destroyed from inside its own sink or engine (in Python: a garbage-collected cycle), where
    // it cannot join itself. Finish the drain and join on a thread of its own; the calling
    // thread returns to its loop and exits when the shutdown closes it.
    std::thread([impl = std::move(impl_)]() mutable { impl.reset(); }).detach();
  }
  // Otherwise Impl's destructor stops (draining) and joins.
}

void Executor::submit(const std::uint64_t* ids, const std::uint64_t* indices, std::size_t count) {
  Impl& m = *impl_;
  for (std::size_t i = 0; i < count; ++i) {
    if (!m.samples->contains(indices[i])) {
      throw InvalidArgument("Executor.submit: QSL index " + std::to_string(indices[i]) + " (sample " +
                            std::to_string(i) + " of " + std::to_string(count) +
                            ") is not loaded in the SampleLibrary; load it first (LoadSamplesToRam)");
    }
  }
  bool notify = false;
  {
    std::lock_guard<std::mutex> lk(m.queue_mu);
    if (m.stopping) {
      throw InvalidArgument("Executor.submit: the executor is stopped (stop() was called); create a new Executor");
    }
    if (count == 0) return;
    const std::size_t before = m.queue.size();
    if (before == 0) m.nonempty_since = Clock::now();
    for (std::size_t i = 0; i < count; ++i) m.queue.push_back(QueuedSample{ids[i], indices[i]});
    m.submitted += count;
    const std::size_t after = m.queue.size();
    m.n_queue_depth.store(after, std::memory_order_relaxed);
    if (after > m.n_max_queue_depth.load(std::memory_order_relaxed)) {
      m.n_max_queue_depth.store(after, std::memory_order_relaxed);
    }
    // Wake the batcher only when its decision can change: the queue stopped being empty, or
    // reached the batch size, or reached the hold.
    const std::size_t hold = m.batcher.hold();
    notify = before == 0 || (before < m.batch_size && after >= m.batch_size) ||
             (hold > 0 && before < hold && after >= hold);
  }
  m.n_submitted.fetch_add(count, std::memory_order_relaxed);
  if (notify) m.queue_cv.notify_one();
}

void Executor::submit(const std::vector<std::uint64_t>& ids, const std::vector<std::uint64_t>& indices) {
  if (ids.size() != indices.size()) {
    throw InvalidArgument("Executor.submit: " + std::to_string(ids.size()) + " ids but " +
                          std::to_string(indices.size()) + " indices; pass one QSL index per response id");
  }
  submit(ids.data(), indices.data(), ids.size());
}

void Executor::flush() {
  Impl& m = *impl_;
  m.check_not_own_thread("flush()");
  std::uint64_t target = 0;
  {
    std::lock_guard<std::mutex> lk(m.queue_mu);
    target = m.submitted;
    m.flush_upto = std::max(m.flush_upto, target);
  }
  m.queue_cv.notify_all();
  {
    std::unique_lock<std::mutex> lk(m.progress_mu);
    m.progress_cv.wait(lk, [&m, target] { return m.watermark() >= target; });
  }
  m.report_errors();
}

void Executor::stop() {
  impl_->shutdown();
  impl_->report_errors();
}

void Executor::hold_until(std::size_t n) {
  {
    std::lock_guard<std::mutex> lk(impl_->queue_mu);
    impl_->batcher.hold_until(n);
  }
  impl_->queue_cv.notify_all();
}

ExecutorStats Executor::stats() const {
  const Impl& m = *impl_;
  ExecutorStats s;
  constexpr auto relaxed = std::memory_order_relaxed;
  s.submitted = m.n_submitted.load(relaxed);
  s.completed = m.n_completed.load(relaxed);
  s.batches = m.n_batches.load(relaxed);
  s.failed_batches = m.n_failed.load(relaxed);
  s.sink_errors = m.n_sink_errors.load(relaxed);
  s.bound_batches = m.n_bound.load(relaxed);
  s.queue_depth = m.n_queue_depth.load(relaxed);
  s.max_queue_depth = m.n_max_queue_depth.load(relaxed);
  s.mean_batch_size = s.batches ? static_cast<double>(s.completed) / static_cast<double>(s.batches) : 0.0;
  s.gather_ns = m.ns_gather.load(relaxed);
  s.engine_ns = m.ns_engine.load(relaxed);
  s.complete_ns = m.ns_complete.load(relaxed);
  return s;
}

std::optional<std::string> Executor::last_error() const {
  std::lock_guard<std::mutex> lk(impl_->error_mu);
  if (impl_->last_error.empty()) return std::nullopt;
  return impl_->last_error;
}

const ExecutorConfig& Executor::config() const noexcept { return impl_->config; }

const Engine& Executor::engine() const noexcept { return *impl_->engine; }

}  // namespace fastres
