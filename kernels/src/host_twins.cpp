// The host twins: each a plain loop over the same per-element function its CUDA kernel runs
// (elementwise.hpp). Always compiled; the CPU tests hold them to NumPy, the GPU tests hold the
// kernels to them.
#include <chrono>
#include <cstring>

#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

template <std::size_t kUnit>
void gather_units(std::byte* batch, const std::byte* library, std::size_t units_per_sample,
                  const std::uint32_t* slots, std::size_t count) {
  for (std::size_t s = 0; s < count; ++s) {
    for (std::size_t u = 0; u < units_per_sample; ++u) {
      const std::size_t src = gather_source(slots, s, u, units_per_sample);
      std::memcpy(batch + (s * units_per_sample + u) * kUnit, library + src * kUnit, kUnit);
    }
  }
}

template <class In>
void chw4_host(std::int8_t* dst, const In* src, Nchw shape) {
  const std::size_t groups = chw4_groups(shape.c);
  const std::size_t pixels = shape.pixels();
  for (std::size_t n = 0; n < shape.n; ++n) {
    for (std::size_t g = 0; g < groups; ++g) {
      for (std::size_t pix = 0; pix < pixels; ++pix) {
        std::int8_t* out = dst + ((n * groups + g) * pixels + pix) * 4;
        for (unsigned k = 0; k < 4; ++k) out[k] = chw4_element(src, shape.c, pixels, n, g, pix, k);
      }
    }
  }
}

template <class Out>
void hwc_host(Out* dst, const std::uint8_t* src, Nchw shape, const ChannelMeans& means) {
  const std::size_t pixels = shape.pixels();
  for (std::size_t n = 0; n < shape.n; ++n) {
    for (std::size_t c = 0; c < 3; ++c) {
      Out* out = dst + (n * 3 + c) * pixels;
      for (std::size_t pix = 0; pix < pixels; ++pix) {
        out[pix] = hwc_element<Out>(src[hwc_source(n, c, pix, pixels, 3)], means.rgb[c]);
      }
    }
  }
}

}  // namespace

void gather_samples_host(std::byte* batch, const std::byte* library, std::size_t sample_bytes,
                         const std::uint32_t* slots, std::size_t count) {
  detail::check_gather(batch, library, sample_bytes, slots, count);
  if (count == 0) return;
  const std::size_t unit = gather_unit_bytes(sample_bytes, reinterpret_cast<std::uintptr_t>(batch),
                                             reinterpret_cast<std::uintptr_t>(library));
  const std::size_t units = sample_bytes / unit;
  switch (unit) {
    case 16: gather_units<16>(batch, library, units, slots, count); break;
    case 8: gather_units<8>(batch, library, units, slots, count); break;
    case 4: gather_units<4>(batch, library, units, slots, count); break;
    default: gather_units<1>(batch, library, units, slots, count); break;
  }
}

void quantize_int8_linear_host(std::int8_t* dst, const float* src, std::size_t count) {
  detail::check_elementwise(dst, src, count, "quantize_int8_linear");
  for (std::size_t i = 0; i < count; ++i) dst[i] = to_int8_linear(src[i]);
}

void quantize_int8_chw4_host(std::int8_t* dst, const float* src, Nchw shape) {
  detail::check_elementwise(dst, src, shape.count(), "quantize_int8_chw4");
  chw4_host(dst, src, shape);
}

void relayout_int8_chw4_host(std::int8_t* dst, const std::int8_t* src, Nchw shape) {
  detail::check_elementwise(dst, src, shape.count(), "relayout_int8_chw4");
  chw4_host(dst, src, shape);
}

void narrow_labels_host(std::int32_t* labels, const std::int64_t* src, std::size_t count, std::int32_t offset) {
  detail::check_elementwise(labels, src, count, "narrow_labels");
  for (std::size_t i = 0; i < count; ++i) labels[i] = narrow_label(src[i], offset);
}

void narrow_labels_host(std::int32_t* labels, const std::int32_t* src, std::size_t count, std::int32_t offset) {
  detail::check_elementwise(labels, src, count, "narrow_labels");
  for (std::size_t i = 0; i < count; ++i) labels[i] = narrow_label(src[i], offset);
}

void top1_host(std::int32_t* labels, const float* logits, std::size_t rows, std::size_t classes,
               std::int32_t offset) {
  detail::check_top1(labels, logits, rows, classes);
  for (std::size_t r = 0; r < rows; ++r) {
    const float* row = logits + r * classes;
    ArgMax best = argmax_identity();
    for (std::size_t c = 0; c < classes; ++c) {
      best = argmax_combine(best, ArgMax{row[c], static_cast<std::int32_t>(c)});
    }
    labels[r] = top1_label(best, offset);
  }
}

void hwc_u8_to_nchw_f32_host(float* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means) {
  detail::check_hwc(dst, src, shape, "hwc_u8_to_nchw_f32");
  hwc_host(dst, src, shape, means);
}

void hwc_u8_to_nchw_int8_host(std::int8_t* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means) {
  detail::check_hwc(dst, src, shape, "hwc_u8_to_nchw_int8");
  hwc_host(dst, src, shape, means);
}

void timed_answer_host(std::int32_t* labels, const std::byte* inputs, std::size_t sample_bytes, std::size_t count,
                       std::uint64_t spin_ns) {
  detail::check_timed(labels, inputs, sample_bytes, count);
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(spin_ns);
  while (std::chrono::steady_clock::now() < until) {
  }
  for (std::size_t i = 0; i < count; ++i) labels[i] = timed_label(inputs + i * sample_bytes);
}

}  // namespace fastres::kernels
