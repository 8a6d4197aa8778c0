// The batcher's decisions with made-up times: LWIS deque semantics, no threads, no sleeps.
#include <chrono>

#include "check.hpp"
#include "fastres/batcher.hpp"

using fastres::BatchDecision;
using fastres::Batcher;
using fastres::BatchPolicy;
using fastres::Clock;
using fastres::QueueState;
using namespace std::chrono_literals;

namespace {

const Clock::time_point t0 = Clock::time_point(1h);  // an arbitrary origin

Batcher make(std::size_t batch, std::chrono::microseconds timeout, std::size_t limit = 0) {
  return Batcher(BatchPolicy{batch, timeout, limit}, t0);
}

}  // namespace

TEST_CASE(empty_queue_waits_until_notified) {
  Batcher b = make(8, 10ms);
  const BatchDecision d = b.next(QueueState{0, t0, false}, t0 + 3ms);
  CHECK_EQ(d.take, 0u);
  CHECK(!d.wait.has_value());
}

TEST_CASE(full_batch_is_taken_at_once_and_without_limit_everything_goes) {
  Batcher b = make(8, 10ms);
  CHECK_EQ(b.next(QueueState{8, t0, false}, t0).take, 8u);
  // LWIS use_deque_limit=false: acquire() swaps the whole queue out.
  CHECK_EQ(b.next(QueueState{30, t0, false}, t0).take, 30u);
}

TEST_CASE(deque_limit_caps_one_take) {
  Batcher b = make(8, 10ms, 8);  // LWIS use_deque_limit=true
  CHECK_EQ(b.next(QueueState{30, t0, false}, t0).take, 8u);
  Batcher wide = make(8, 10ms, 20);
  CHECK_EQ(wide.next(QueueState{30, t0, false}, t0).take, 20u);
  // A partial batch at the end of a window is under any limit >= batch_size.
  CHECK_EQ(b.next(QueueState{3, t0, false}, t0 + 10ms).take, 3u);
}

TEST_CASE(partial_batch_waits_for_the_end_of_its_window) {
  Batcher b = make(8, 10ms);
  // Three samples arrived 4 ms into the window that opened at t0: it ends at t0 + 10 ms.
  BatchDecision d = b.next(QueueState{3, t0 + 4ms, false}, t0 + 4ms);
  CHECK_EQ(d.take, 0u);
  CHECK(d.wait.has_value());
  CHECK(*d.wait == 6ms);
  d = b.next(QueueState{3, t0 + 4ms, false}, t0 + 9ms);
  CHECK(*d.wait == 1ms);
  CHECK_EQ(b.next(QueueState{3, t0 + 4ms, false}, t0 + 10ms).take, 3u);
  // A late wake-up still takes them (the window does not slide).
  CHECK_EQ(b.next(QueueState{3, t0 + 4ms, false}, t0 + 25ms).take, 3u);
}

TEST_CASE(idle_windows_run_back_to_back) {
  // LWIS re-arms acquire() whenever a window ends empty: a sample arriving 23 ms after the
  // window opened (windows of 10 ms) is taken at 30 ms, not at 33 ms.
  Batcher b = make(8, 10ms);
  const BatchDecision d = b.next(QueueState{1, t0 + 23ms, false}, t0 + 23ms);
  CHECK_EQ(d.take, 0u);
  CHECK(*d.wait == 7ms);
  CHECK(b.window_end(t0 + 20ms) == t0 + 20ms);  // on a boundary: that window's end
  CHECK(b.window_end(t0 + 20ms + 1us) == t0 + 30ms);
  CHECK(b.window_end(t0) == t0 + 10ms);
}

TEST_CASE(backlog_at_window_open_waits_a_full_window) {
  Batcher b = make(8, 10ms, 8);
  // Samples queued before the window opened (left over by a limited take): the new acquire
  // waits up to the whole timeout for the batch to fill.
  b.begin_acquire(t0 + 50ms);
  const BatchDecision d = b.next(QueueState{5, t0 + 1ms, false}, t0 + 50ms);
  CHECK_EQ(d.take, 0u);
  CHECK(*d.wait == 10ms);
}

TEST_CASE(zero_timeout_takes_whatever_is_queued) {
  Batcher b = make(8, 0us);
  CHECK_EQ(b.next(QueueState{1, t0, false}, t0).take, 1u);
  CHECK(b.window_end(t0 + 5ms) == t0 + 5ms);
}

TEST_CASE(urgent_takes_now_respecting_the_limit) {
  Batcher b = make(8, 10ms, 8);
  CHECK_EQ(b.next(QueueState{3, t0, true}, t0).take, 3u);
  CHECK_EQ(b.next(QueueState{20, t0, true}, t0).take, 8u);
}

TEST_CASE(hold_until_blocks_then_opens_a_window) {
  Batcher b = make(4, 10ms);
  b.hold_until(10);
  BatchDecision d = b.next(QueueState{9, t0, false}, t0 + 50ms);
  CHECK_EQ(d.take, 0u);
  CHECK(!d.wait.has_value());  // held: no deadline at all
  CHECK_EQ(b.next(QueueState{10, t0, false}, t0 + 60ms).take, 10u);
  CHECK_EQ(b.hold(), 0u);  // one-shot

  Batcher partial = make(8, 10ms);
  partial.hold_until(3);
  d = partial.next(QueueState{3, t0, false}, t0 + 60ms);
  CHECK_EQ(d.take, 0u);  // the window opens when the hold releases: wait a full timeout
  CHECK(*d.wait == 10ms);

  Batcher flushed = make(4, 10ms);
  flushed.hold_until(10);
  CHECK_EQ(flushed.next(QueueState{2, t0, true}, t0).take, 2u);  // flush/stop override the hold
}

TEST_CASE(take_count_applies_the_limit) {
  CHECK_EQ(make(8, 1ms).take_count(100), 100u);
  CHECK_EQ(make(8, 1ms, 16).take_count(100), 16u);
  CHECK_EQ(make(8, 1ms, 16).take_count(5), 5u);
}

int main(int argc, char** argv) { return check::run(argc, argv); }
