// The per-element math of fastres's kernels, shared by the CUDA kernels (kernels/src/*.cu) and
// their host twins (kernels/src/host_twins.cpp), so both compute the same thing by construction.
// Compiles with nvcc (functions are __host__ __device__) and with any C++17 compiler (they are
// plain inline functions). No allocation, no exceptions, no library calls: callers validate.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define FASTRES_HD __host__ __device__ __forceinline__
#else
#define FASTRES_HD inline
#endif

namespace fastres::kernels {

// ---------------------------------------------------------------- gather
// Batch unit `unit` (of units_per_sample units per sample) of batch sample `sample` comes from
// library unit slots[sample] * units_per_sample + unit. A unit is 1, 4, 8 or 16 bytes: the
// widest that divides the sample size and both base addresses (gather_unit_bytes).
FASTRES_HD std::size_t gather_source(const std::uint32_t* slots, std::size_t sample, std::size_t unit,
                                     std::size_t units_per_sample) {
  return static_cast<std::size_t>(slots[sample]) * units_per_sample + unit;
}

FASTRES_HD std::size_t gather_unit_bytes(std::size_t sample_bytes, std::uintptr_t batch, std::uintptr_t library) {
  const std::uintptr_t bits = static_cast<std::uintptr_t>(sample_bytes) | batch | library;
  if (bits % 16 == 0) return 16;
  if (bits % 8 == 0) return 8;
  if (bits % 4 == 0) return 4;
  return 1;
}

// ---------------------------------------------------------------- timed answer
// The TimedEngine's answer for one sample: the int32 in its first 4 bytes (little-endian), which
// is where the pipeline tests and benchmarks store each sample's QSL index. Read byte by byte:
// a sample need not be 4-byte aligned.
FASTRES_HD std::int32_t timed_label(const std::byte* sample) {
  const auto* b = reinterpret_cast<const unsigned char*>(sample);
  const std::uint32_t v = static_cast<std::uint32_t>(b[0]) | (static_cast<std::uint32_t>(b[1]) << 8) |
                          (static_cast<std::uint32_t>(b[2]) << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
  return static_cast<std::int32_t>(v);
}

// ---------------------------------------------------------------- int8_linear
// NVIDIA's preprocessing (and fastres.data.preprocess.to_int8_linear):
// np.clip(x, -128, 127).astype(np.int8), i.e. clip, then truncate toward zero: -0.5 -> 0,
// 126.99 -> 126, -127.5 -> -127, +-inf -> 127/-128. NaN -> 0: C++ leaves that cast undefined,
// and NumPy's on x86-64 gives 0 (cvttss2si's 0x80000000, low byte 0); fastres defines it so.
FASTRES_HD std::int8_t to_int8_linear(float x) {
  if (!(x == x)) return 0;
  if (x <= -128.0f) return -128;
  if (x >= 127.0f) return 127;
  return static_cast<std::int8_t>(static_cast<int>(x));  // in (-129, 128): the cast truncates
}
// Already quantized: the layout kernels also accept int8_linear input.
FASTRES_HD std::int8_t to_int8_linear(std::int8_t x) { return x; }

// ---------------------------------------------------------------- int8_chw4 (NC/HW4)
// Output element [n][g][pix][k] (pix = h * W + w, g < ceil(C / 4)) is input channel c = 4g + k
// of sample n at pixel pix, quantized; channels c >= C are zero padding. Input is NCHW.
template <class In>
FASTRES_HD std::int8_t chw4_element(const In* src, std::size_t channels, std::size_t pixels, std::size_t n,
                                    std::size_t g, std::size_t pix, unsigned k) {
  const std::size_t c = 4 * g + k;
  if (c >= channels) return 0;
  return to_int8_linear(src[(n * channels + c) * pixels + pix]);
}

FASTRES_HD std::size_t chw4_groups(std::size_t channels) { return (channels + 3) / 4; }

// ---------------------------------------------------------------- top-1
// A candidate of an argmax: NumPy's rules, so that argmax(row) == np.argmax(row): the first NaN
// wins over everything, otherwise the largest value, ties to the lowest index. argmax_combine is
// associative and commutative, so a tree reduction (a warp's shuffles) gives the same answer as
// a left-to-right scan.
struct ArgMax {
  float value;
  std::int32_t index;
};

// The neutral candidate (it loses to every real one; real indices are < INT32_MAX).
FASTRES_HD ArgMax argmax_identity() {
  return ArgMax{-__builtin_huge_valf(), 0x7fffffff};
}

FASTRES_HD ArgMax argmax_combine(ArgMax a, ArgMax b) {
  const bool a_nan = !(a.value == a.value);
  const bool b_nan = !(b.value == b.value);
  if (a_nan != b_nan) return a_nan ? a : b;
  if (!a_nan && a.value != b.value) return a.value > b.value ? a : b;
  return a.index <= b.index ? a : b;
}

// The label a row's winner reports: its index minus the background offset (1 for models with a
// background class 0). In 64 bits, so no offset overflows; the label is then taken modulo 2^32.
FASTRES_HD std::int32_t top1_label(ArgMax best, std::int32_t offset) {
  return static_cast<std::int32_t>(static_cast<std::int64_t>(best.index) - offset);
}

// ---------------------------------------------------------------- label narrowing
// An engine's integer label (int64 from an ONNX ArgMax, or int32) as fastres's int32 answer:
// label - offset (offset 1 for models whose class 0 is the background). A result outside int32
// becomes -1, which is no ImageNet class, instead of a wrapped value that could be one.
FASTRES_HD std::int32_t narrow_label(std::int64_t label, std::int32_t offset) {
  const std::int64_t v = label - static_cast<std::int64_t>(offset);
  return (v < INT32_MIN || v > INT32_MAX) ? -1 : static_cast<std::int32_t>(v);
}

// ---------------------------------------------------------------- uint8 HWC -> NCHW
// Decoded RGB images (DALI's output) as the reference preprocesses them: float32(pixel) minus the
// channel's mean, in float32 (as `rgb.astype(np.float32) - MEANS_RGB`), then for int8 output
// quantized like int8_linear. Output element [n][c][pix] reads input [n][pix][c].
FASTRES_HD std::size_t hwc_source(std::size_t n, std::size_t c, std::size_t pix, std::size_t pixels,
                                  std::size_t channels) {
  return (n * pixels + pix) * channels + c;
}

FASTRES_HD float mean_subtract(std::uint8_t pixel, float mean) { return static_cast<float>(pixel) - mean; }

template <class Out>
FASTRES_HD Out hwc_element(std::uint8_t pixel, float mean);
template <>
FASTRES_HD float hwc_element<float>(std::uint8_t pixel, float mean) {
  return mean_subtract(pixel, mean);
}
template <>
FASTRES_HD std::int8_t hwc_element<std::int8_t>(std::uint8_t pixel, float mean) {
  return to_int8_linear(mean_subtract(pixel, mean));
}

}  // namespace fastres::kernels
