// SampleLibrary: the performance samples LoadGen asked for, in memory the executor owns.
//
// LoadGen's QSL callbacks LoadSamplesToRam / UnloadSamplesFromRam map onto load() / unload().
// All samples have one fixed size (the engine's per-sample input bytes) and live in ONE aligned
// block, sample after sample with no padding, so samples in consecutive slots form a contiguous
// batch the executor can hand to the engine without a gather copy (what LWIS calls contiguity
// detection). For a CUDA engine the block comes from the pinned allocator
// (cuda/pinned_host.hpp), so host-to-device copies read it directly by DMA.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <vector>

#include "fastres/buffers.hpp"

namespace fastres {

class SampleLibrary {
 public:
  // Writes sample `index` (a QSL index) into dst, exactly sample_bytes() bytes. May throw; load()
  // then leaves the library as it was before the call.
  using FillFn = std::function<void(std::uint64_t index, std::byte* dst)>;

  // sample_bytes: >= 1, the engine's per-sample input size. allocator: null = default_host_allocator().
  // Throws InvalidArgument for sample_bytes == 0.
  explicit SampleLibrary(std::size_t sample_bytes, std::shared_ptr<HostAllocator> allocator = nullptr);

  SampleLibrary(const SampleLibrary&) = delete;
  SampleLibrary& operator=(const SampleLibrary&) = delete;

  // Loads the given QSL indices (LoadSamplesToRam): each not yet loaded gets the next free slot
  // and is filled by fill(index, dst); indices already loaded are left as they are. Grows the
  // block when needed (copying the samples already loaded), which moves every sample.
  // Not thread-safe, and must not run while an executor has batches in flight from this library
  // (LoadGen guarantees this: it loads before issuing queries and unloads after they complete).
  // May block (it copies). Throws InvalidArgument for an index > max_index().
  void load(const std::uint64_t* indices, std::size_t count, const FillFn& fill);
  void load(const std::vector<std::uint64_t>& indices, const FillFn& fill) {
    load(indices.data(), indices.size(), fill);
  }

  // Unloads the given indices (UnloadSamplesFromRam); unknown indices are ignored. When nothing
  // is left loaded, slots are reused from the start; the block itself is kept for the next load.
  // Same threading rules as load().
  void unload(const std::uint64_t* indices, std::size_t count);
  void unload(const std::vector<std::uint64_t>& indices) { unload(indices.data(), indices.size()); }
  // Unloads everything (keeps the block).
  void unload();

  // The sample of QSL index `index`, or null when it is not loaded. Thread-safe against other
  // readers; valid until the next load()/unload(). The hot path: one bounds check, two loads.
  const std::byte* sample(std::uint64_t index) const noexcept {
    if (index >= slot_of_index_.size()) return nullptr;
    const std::uint32_t slot = slot_of_index_[index];
    return slot == kNotLoaded ? nullptr : block_.data() + static_cast<std::size_t>(slot) * sample_bytes_;
  }
  bool contains(std::uint64_t index) const noexcept { return sample(index) != nullptr; }
  // The slot (position in the block) of a loaded index, or npos. Same rules as sample().
  static constexpr std::uint32_t npos = 0xFFFFFFFFu;
  std::uint32_t slot_of(std::uint64_t index) const noexcept {
    return index < slot_of_index_.size() ? slot_of_index_[index] : npos;
  }
  // The block itself and how much of it holds samples ([0, slots_used() x sample_bytes())): what
  // a device copy (start_from_device) mirrors. Valid until the next load()/unload().
  const std::byte* data() const noexcept { return block_.data(); }
  std::size_t slots_used() const noexcept { return next_slot_; }
  // Changes whenever load() or unload() changes the block or the slots, so a device copy knows
  // it is stale. Same threading rules as sample().
  std::uint64_t generation() const noexcept { return generation_; }

  std::size_t sample_bytes() const noexcept { return sample_bytes_; }
  std::size_t size() const noexcept { return loaded_; }                       // samples loaded
  std::size_t capacity() const noexcept { return block_.size() / sample_bytes_; }  // slots in the block
  const HostAllocator* allocator() const noexcept { return allocator_.get(); }
  // Largest QSL index accepted (slot maps are dense vectors indexed by QSL index).
  static constexpr std::uint64_t max_index() noexcept { return (std::uint64_t{1} << 31) - 1; }

 private:
  static constexpr std::uint32_t kNotLoaded = npos;

  void reserve_slots(std::size_t slots);

  std::size_t sample_bytes_;
  std::shared_ptr<HostAllocator> allocator_;
  HostBuffer block_;
  std::vector<std::uint32_t> slot_of_index_;  // QSL index -> slot, kNotLoaded when absent
  std::size_t next_slot_ = 0;                 // slots [0, next_slot_) have been handed out
  std::size_t loaded_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace fastres
