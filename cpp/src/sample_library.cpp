#include "fastres/sample_library.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "fastres/status.hpp"

namespace fastres {

SampleLibrary::SampleLibrary(std::size_t sample_bytes, std::shared_ptr<HostAllocator> allocator)
    : sample_bytes_(sample_bytes), allocator_(allocator ? std::move(allocator) : default_host_allocator()) {
  if (sample_bytes_ == 0) {
    throw InvalidArgument("SampleLibrary sample_bytes=0: must be >= 1 (the engine's per-sample input bytes)");
  }
}

void SampleLibrary::reserve_slots(std::size_t slots) {
  if (slots <= capacity()) return;
  HostBuffer bigger(slots * sample_bytes_, allocator_);
  if (next_slot_ > 0) std::memcpy(bigger.data(), block_.data(), next_slot_ * sample_bytes_);
  block_ = std::move(bigger);
}

void SampleLibrary::load(const std::uint64_t* indices, std::size_t count, const FillFn& fill) {
  // Validate and find the new indices first, so a bad call changes nothing.
  std::vector<std::uint64_t> fresh;
  fresh.reserve(count);
  std::uint64_t max_seen = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t index = indices[i];
    if (index > max_index()) {
      throw InvalidArgument("SampleLibrary.load: QSL index " + std::to_string(index) + " is above the largest supported (" +
                            std::to_string(max_index()) + ")");
    }
    if (!contains(index)) fresh.push_back(index);
    max_seen = std::max(max_seen, index);
  }
  std::sort(fresh.begin(), fresh.end());
  fresh.erase(std::unique(fresh.begin(), fresh.end()), fresh.end());
  if (fresh.empty()) return;

  if (next_slot_ + fresh.size() >= kNotLoaded) {
    throw InvalidArgument("SampleLibrary.load: more than 2^32-1 slots without a full unload(); unload() first");
  }
  reserve_slots(next_slot_ + fresh.size());
  // Fill before publishing the mapping: if fill throws, nothing new is visible.
  for (std::size_t k = 0; k < fresh.size(); ++k) {
    fill(fresh[k], block_.data() + (next_slot_ + k) * sample_bytes_);
  }
  if (max_seen >= slot_of_index_.size()) slot_of_index_.resize(max_seen + 1, kNotLoaded);
  for (std::size_t k = 0; k < fresh.size(); ++k) {
    slot_of_index_[fresh[k]] = static_cast<std::uint32_t>(next_slot_ + k);
  }
  next_slot_ += fresh.size();
  loaded_ += fresh.size();
  ++generation_;
}

void SampleLibrary::unload(const std::uint64_t* indices, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t index = indices[i];
    if (index < slot_of_index_.size() && slot_of_index_[index] != kNotLoaded) {
      slot_of_index_[index] = kNotLoaded;
      --loaded_;
      ++generation_;
    }
  }
  if (loaded_ == 0) unload();
}

void SampleLibrary::unload() {
  slot_of_index_.clear();
  next_slot_ = 0;
  loaded_ = 0;
  ++generation_;
}

}  // namespace fastres
