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
#include "slot_pipeline.hpp"

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
  check_knob("watchdog_ms", c.watchdog_ms, 0, kMaxWatchdogMs, "milliseconds; 0 is off");
  if (io.device == Device::kCpu) {
    const std::pair<const char*, bool> cuda_only[] = {{"use_graphs", c.use_graphs},
                                                      {"start_from_device", c.start_from_device},
                                                      {"run_infer_on_copy_streams", c.run_infer_on_copy_streams},
                                                      {"use_spin_wait", c.use_spin_wait},
                                                      {"devices", !c.devices.empty()}};
    for (const auto& [knob, set] : cuda_only) {
      if (set) {
        throw InvalidArgument(std::string("ExecutorConfig.") + knob +
                              " applies to CUDA engines only, and this engine runs on the CPU; leave it unset");
      }
    }
    return;
  }
#if !defined(FASTRES_WITH_CUDA)
  throw Unavailable("the engine runs on CUDA, but this build of fastres has no CUDA path; rebuild it with nvcc "
                    "installed (FASTRES_WITH_CUDA=ON pip install .) on a machine with an NVIDIA GPU");
#else
  if (c.devices.size() > static_cast<std::size_t>(kMaxStreams)) {
    throw InvalidArgument("ExecutorConfig.devices: " + std::to_string(c.devices.size()) + " devices; at most " +
                          std::to_string(kMaxStreams));
  }
  for (std::size_t i = 0; i < c.devices.size(); ++i) {
    if (c.devices[i] < 0) {
      throw InvalidArgument("ExecutorConfig.devices[" + std::to_string(i) + "]=" + std::to_string(c.devices[i]) +
                            ": a CUDA device index is >= 0");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (c.devices[j] == c.devices[i]) {
        throw InvalidArgument("ExecutorConfig.devices lists device " + std::to_string(c.devices[i]) +
                              " twice; name each device once (copy_streams sets the slots per device)");
      }
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------------
struct Executor::Impl {
  // A stream slot's life: free (on its device's free list) -> busy (the batcher gave it a batch;
  // worker, then completion thread) -> claimed (a completion thread is completing it) -> free.
  // The watchdog may take a busy slot: busy -> retired, for good. The state lives in the low bits
  // of a word whose upper bits count the batches, so the watchdog's compare-and-swap can only
  // take the batch it judged, never a later one the slot has started since.
  enum SlotState : std::uint64_t { kFree, kBusy, kClaimed, kRetired };
  static constexpr std::uint64_t kStateMask = 3;
  static SlotState state_of(std::uint64_t word) { return static_cast<SlotState>(word & kStateMask); }
  static std::uint64_t with_state(std::uint64_t word, SlotState state) { return (word & ~kStateMask) | state; }

  struct Slot {
    StreamContext ctx;
    std::size_t device = 0;  // index into the pipelines' devices
    std::unique_ptr<EngineSlotState> engine_state;
    std::unique_ptr<detail::SlotPipeline> pipeline;
    std::vector<std::uint64_t> ids;
    std::vector<std::uint64_t> indices;
    std::uint64_t first_seq = 0;  // sequence number of ids[0]
    std::string error;            // this batch's error; empty: it succeeded
    std::string setup_error;      // the worker could not prepare its thread (CUDA device)

    std::atomic<std::uint64_t> word{kFree};      // batch count << 2 | SlotState
    std::atomic<std::int64_t> busy_since_ns{0};  // Clock time the batch was handed to the slot
    std::atomic<bool> give_up{false};            // set by the watchdog: stop waiting for this batch
    std::atomic<bool> worker_exited{false};

    std::mutex mu;  // guards the mailbox
    std::condition_variable cv;
    bool has_work = false;
    bool closing = false;
    std::thread worker;
  };

  Impl(std::shared_ptr<Engine> engine_in, std::shared_ptr<const SampleLibrary> samples_in, ExecutorConfig config_in,
       std::shared_ptr<CompletionSink> sink_in);
  ~Impl();

  void start(const std::shared_ptr<Impl>& self);
  void shutdown();
  void close_slots();
  void join_workers();
  void report_errors();

  void batcher_loop();
  void slot_loop(Slot& slot);
  void completion_loop();
  void watchdog_loop();

  void dispatch(std::vector<QueuedSample>& taken, std::uint64_t first_seq);
  std::optional<std::size_t> acquire_free_slot();
  void run_batch(Slot& slot);
  // Hands one batch to the sink (a null error: it succeeded) and records it as done.
  void complete(const std::uint64_t* ids, const std::uint64_t* indices, std::size_t n, const std::byte* responses,
                const char* error, std::size_t slot, std::uint64_t first_seq);
  void fail_without_slot(const std::vector<QueuedSample>& taken, std::size_t off, std::size_t n, std::uint64_t seq);
  void release_slot(std::size_t k);
  void retire(std::size_t k, std::uint64_t word, std::int64_t now_ns);
  void record_error(const std::string& message, bool engine_error);
  void check_not_own_thread(const char* what) const;
  std::uint64_t watermark() const { return active.empty() ? taken : *active.begin(); }
  static std::int64_t now_ns() { return Clock::now().time_since_epoch().count(); }

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

  // What the pipelines count (ExecutorStats), then the pipelines' maker, which must outlive the
  // slots' pipelines (they use what it shares), so it is declared before `slots`.
  detail::PipelineCounters counters;
  std::unique_ptr<detail::PipelineFactory> pipelines;

  // Stream slots and, per device, the free list (FIFO, like LWIS's stream queue) and the number
  // of slots not retired.
  std::vector<std::unique_ptr<Slot>> slots;
  std::mutex free_mu;
  std::condition_variable free_cv;
  std::vector<std::deque<std::size_t>> free_slots;
  std::vector<std::size_t> live_slots;
  std::size_t next_device = 0;            // round-robin over devices; batcher thread only
  std::vector<std::size_t> next_infer;    // per device, round-robin over its inference streams

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
      n_queue_depth{0}, n_max_queue_depth{0}, n_watchdog{0}, n_retired{0}, ns_gather{0}, ns_engine{0},
      ns_device_wait{0}, ns_complete{0};

  // The watchdog (watchdog_ms > 0): its thread and the answers it completes retired batches with.
  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool watchdog_stop = false;
  std::vector<std::byte> failed_answers;

  std::thread batcher_thread;
  std::thread watchdog_thread;
  std::vector<std::thread> completion_threads;
  std::mutex lifecycle_mu;
  std::mutex worker_exit_mu;
  std::condition_variable worker_exit_cv;
  bool joined = false;
};

Executor::Impl::Impl(std::shared_ptr<Engine> engine_in, std::shared_ptr<const SampleLibrary> samples_in,
                     ExecutorConfig config_in, std::shared_ptr<CompletionSink> sink_in)
    : engine(std::move(engine_in)),
      samples(std::move(samples_in)),
      config(std::move(config_in)),
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
#if defined(FASTRES_WITH_CUDA)
  pipelines = io.device == Device::kCuda ? detail::make_cuda_pipelines(*engine, *samples, config, counters)
                                         : detail::make_cpu_pipelines(*engine, *samples, config, counters);
#else
  pipelines = detail::make_cpu_pipelines(*engine, *samples, config, counters);
#endif
  const std::size_t devices = pipelines->device_count();
  const auto per_device = static_cast<std::size_t>(config.copy_streams);
  free_slots.resize(devices);
  live_slots.assign(devices, per_device);
  next_infer.assign(devices, 0);
  slots.reserve(devices * per_device);
  // Slots are numbered device by device: slot k runs on device k / copy_streams.
  for (std::size_t d = 0; d < devices; ++d) {
    for (std::size_t j = 0; j < per_device; ++j) {
      auto slot = std::make_unique<Slot>();
      const std::size_t k = slots.size();
      slot->ctx.slot = k;
      slot->device = d;
      slot->ids.reserve(batch_size);
      slot->indices.reserve(batch_size);
      Slot& s = *slot;
      s.pipeline = pipelines->make(s.ctx, d, [&] {
        s.engine_state = engine->create_slot_state(s.ctx);
        s.ctx.engine_state = s.engine_state.get();
      });
      slots.push_back(std::move(slot));
      free_slots[d].push_back(k);
    }
  }
  if (config.watchdog_ms > 0) failed_answers.assign(batch_size * output_bytes, std::byte{0xFF});
}

Executor::Impl::~Impl() {
  try {
    shutdown();
  } catch (...) {
    // Only reachable when destroyed from its own thread, which the contract forbids (or by the
    // last hung worker returning after stop(), when everything was already shut down).
  }
  if (n_retired.load() > 0 && engine->io().device == Device::kCuda) {
    // Work the watchdog gave up on may still be queued on the device: freeing its buffers,
    // streams or the engine's per-slot state would wait for it, maybe forever (cudaFree and
    // cudaFreeHost synchronise the device). Park them for the life of the process instead
    // (reachable, so leak checkers stay quiet).
    static auto* parked = new std::vector<std::shared_ptr<void>>();
    static std::mutex parked_mu;
    std::lock_guard<std::mutex> lk(parked_mu);
    for (auto& slot : slots) {
      parked->emplace_back(std::shared_ptr<detail::SlotPipeline>(std::move(slot->pipeline)));
      parked->emplace_back(std::shared_ptr<EngineSlotState>(std::move(slot->engine_state)));
    }
    parked->emplace_back(std::shared_ptr<detail::PipelineFactory>(std::move(pipelines)));
    // Freeing pinned memory synchronises the device too: the library stays, as does the engine
    // (its own device memory).
    parked->emplace_back(std::const_pointer_cast<SampleLibrary>(samples));
    parked->emplace_back(engine);
  }
}

void Executor::Impl::start(const std::shared_ptr<Impl>& self) {
  try {
    for (std::int64_t i = 0; i < config.complete_threads; ++i) completion_threads.emplace_back([this] { completion_loop(); });
    // A slot worker holds the executor alive: when the watchdog retires its slot while the
    // engine call hangs, stop() leaves the thread to return on its own, later.
    for (auto& slot : slots) slot->worker = std::thread([self, s = slot.get()] { self->slot_loop(*s); });
    batcher_thread = std::thread([this] { batcher_loop(); });
    if (config.watchdog_ms > 0) watchdog_thread = std::thread([this] { watchdog_loop(); });
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
  join_workers();
  {
    std::lock_guard<std::mutex> lk(done_mu);
    done_closing = true;
  }
  done_cv.notify_all();
  for (auto& t : completion_threads) {
    if (t.joinable()) t.join();
  }
  {
    std::lock_guard<std::mutex> lk(watchdog_mu);
    watchdog_stop = true;
  }
  watchdog_cv.notify_all();
  if (watchdog_thread.joinable()) watchdog_thread.join();
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

void Executor::Impl::join_workers() {
  // A worker exits once its slot is closed and idle; one whose engine call hangs exits only when
  // the call returns. Wait for each until it exits or the watchdog retires its slot; a retired
  // slot's worker is left to finish on its own (it holds the executor alive meanwhile).
  for (auto& slot : slots) {
    {
      std::unique_lock<std::mutex> lk(worker_exit_mu);
      worker_exit_cv.wait(lk, [&slot] {
        return slot->worker_exited.load() || state_of(slot->word.load()) == kRetired;
      });
    }
    if (!slot->worker.joinable()) continue;
    if (slot->worker_exited.load()) {
      slot->worker.join();
    } else {
      slot->worker.detach();
    }
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
    dispatch(taken_now, first_seq);
  }
}

void Executor::Impl::dispatch(std::vector<QueuedSample>& taken_now, std::uint64_t first_seq) {
  // Register the batches before any can complete, so flush() never sees a gap.
  {
    std::lock_guard<std::mutex> lk(progress_mu);
    for (std::size_t off = 0; off < taken_now.size(); off += batch_size) active.insert(first_seq + off);
    taken = first_seq + taken_now.size();
  }
  const auto infer_streams = static_cast<std::size_t>(config.infer_streams);
  for (std::size_t off = 0; off < taken_now.size(); off += batch_size) {
    const std::size_t n = std::min(batch_size, taken_now.size() - off);
    const std::optional<std::size_t> k = acquire_free_slot();  // blocks: the backpressure
    if (!k) {
      fail_without_slot(taken_now, off, n, first_seq + off);
      continue;
    }
    Slot& slot = *slots[*k];
    slot.ids.clear();
    slot.indices.clear();
    for (std::size_t i = off; i < off + n; ++i) {
      slot.ids.push_back(taken_now[i].id);
      slot.indices.push_back(taken_now[i].index);
    }
    slot.first_seq = first_seq + off;
    // Round-robin over the device's inference streams, as LWIS does per GPU.
    std::size_t& infer = next_infer[slot.device];
    slot.ctx.infer_stream = infer;
    infer = (infer + 1) % infer_streams;
    slot.give_up.store(false, std::memory_order_relaxed);
    if (config.watchdog_ms > 0) slot.busy_since_ns.store(now_ns(), std::memory_order_relaxed);
    const std::uint64_t previous = slot.word.load(std::memory_order_relaxed);
    slot.word.store(with_state(previous + (kStateMask + 1), kBusy), std::memory_order_release);
    {
      std::lock_guard<std::mutex> lk(slot.mu);
      slot.has_work = true;
    }
    slot.cv.notify_one();
  }
  taken_now.clear();
}

std::optional<std::size_t> Executor::Impl::acquire_free_slot() {
  // Round-robin over the devices that still have a slot the watchdog has not retired, then wait
  // for a free slot of that device (FIFO). None: every slot is retired, or the device's last
  // live slot was retired while waiting.
  std::unique_lock<std::mutex> lk(free_mu);
  const std::size_t n = live_slots.size();
  std::size_t device = n;
  for (std::size_t step = 0; step < n && device == n; ++step) {
    const std::size_t d = (next_device + step) % n;
    if (live_slots[d] > 0) device = d;
  }
  if (device == n) return std::nullopt;
  next_device = (device + 1) % n;
  free_cv.wait(lk, [this, device] { return !free_slots[device].empty() || live_slots[device] == 0; });
  if (free_slots[device].empty()) return std::nullopt;
  const std::size_t k = free_slots[device].front();
  free_slots[device].pop_front();
  return k;
}

void Executor::Impl::fail_without_slot(const std::vector<QueuedSample>& taken_now, std::size_t off, std::size_t n,
                                       std::uint64_t seq) {
  // Every slot is retired: the watchdog gave up on hung engine calls. Fail the batch at once
  // rather than wait for slots that will never come back.
  std::vector<std::uint64_t> ids(n), indices(n);
  for (std::size_t i = 0; i < n; ++i) {
    ids[i] = taken_now[off + i].id;
    indices[i] = taken_now[off + i].index;
  }
  const std::string error = "engine '" + engine->name() +
                            "': no stream slot left to run a batch of " + std::to_string(n) +
                            " sample(s): the watchdog retired every slot after engine calls hung for more than "
                            "watchdog_ms=" + std::to_string(config.watchdog_ms);
  const std::vector<std::byte> answers(n * output_bytes, std::byte{0xFF});
  n_failed.fetch_add(1, std::memory_order_relaxed);
  record_error(error, /*engine_error=*/true);
  complete(ids.data(), indices.data(), n, answers.data(), error.c_str(), slots.size(), seq);
}

// ------------------------------------------------------------------------------- stream slot
void Executor::Impl::slot_loop(Slot& slot) {
  t_executor_thread_owner = this;
  bool bound = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lk(slot.mu);
      slot.cv.wait(lk, [&slot] { return slot.has_work || slot.closing; });
      if (!slot.has_work) break;
      slot.has_work = false;
    }
    if (!bound) {
      try {
        slot.pipeline->bind_thread();
      } catch (const std::exception& e) {
        slot.setup_error = e.what();  // every batch of this slot fails with it
      }
      bound = true;
    }
    run_batch(slot);
    if (state_of(slot.word.load(std::memory_order_acquire)) == kRetired) break;  // the watchdog completed it
    {
      std::lock_guard<std::mutex> lk(done_mu);
      done.push_back(slot.ctx.slot);
    }
    done_cv.notify_one();
  }
  {
    std::lock_guard<std::mutex> lk(worker_exit_mu);
    slot.worker_exited.store(true);
  }
  worker_exit_cv.notify_all();
}

void Executor::Impl::run_batch(Slot& slot) {
  const detail::SlotRequest request{slot.ids.data(), slot.indices.data(), slot.ids.size()};
  const char* stage = "gathering its inputs";
  detail::StageTimes times;
  std::string error = slot.setup_error;
  slot.error.clear();
  if (error.empty()) {
    try {
      slot.pipeline->run(request, slot.ctx, times, stage);
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "unknown exception";
    }
  } else {
    stage = "setting up its stream slot";
  }
  ns_gather.fetch_add(times.gather_ns, std::memory_order_relaxed);
  ns_engine.fetch_add(times.engine_ns, std::memory_order_relaxed);
  if (!error.empty()) {
    std::ostringstream msg;
    msg << "engine '" << engine->name() << "': a batch of " << request.size << " sample(s) on slot " << slot.ctx.slot
        << " (first QSL index " << slot.indices.front() << ") failed " << stage << ": " << error;
    slot.error = msg.str();
  }
}

// -------------------------------------------------------------------------------- completion
void Executor::Impl::complete(const std::uint64_t* ids, const std::uint64_t* indices, std::size_t n,
                              const std::byte* responses, const char* error, std::size_t slot,
                              std::uint64_t first_seq) {
  CompletedBatch completed;
  completed.size = n;
  completed.ids = ids;
  completed.indices = indices;
  completed.responses = responses;
  completed.response_bytes = output_bytes;
  completed.error = error;
  completed.slot = slot;
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
    active.erase(first_seq);
  }
  progress_cv.notify_all();
}

void Executor::Impl::release_slot(std::size_t k) {
  Slot& slot = *slots[k];
  slot.word.store(with_state(slot.word.load(std::memory_order_relaxed), kFree), std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(free_mu);
    free_slots[slot.device].push_back(k);
  }
  free_cv.notify_one();  // only the batcher waits for a free slot
}

void Executor::Impl::completion_loop() {
  t_executor_thread_owner = this;
  std::size_t pending_in_a_row = 0;  // polled batches found not ready, one after another
  for (;;) {
    std::size_t k = 0;
    std::size_t queued = 0;
    {
      std::unique_lock<std::mutex> lk(done_mu);
      done_cv.wait(lk, [this] { return !done.empty() || done_closing; });
      if (done.empty()) return;
      k = done.front();
      done.pop_front();
      queued = done.size();
    }
    Slot& slot = *slots[k];
    if (slot.give_up.load(std::memory_order_acquire)) continue;  // the watchdog completed it
    if (slot.error.empty()) {
      const auto t0 = Clock::now();
      try {
        if (slot.pipeline->polls()) {
          if (!slot.pipeline->ready()) {
            // Not yet: back of the queue, so a later batch that is ready is not held up behind
            // this one. Rest a moment once every queued batch was found pending in turn.
            {
              std::lock_guard<std::mutex> lk(done_mu);
              done.push_back(k);
            }
            if (++pending_in_a_row > queued) {
              pending_in_a_row = 0;
              if (config.use_spin_wait) {
                std::this_thread::yield();
              } else {
                std::this_thread::sleep_for(std::chrono::microseconds(20));
              }
            }
            continue;
          }
        } else {
          slot.pipeline->wait();
        }
      } catch (const std::exception& e) {
        slot.error = "engine '" + engine->name() + "': a batch of " + std::to_string(slot.ids.size()) +
                     " sample(s) on slot " + std::to_string(k) + " failed on the device: " + e.what();
      }
      ns_device_wait.fetch_add(elapsed_ns(t0, Clock::now()), std::memory_order_relaxed);
    }
    pending_in_a_row = 0;
    // Only the watchdog can have moved the slot on from busy: then the batch is completed already.
    std::uint64_t word = slot.word.load(std::memory_order_acquire);
    if (state_of(word) != kBusy ||
        !slot.word.compare_exchange_strong(word, with_state(word, kClaimed), std::memory_order_acq_rel)) {
      continue;
    }
    const bool failed = !slot.error.empty();
    std::byte* responses = slot.pipeline->responses();
    if (failed) {
      std::memset(responses, 0xFF, slot.ids.size() * output_bytes);
      n_failed.fetch_add(1, std::memory_order_relaxed);
      record_error(slot.error, /*engine_error=*/true);
    }
    complete(slot.ids.data(), slot.indices.data(), slot.ids.size(), responses, failed ? slot.error.c_str() : nullptr,
             k, slot.first_seq);
    release_slot(k);
  }
}

// -------------------------------------------------------------------------------- watchdog
void Executor::Impl::watchdog_loop() {
  t_executor_thread_owner = this;
  const auto limit_ns = config.watchdog_ms * 1'000'000;
  // Check often enough that a hung batch is given up on within 1.25 x the limit.
  const auto period = std::chrono::nanoseconds(std::clamp<std::int64_t>(limit_ns / 4, 1'000'000, 250'000'000));
  std::unique_lock<std::mutex> lk(watchdog_mu);
  while (!watchdog_stop) {
    watchdog_cv.wait_for(lk, period);
    if (watchdog_stop) break;
    lk.unlock();
    const std::int64_t now = now_ns();
    for (std::size_t k = 0; k < slots.size(); ++k) {
      Slot& slot = *slots[k];
      const std::uint64_t word = slot.word.load(std::memory_order_acquire);
      if (state_of(word) != kBusy) continue;
      if (now - slot.busy_since_ns.load(std::memory_order_relaxed) > limit_ns) retire(k, word, now);
    }
    lk.lock();
  }
}

void Executor::Impl::retire(std::size_t k, std::uint64_t word, std::int64_t now) {
  Slot& slot = *slots[k];
  if (!slot.word.compare_exchange_strong(word, with_state(word, kRetired), std::memory_order_acq_rel)) {
    return;  // completed meanwhile (and maybe busy again with a later batch)
  }
  slot.give_up.store(true, std::memory_order_release);
  const double busy_ms = static_cast<double>(now - slot.busy_since_ns.load(std::memory_order_relaxed)) / 1e6;
  std::ostringstream msg;
  msg << "engine '" << engine->name() << "' hung: a batch of " << slot.ids.size() << " sample(s) on slot " << k
      << " (first QSL index " << slot.indices.front() << ") was still running after " << static_cast<long long>(busy_ms)
      << " ms, over watchdog_ms=" << config.watchdog_ms
      << "; its samples were completed as failed and the slot retired. Find why the engine stalls, or raise "
         "watchdog_ms if batches are legitimately this slow";
  const std::string error = msg.str();
  n_failed.fetch_add(1, std::memory_order_relaxed);
  n_watchdog.fetch_add(1, std::memory_order_relaxed);
  n_retired.fetch_add(1, std::memory_order_relaxed);
  record_error(error, /*engine_error=*/true);
  // The slot's ids and indices stay untouched: nobody refills a retired slot.
  complete(slot.ids.data(), slot.indices.data(), slot.ids.size(), failed_answers.data(), error.c_str(), k,
           slot.first_seq);
  {
    std::lock_guard<std::mutex> lk(free_mu);
    --live_slots[slot.device];
  }
  free_cv.notify_all();
  {
    std::lock_guard<std::mutex> lk(worker_exit_mu);
  }
  worker_exit_cv.notify_all();
}

// ---------------------------------------------------------------------------- public surface
Executor::Executor(std::shared_ptr<Engine> engine, std::shared_ptr<const SampleLibrary> samples,
                   ExecutorConfig config, std::shared_ptr<CompletionSink> sink) {
  auto impl = std::make_shared<Impl>(std::move(engine), std::move(samples), std::move(config), std::move(sink));
  impl->start(impl);
  impl_ = std::move(impl);
}

Executor::~Executor() {
  if (impl_ && t_executor_thread_owner == impl_.get()) {
    // Destroyed from inside its own sink or engine (in Python: a garbage-collected cycle), where
    // it cannot join itself. Finish the drain and join on a thread of its own; the calling
    // thread returns to its loop and exits when the shutdown closes it.
    std::thread([impl = std::move(impl_)]() mutable {
      impl->shutdown();
      impl.reset();
    }).detach();
    return;
  }
  if (impl_) {
    try {
      impl_->shutdown();
    } catch (...) {
    }
  }
  // The slot workers' references go with their threads; a retired, hung worker keeps the rest
  // alive until its engine call returns.
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

void Executor::sync_library() {
  impl_->check_not_own_thread("sync_library()");
  impl_->pipelines->sync_library();
}

bool Executor::pinned() const noexcept { return impl_->pipelines->pinned(); }

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
  s.bound_batches = m.counters.bound.load(relaxed);
  s.queue_depth = m.n_queue_depth.load(relaxed);
  s.max_queue_depth = m.n_max_queue_depth.load(relaxed);
  s.mean_batch_size = s.batches ? static_cast<double>(s.completed) / static_cast<double>(s.batches) : 0.0;
  s.watchdog_batches = m.n_watchdog.load(relaxed);
  s.retired_slots = m.n_retired.load(relaxed);
  s.h2d_copies = m.counters.h2d_copies.load(relaxed);
  s.device_gathers = m.counters.device_gathers.load(relaxed);
  s.graph_captures = m.counters.graph_captures.load(relaxed);
  s.graph_launches = m.counters.graph_launches.load(relaxed);
  s.library_uploads = m.counters.library_uploads.load(relaxed);
  s.gather_ns = m.ns_gather.load(relaxed);
  s.engine_ns = m.ns_engine.load(relaxed);
  s.device_wait_ns = m.ns_device_wait.load(relaxed);
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
