// The kernels' host twins (kernels/src/host_twins.cpp): the per-element rules spelled out in C++,
// and the argument checks the CUDA launch wrappers share. tests/test_kernels.py holds the same
// twins to NumPy; the gpu tests hold the kernels to the twins.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "check.hpp"
#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

namespace k = fastres::kernels;

TEST_CASE(int8_linear_clips_then_truncates_toward_zero_and_maps_nan_to_zero) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x{-inf, -129.0f, -128.5f, -128.0f, -127.5f, -0.5f, -0.0f, 0.5f, 0.99f,
                             126.99f, 127.5f, 128.0f, inf, std::nanf("")};
  const std::vector<int> want{-128, -128, -128, -128, -127, 0, 0, 0, 0, 126, 127, 127, 127, 0};
  std::vector<std::int8_t> got(x.size(), 42);
  k::quantize_int8_linear_host(got.data(), x.data(), x.size());
  for (std::size_t i = 0; i < x.size(); ++i) CHECK_EQ(int{got[i]}, want[i]);
}

TEST_CASE(chw4_puts_channel_c_at_group_c_div_4_lane_c_mod_4_and_zero_pads) {
  const k::Nchw shape{2, 5, 2, 3};  // 5 channels: 2 groups, the second with 3 padding lanes
  std::vector<float> x(shape.count());
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 200) - 100.5f;
  std::vector<std::int8_t> out(2 * 2 * 2 * 3 * 4, 42);
  k::quantize_int8_chw4_host(out.data(), x.data(), shape);
  for (std::size_t n = 0; n < 2; ++n) {
    for (std::size_t c = 0; c < 8; ++c) {
      for (std::size_t p = 0; p < 6; ++p) {
        const std::int8_t got = out[((n * 2 + c / 4) * 6 + p) * 4 + c % 4];
        const int want = c < 5 ? int{k::to_int8_linear(x[(n * 5 + c) * 6 + p])} : 0;
        CHECK_EQ(int{got}, want);
      }
    }
  }
}

TEST_CASE(top1_follows_numpy_argmax_ties_lowest_first_nan_wins) {
  const float nan = std::nanf("");
  const std::vector<float> logits{1, 3, 3, 2,  /**/ 5, 5, 5, 5,  /**/ 1, nan, 9, nan,  /**/ -0.0f, 0.0f, -1, 0};
  std::vector<std::int32_t> labels(4, 99);
  k::top1_host(labels.data(), logits.data(), 4, 4, 1);
  CHECK_EQ(labels[0], 0);   // index 1 - offset 1
  CHECK_EQ(labels[1], -1);  // index 0
  CHECK_EQ(labels[2], 0);   // the first NaN, index 1
  CHECK_EQ(labels[3], -1);  // -0.0 == 0.0: index 0
  // The combine is order-independent (what the warp reduction relies on).
  const k::ArgMax a{2.0f, 7}, b{2.0f, 3}, c{nan, 9};
  CHECK_EQ(k::argmax_combine(a, b).index, k::argmax_combine(b, a).index);
  CHECK_EQ(k::argmax_combine(k::argmax_combine(a, b), c).index, k::argmax_combine(a, k::argmax_combine(b, c)).index);
  CHECK_EQ(k::argmax_combine(k::argmax_identity(), a).index, 7);
}

TEST_CASE(narrow_labels_subtract_the_offset_and_map_out_of_range_to_minus_one) {
  // Worked by hand: ArgMax indices of a 1001-class model (class 0 = background) minus 1.
  const std::vector<std::int64_t> wide{1, 1000, 0, 2147483648LL, -2147483647LL, 5};
  std::vector<std::int32_t> labels(wide.size(), 99);
  k::narrow_labels_host(labels.data(), wide.data(), wide.size(), 1);
  const std::vector<std::int32_t> want{0, 999, -1, 2147483647, -2147483647 - 1, 4};
  CHECK(labels == want);
  // Below INT32_MIN after the offset, and above INT32_MAX without one: -1, not a wrapped label.
  const std::vector<std::int64_t> out_of_range{-2147483648LL, 4294967296LL + 7};
  std::vector<std::int32_t> two(2, 99);
  k::narrow_labels_host(two.data(), out_of_range.data(), 2, 1);
  CHECK_EQ(two[0], -1);
  k::narrow_labels_host(two.data(), out_of_range.data() + 1, 1, 0);
  CHECK_EQ(two[0], -1);
  // The int32 source, in place.
  std::vector<std::int32_t> in_place{1, 2, 1001};
  k::narrow_labels_host(in_place.data(), in_place.data(), 3, 1);
  CHECK(in_place == (std::vector<std::int32_t>{0, 1, 1000}));
  CHECK_THROWS(k::narrow_labels_host(nullptr, wide.data(), 1, 0), fastres::InvalidArgument, "narrow_labels: dst is null");
}

TEST_CASE(hwc_to_nchw_subtracts_the_means_in_float_and_quantizes) {
  const k::Nchw shape{1, 3, 1, 2};
  const std::vector<std::uint8_t> img{0, 128, 255, /**/ 200, 117, 104};
  std::vector<float> f(6);
  std::vector<std::int8_t> q(6);
  k::hwc_u8_to_nchw_f32_host(f.data(), img.data(), shape);
  k::hwc_u8_to_nchw_int8_host(q.data(), img.data(), shape);
  const k::ChannelMeans m;
  const float want[6] = {0.0f - m.rgb[0], 200.0f - m.rgb[0], 128.0f - m.rgb[1], 117.0f - m.rgb[1],
                         255.0f - m.rgb[2], 104.0f - m.rgb[2]};
  for (int i = 0; i < 6; ++i) {
    CHECK(std::memcmp(&f[static_cast<std::size_t>(i)], &want[i], sizeof(float)) == 0);
    CHECK_EQ(int{q[static_cast<std::size_t>(i)]}, int{k::to_int8_linear(want[i])});
  }
}

TEST_CASE(gather_copies_slots_in_order_with_repeats_for_every_unit_width) {
  for (std::size_t sample_bytes : {1u, 3u, 4u, 8u, 16u, 48u, 100u}) {
    std::vector<std::byte> library(5 * sample_bytes);
    for (std::size_t i = 0; i < library.size(); ++i) library[i] = static_cast<std::byte>(i * 7 + 1);
    const std::vector<std::uint32_t> slots{4, 0, 2, 2, 4};
    std::vector<std::byte> batch(slots.size() * sample_bytes);
    k::gather_samples_host(batch.data(), library.data(), sample_bytes, slots.data(), slots.size());
    for (std::size_t s = 0; s < slots.size(); ++s) {
      CHECK(std::memcmp(batch.data() + s * sample_bytes, library.data() + slots[s] * sample_bytes, sample_bytes) == 0);
    }
  }
}

TEST_CASE(bad_arguments_are_rejected_naming_the_argument) {
  std::vector<float> x(4);
  std::vector<std::int32_t> labels(1);
  std::uint32_t slot = 0;
  std::byte b[4]{};
  CHECK_THROWS(k::quantize_int8_linear_host(nullptr, x.data(), 4), fastres::InvalidArgument, "dst is null");
  CHECK_THROWS(k::top1_host(labels.data(), x.data(), 1, 0, 0), fastres::InvalidArgument, "classes=0");
  CHECK_THROWS(k::gather_samples_host(b, b, 0, &slot, 1), fastres::InvalidArgument, "sample_bytes=0");
  std::vector<std::uint8_t> img(16);
  CHECK_THROWS(k::hwc_u8_to_nchw_f32_host(x.data(), img.data(), k::Nchw{1, 4, 1, 1}), fastres::InvalidArgument,
               "expected 3");
  // Nothing to do is not an error, even with null buffers.
  k::quantize_int8_linear_host(nullptr, nullptr, 0);
  k::gather_samples_host(nullptr, nullptr, 0, nullptr, 0);
}

int main(int argc, char** argv) { return check::run(argc, argv); }
