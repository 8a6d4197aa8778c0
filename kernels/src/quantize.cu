// int8 quantization and layout: fp32 -> int8_linear, NCHW -> NC/HW4 (fp32 or int8 input), and
// decoded uint8 HWC images -> mean-subtracted NCHW (fp32 or int8).
#include <cuda_runtime.h>

#include <cstdint>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "launch.cuh"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

constexpr int kUnroll = 4;

// 4 elements per float4 -> char4 step; `tail` trailing elements (count % 4, or all of them when
// the pointers are not aligned for vectors) are done one by one by the first threads.
__global__ void int8_linear_kernel(char4* __restrict__ dst4, const float4* __restrict__ src4, std::size_t vecs,
                                   std::int8_t* __restrict__ dst_tail, const float* __restrict__ src_tail,
                                   std::size_t tail) {
  const std::size_t stride = detail::grid_threads();
  for (std::size_t j = detail::global_thread(); j < tail; j += stride) dst_tail[j] = to_int8_linear(src_tail[j]);
  std::size_t i = detail::global_thread();
  for (; i + (kUnroll - 1) * stride < vecs; i += kUnroll * stride) {
    float4 v[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) v[k] = src4[i + k * stride];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      dst4[i + k * stride] = make_char4(to_int8_linear(v[k].x), to_int8_linear(v[k].y), to_int8_linear(v[k].z),
                                        to_int8_linear(v[k].w));
    }
  }
  for (; i < vecs; i += stride) {
    const float4 v = src4[i];
    dst4[i] = make_char4(to_int8_linear(v.x), to_int8_linear(v.y), to_int8_linear(v.z), to_int8_linear(v.w));
  }
}

// The grid's y dimension walks the (sample, channel group) planes, x the pixels, so no thread
// divides. One thread per output vector [n][g][pix][0..3]: up to 4 loads (one per channel plane,
// coalesced across the warp) and one 4-byte store.
template <class In>
__global__ void chw4_kernel(char4* __restrict__ dst, const In* __restrict__ src, std::size_t planes,
                            std::size_t channels, std::size_t pixels) {
  const std::size_t groups = chw4_groups(channels);
  for (std::size_t ng = blockIdx.y; ng < planes; ng += gridDim.y) {
    const std::size_t n = ng / groups;
    const std::size_t g = ng % groups;
    char4* out = dst + ng * pixels;
    for (std::size_t pix = detail::global_thread(); pix < pixels; pix += detail::grid_threads()) {
      out[pix] = make_char4(chw4_element(src, channels, pixels, n, g, pix, 0),
                            chw4_element(src, channels, pixels, n, g, pix, 1),
                            chw4_element(src, channels, pixels, n, g, pix, 2),
                            chw4_element(src, channels, pixels, n, g, pix, 3));
    }
  }
}

// y walks the images, x the pixels: one thread per pixel reads its 3 bytes and writes one
// element into each channel plane.
template <class Out>
__global__ void hwc_kernel(Out* __restrict__ dst, const std::uint8_t* __restrict__ src, std::size_t batch,
                           std::size_t pixels, ChannelMeans means) {
  for (std::size_t n = blockIdx.y; n < batch; n += gridDim.y) {
    for (std::size_t pix = detail::global_thread(); pix < pixels; pix += detail::grid_threads()) {
#pragma unroll
      for (int c = 0; c < 3; ++c) {
        dst[(n * 3 + c) * pixels + pix] = hwc_element<Out>(src[hwc_source(n, c, pix, pixels, 3)], means.rgb[c]);
      }
    }
  }
}

template <class In>
void launch_chw4(std::int8_t* dst, const In* src, Nchw shape, cudaStream_t stream, const char* name) {
  detail::check_elementwise(dst, src, shape.count(), name);
  if (shape.count() == 0) return;
  const std::size_t planes = shape.n * chw4_groups(shape.c);
  chw4_kernel<In><<<detail::grid_2d(shape.pixels(), planes), detail::kBlock, 0, stream>>>(
      reinterpret_cast<char4*>(dst), src, planes, shape.c, shape.pixels());
  detail::check_launch(name);
}

template <class Out>
void launch_hwc(Out* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means, cudaStream_t stream,
                const char* name) {
  detail::check_hwc(dst, src, shape, name);
  if (shape.count() == 0) return;
  hwc_kernel<Out><<<detail::grid_2d(shape.pixels(), shape.n), detail::kBlock, 0, stream>>>(dst, src, shape.n,
                                                                                            shape.pixels(), means);
  detail::check_launch(name);
}

}  // namespace

void quantize_int8_linear(std::int8_t* dst, const float* src, std::size_t count, cudaStream_t stream) {
  detail::check_elementwise(dst, src, count, "quantize_int8_linear");
  if (count == 0) return;
  const bool aligned = reinterpret_cast<std::uintptr_t>(src) % 16 == 0 && reinterpret_cast<std::uintptr_t>(dst) % 4 == 0;
  const std::size_t vecs = aligned ? count / 4 : 0;
  const std::size_t tail = count - 4 * vecs;
  const unsigned blocks = detail::blocks_for(std::max(vecs / kUnroll, tail));
  int8_linear_kernel<<<blocks, detail::kBlock, 0, stream>>>(reinterpret_cast<char4*>(dst),
                                                            reinterpret_cast<const float4*>(src), vecs,
                                                            dst + 4 * vecs, src + 4 * vecs, tail);
  detail::check_launch("quantize_int8_linear");
}

void quantize_int8_chw4(std::int8_t* dst, const float* src, Nchw shape, cudaStream_t stream) {
  launch_chw4(dst, src, shape, stream, "quantize_int8_chw4");
}

void relayout_int8_chw4(std::int8_t* dst, const std::int8_t* src, Nchw shape, cudaStream_t stream) {
  launch_chw4(dst, src, shape, stream, "relayout_int8_chw4");
}

void hwc_u8_to_nchw_f32(float* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means, cudaStream_t stream) {
  launch_hwc(dst, src, shape, means, stream, "hwc_u8_to_nchw_f32");
}

void hwc_u8_to_nchw_int8(std::int8_t* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means,
                         cudaStream_t stream) {
  launch_hwc(dst, src, shape, means, stream, "hwc_u8_to_nchw_int8");
}

}  // namespace fastres::kernels
