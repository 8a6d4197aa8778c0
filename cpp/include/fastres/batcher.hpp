// Batcher: when to take samples off the executor's queue, and how many. Pure decision logic
// with no threads and no clock of its own, so it is tested with made-up times.
//
// Semantics: NVIDIA's LWIS harness (closed/*/code/harness/lwis: SyncQueue::acquire in
// lwis.hpp, Server::ProcessSamples in lwis.cpp), which Dell ran in MLPerf Inference v2.1.
//
//  * An acquire window opens when the batcher is ready for more work: at start, and again each
//    time it has handed every batch of its previous take to a stream slot (LWIS calls acquire()
//    in a loop, after the issue loop, which blocks until a slot is free for each batch).
//  * The window lasts `timeout` (LWIS `deque_timeout_usec`, default 10000). It ends early as
//    soon as at least `batch_size` samples are queued (the wait_for predicate
//    `queue.size() >= size`).
//  * When it ends with samples queued, the batcher takes them: ALL of them when `deque_limit`
//    is 0 (LWIS's default, `use_deque_limit=false`: `values.swap(m_Queue)`), or at most
//    `deque_limit` (LWIS `use_deque_limit=true` takes at most the batch size, leaving the rest
//    queued for the next window). The take is then split into batches of at most `batch_size`
//    in queue order: full batches, then one partial batch.
//  * When a window ends with the queue empty, LWIS simply calls acquire() again: a new window
//    opens at once. So a sample that reaches an idle queue waits until the end of the window it
//    arrived in, at most `timeout`, not a full `timeout` from its own arrival (that would be
//    Triton's max_queue_delay). This class reproduces those back-to-back windows by arithmetic
//    (window k ends at start + k * timeout) instead of waking the thread every `timeout` while
//    idle. timeout == 0 means: take whatever is queued at once.
//
// Two additions LWIS does not have: `urgent` (flush() and stop() take what is queued now,
// without waiting for the window), and hold_until(n), a test knob after Triton's delayed
// scheduler: the batcher takes nothing until n samples are queued (or something is urgent); the
// acquire window then opens at that moment. It makes batching deterministic without sleeps.
//
// Thread-safety: none. The executor owns one Batcher and calls it under its queue lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>

namespace fastres {

using Clock = std::chrono::steady_clock;

struct BatchPolicy {
  std::size_t batch_size = 1;                // >= 1
  std::chrono::microseconds timeout{10000};  // >= 0: LWIS deque_timeout_usec
  std::size_t deque_limit = 0;               // 0: no limit; else >= batch_size
};

// What the batcher needs to know about the queue at one moment.
struct QueueState {
  std::size_t queued = 0;              // samples waiting
  Clock::time_point nonempty_since{};  // when the queue last went from empty to non-empty
  bool urgent = false;                 // flush()/stop(): take what is queued without waiting
};

struct BatchDecision {
  std::size_t take = 0;                 // > 0: take this many samples off the queue head now
  std::optional<Clock::duration> wait;  // take == 0: ask again after this long, or when notified
                                        // (nullopt: only when notified)
};

class Batcher {
 public:
  // now: when the first acquire window opens.
  Batcher(BatchPolicy policy, Clock::time_point now) noexcept;

  // Opens a new acquire window at `now`. Call after every batch of the previous take has a slot.
  void begin_acquire(Clock::time_point now) noexcept { window_start_ = now; }

  // Test knob: take nothing until n samples are queued (0 clears it). One-shot: once n are
  // queued the hold clears itself and a window opens.
  void hold_until(std::size_t n) noexcept { hold_ = n; }
  std::size_t hold() const noexcept { return hold_; }

  // The decision at `now`. Not const: releasing a satisfied hold opens a window.
  BatchDecision next(const QueueState& queue, Clock::time_point now) noexcept;

  // How many samples a take removes when `queued` are waiting (the deque limit applied).
  std::size_t take_count(std::size_t queued) const noexcept;
  // When the current window ends for samples that arrived at `arrival` (see the header comment).
  Clock::time_point window_end(Clock::time_point arrival) const noexcept;

  const BatchPolicy& policy() const noexcept { return policy_; }

 private:
  BatchPolicy policy_;
  Clock::time_point window_start_;
  std::size_t hold_ = 0;
};

}  // namespace fastres
