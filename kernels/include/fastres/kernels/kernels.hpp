// fastres's kernels: batch gather, int8 quantization and layout, top-1, and decoded-image
// conversion. Each exists twice with the same signature:
//
//   * the host twin, `<name>_host(...)`: always compiled, a plain loop over the per-element
//     function in elementwise.hpp. Synchronous; the CPU tests compare it with NumPy.
//   * the CUDA launch wrapper, `<name>(..., cudaStream_t stream)`: only with FASTRES_WITH_CUDA.
//     Every pointer is device memory (or host memory mapped into the device); the call enqueues
//     the kernel on `stream` on the current device and returns. The GPU tests compare it with
//     the host twin.
//
// Both validate their arguments the same way (throwing fastres::InvalidArgument naming the
// argument) before touching memory; a wrapper whose launch fails throws fastres::CudaError
// naming the kernel. Sizes of 0 are allowed and do nothing. Thread-safe (no shared state);
// buffers must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(FASTRES_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace fastres::kernels {

// A 4-D shape. NCHW for tensors; for the HWC images of hwc_u8_to_nchw_*, c is the interleaved
// channel count (3) and the input is [n][h][w][c].
struct Nchw {
  std::size_t n = 0, c = 0, h = 0, w = 0;
  std::size_t pixels() const noexcept { return h * w; }
  std::size_t count() const noexcept { return n * c * h * w; }
};

// Per-channel means in RGB order; MLPerf's ResNet50 preprocessing by default.
struct ChannelMeans {
  float rgb[3] = {123.68f, 116.78f, 103.94f};
};

// ---------------------------------------------------------------- host twins
// batch[i] = library[slots[i]], sample_bytes each: a contiguous batch of `count` samples from a
// library of fixed-size samples (SampleLibrary's block; device-resident with start_from_device).
// Slots may repeat and come in any order; each must be below the library's capacity (the caller
// checks: the library's size is not passed).
void gather_samples_host(std::byte* batch, const std::byte* library, std::size_t sample_bytes,
                         const std::uint32_t* slots, std::size_t count);

// dst[i] = to_int8_linear(src[i]) for i < count (fastres.data.preprocess.to_int8_linear).
void quantize_int8_linear_host(std::int8_t* dst, const float* src, std::size_t count);

// fp32 NCHW [n, c, h, w] -> int8 NC/HW4 [n, ceil(c/4), h, w, 4], zero-padded channels
// (fastres.data.preprocess.to_int8_chw4).
void quantize_int8_chw4_host(std::int8_t* dst, const float* src, Nchw shape);
// The same layout change for input already quantized (int8 NCHW).
void relayout_int8_chw4_host(std::int8_t* dst, const std::int8_t* src, Nchw shape);

// labels[r] = argmax(logits[r, :classes]) - offset, as int32, NumPy's argmax rules (the first
// NaN wins; ties go to the lowest index). offset: 1 for models with a background class at 0.
// classes: [1, 2^31 - 1].
void top1_host(std::int32_t* labels, const float* logits, std::size_t rows, std::size_t classes,
               std::int32_t offset);

// labels[i] = narrow_label(src[i], offset) for i < count: an engine's int64 (or int32) labels as
// fastres's int32 answers, minus the background offset (elementwise.hpp). In place is not
// allowed for the int64 source; the int32 one may be labels itself.
void narrow_labels_host(std::int32_t* labels, const std::int64_t* src, std::size_t count, std::int32_t offset);
void narrow_labels_host(std::int32_t* labels, const std::int32_t* src, std::size_t count, std::int32_t offset);

// uint8 HWC RGB [n, h, w, 3] -> NCHW [n, 3, h, w]: float32(pixel) - means[c] (shape.c must be 3),
// as fp32 or quantized like int8_linear.
void hwc_u8_to_nchw_f32_host(float* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means = {});
void hwc_u8_to_nchw_int8_host(std::int8_t* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means = {});

// The TimedEngine's work for a batch: wait `spin_ns` nanoseconds (the kernel spins on the GPU's
// global timer; the twin busy-waits on the host clock), then labels[i] = timed_label(sample i),
// for `count` samples of `sample_bytes` bytes (>= 4) each, contiguous in `inputs`.
void timed_answer_host(std::int32_t* labels, const std::byte* inputs, std::size_t sample_bytes, std::size_t count,
                       std::uint64_t spin_ns);

#if defined(FASTRES_WITH_CUDA)
// ---------------------------------------------------------------- CUDA launch wrappers
// Same arguments and results as the host twins above, enqueued on `stream`.
void gather_samples(std::byte* batch, const std::byte* library, std::size_t sample_bytes,
                    const std::uint32_t* slots, std::size_t count, cudaStream_t stream);
void quantize_int8_linear(std::int8_t* dst, const float* src, std::size_t count, cudaStream_t stream);
void quantize_int8_chw4(std::int8_t* dst, const float* src, Nchw shape, cudaStream_t stream);
void relayout_int8_chw4(std::int8_t* dst, const std::int8_t* src, Nchw shape, cudaStream_t stream);
void top1(std::int32_t* labels, const float* logits, std::size_t rows, std::size_t classes, std::int32_t offset,
          cudaStream_t stream);
void narrow_labels(std::int32_t* labels, const std::int64_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream);
void narrow_labels(std::int32_t* labels, const std::int32_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream);
void hwc_u8_to_nchw_f32(float* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means, cudaStream_t stream);
void hwc_u8_to_nchw_int8(std::int8_t* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means,
                         cudaStream_t stream);
// One block: the spin, then the labels. Capturable into a CUDA graph (no host work per launch).
void timed_answer(std::int32_t* labels, const std::byte* inputs, std::size_t sample_bytes, std::size_t count,
                  std::uint64_t spin_ns, cudaStream_t stream);
#endif

}  // namespace fastres::kernels
