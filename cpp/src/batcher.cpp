#include "fastres/batcher.hpp"

#include <algorithm>

namespace fastres {

Batcher::Batcher(BatchPolicy policy, Clock::time_point now) noexcept : policy_(policy), window_start_(now) {}

std::size_t Batcher::take_count(std::size_t queued) const noexcept {
  return policy_.deque_limit == 0 ? queued : std::min(queued, policy_.deque_limit);
}

Clock::time_point Batcher::window_end(Clock::time_point arrival) const noexcept {
  const auto period = std::chrono::duration_cast<Clock::duration>(policy_.timeout);
  if (period <= Clock::duration::zero()) return std::max(arrival, window_start_);
  // Windows run back to back from window_start_; the one holding `arrival` ends at
  // window_start_ + k * period with k = max(1, ceil((arrival - window_start_) / period)).
  const auto elapsed = std::max(arrival - window_start_, Clock::duration::zero());
  const auto k = std::max<Clock::rep>(1, (elapsed.count() + period.count() - 1) / period.count());
  return window_start_ + period * k;
}

BatchDecision Batcher::next(const QueueState& queue, Clock::time_point now) noexcept {
  if (queue.queued == 0) return {};
  if (hold_ > 0) {
    if (queue.queued < hold_ && !queue.urgent) return {};
    hold_ = 0;
    window_start_ = now;  // the held batcher starts its acquire now
  }
  if (queue.urgent || queue.queued >= policy_.batch_size || policy_.timeout.count() == 0) {
    return {take_count(queue.queued), std::nullopt};
  }
  const auto end = window_end(queue.nonempty_since);
  if (now >= end) return {take_count(queue.queued), std::nullopt};
  return {0, end - now};
}

}  // namespace fastres
