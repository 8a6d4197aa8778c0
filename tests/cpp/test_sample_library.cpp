// SampleLibrary and HostBuffer: slots, growth, alignment, errors.
#include <cstdint>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "fastres/buffers.hpp"
#include "fastres/sample_library.hpp"
#include "fastres/status.hpp"

using fastres::HostBuffer;
using fastres::SampleLibrary;

namespace {

void fill_with_index(std::uint64_t index, std::byte* dst, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) dst[i] = static_cast<std::byte>((index * 31 + i) & 0xFF);
}

bool holds_index(const std::byte* p, std::uint64_t index, std::size_t bytes) {
  for (std::size_t i = 0; i < bytes; ++i) {
    if (p[i] != static_cast<std::byte>((index * 31 + i) & 0xFF)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE(host_buffer_is_page_aligned_zeroed_and_movable) {
  HostBuffer a(10000, nullptr);
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % fastres::kPageAlignment == 0);
  CHECK_EQ(a.size(), 10000u);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a.data()[i] == std::byte{0});
  std::byte* p = a.data();
  HostBuffer b(std::move(a));
  CHECK(b.data() == p);
  CHECK(a.data() == nullptr);
  CHECK(a.empty());
  HostBuffer c;
  c = std::move(b);
  CHECK(c.data() == p);
  HostBuffer empty(0, nullptr);
  CHECK(empty.data() == nullptr);
}

TEST_CASE(load_maps_indices_to_slots_and_fills_them) {
  const std::size_t bytes = 100;
  SampleLibrary lib(bytes);
  const std::vector<std::uint64_t> indices = {42, 7, 1000, 7};
  lib.load(indices, [&](std::uint64_t index, std::byte* dst) { fill_with_index(index, dst, bytes); });
  CHECK_EQ(lib.size(), 3u);
  for (std::uint64_t index : {7u, 42u, 1000u}) {
    CHECK(lib.contains(index));
    CHECK(holds_index(lib.sample(index), index, bytes));
  }
  CHECK(!lib.contains(8));
  CHECK(lib.sample(123456) == nullptr);
  // Indices loaded together get consecutive slots in index order: batches of consecutive
  // indices can then be bound without a copy.
  CHECK(lib.sample(42) == lib.sample(7) + bytes);
  CHECK(lib.sample(1000) == lib.sample(42) + bytes);
}

TEST_CASE(growth_keeps_loaded_samples_and_unload_frees_slots) {
  const std::size_t bytes = 64;
  SampleLibrary lib(bytes);
  auto fill = [&](std::uint64_t index, std::byte* dst) { fill_with_index(index, dst, bytes); };
  lib.load(std::vector<std::uint64_t>{1, 2, 3}, fill);
  lib.load(std::vector<std::uint64_t>{10, 11, 12, 13, 14}, fill);  // grows the block
  CHECK_EQ(lib.size(), 8u);
  for (std::uint64_t index : {1u, 2u, 3u, 10u, 14u}) CHECK(holds_index(lib.sample(index), index, bytes));
  lib.unload(std::vector<std::uint64_t>{1, 2, 99});
  CHECK_EQ(lib.size(), 6u);
  CHECK(!lib.contains(1));
  CHECK(holds_index(lib.sample(3), 3, bytes));
  const std::size_t capacity = lib.capacity();
  lib.unload();
  CHECK_EQ(lib.size(), 0u);
  CHECK_EQ(lib.capacity(), capacity);  // the block is kept for the next load
  lib.load(std::vector<std::uint64_t>{5}, fill);
  CHECK(holds_index(lib.sample(5), 5, bytes));
}

TEST_CASE(bad_arguments_are_rejected_and_change_nothing) {
  CHECK_THROWS(SampleLibrary(0), fastres::InvalidArgument, "sample_bytes=0");
  SampleLibrary lib(8);
  auto fill = [](std::uint64_t, std::byte* dst) { std::memset(dst, 1, 8); };
  const std::vector<std::uint64_t> too_big = {1, SampleLibrary::max_index() + 1};
  CHECK_THROWS(lib.load(too_big, fill), fastres::InvalidArgument, "QSL index");
  CHECK_EQ(lib.size(), 0u);
  auto failing = [](std::uint64_t index, std::byte*) {
    if (index == 3) throw std::runtime_error("read error");
  };
  bool threw = false;
  try {
    lib.load(std::vector<std::uint64_t>{1, 2, 3}, failing);
  } catch (const std::runtime_error&) {
    threw = true;
  }
  CHECK(threw);
  CHECK_EQ(lib.size(), 0u);
  CHECK(!lib.contains(1));
}

int main(int argc, char** argv) { return check::run(argc, argv); }
