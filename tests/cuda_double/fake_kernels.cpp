// The CUDA launch wrappers of kernels/include/fastres/kernels/kernels.hpp, for the CUDA runtime
// double. Each does what its real wrapper (kernels/src/*.cu) does on the host side — the same
// argument checks (validate.hpp), the same early return for empty work, the same launch check
// (launch.cuh's check_launch) — but the "kernel" is its host twin, run on the stream like any
// operation, after require() has checked every range it reads or writes against the device
// memory of the stream's device.
//
// Adding a kernel: validate as its wrapper does, then
//   launch("name", stream, [=](const fake::KernelMemory& mem) {
//     mem.require(in, fake::bytes_of(n, sizeof *in));
//     mem.require(out, fake::bytes_of(n, sizeof *out));
//     name_host(out, in, n);
//   });
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "fake_cuda.hpp"
#include "fastres/cuda/error.hpp"
#include "fastres/kernels/elementwise.hpp"
#include "fastres/kernels/kernels.hpp"
#include "validate.hpp"

namespace fastres::kernels {

namespace {

namespace fake = ::fastres::fake_cuda;

void launch(const char* name, cudaStream_t stream, std::function<void(const fake::KernelMemory&)> body) {
  fake::launch_kernel(name, stream, std::move(body));
  ::fastres::cuda::check(cudaGetLastError(), std::string(name) + " launch");
}

template <class In>
void launch_chw4(std::int8_t* dst, const In* src, Nchw shape, cudaStream_t stream, const char* name) {
  detail::check_elementwise(dst, src, shape.count(), name);
  if (shape.count() == 0) return;
  launch(name, stream, [=](const fake::KernelMemory& mem) {
    mem.require(src, fake::bytes_of(shape.count(), sizeof(In)));
    const std::size_t planes = fake::bytes_of(shape.n, chw4_groups(shape.c));
    mem.require(dst, fake::bytes_of(fake::bytes_of(planes, shape.pixels()), 4));
    if constexpr (sizeof(In) == 1) {
      relayout_int8_chw4_host(dst, src, shape);
    } else {
      quantize_int8_chw4_host(dst, src, shape);
    }
  });
}

template <class Out, class Twin>
void launch_hwc(Out* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means, cudaStream_t stream,
                const char* name, Twin twin) {
  detail::check_hwc(dst, src, shape, name);
  if (shape.count() == 0) return;
  launch(name, stream, [=](const fake::KernelMemory& mem) {
    mem.require(src, shape.count());
    mem.require(dst, fake::bytes_of(shape.count(), sizeof(Out)));
    twin(dst, src, shape, means);
  });
}

}  // namespace

void gather_samples(std::byte* batch, const std::byte* library, std::size_t sample_bytes, const std::uint32_t* slots,
                    std::size_t count, cudaStream_t stream) {
  detail::check_gather(batch, library, sample_bytes, slots, count);
  if (count == 0) return;
  launch("gather_samples", stream, [=](const fake::KernelMemory& mem) {
    mem.require(slots, fake::bytes_of(count, sizeof *slots));  // the kernel reads slots on the device
    const std::uint32_t highest = *std::max_element(slots, slots + count);
    mem.require(library, fake::bytes_of(std::size_t{highest} + 1, sample_bytes));
    mem.require(batch, fake::bytes_of(count, sample_bytes));
    gather_samples_host(batch, library, sample_bytes, slots, count);
  });
}

void quantize_int8_linear(std::int8_t* dst, const float* src, std::size_t count, cudaStream_t stream) {
  detail::check_elementwise(dst, src, count, "quantize_int8_linear");
  if (count == 0) return;
  launch("quantize_int8_linear", stream, [=](const fake::KernelMemory& mem) {
    mem.require(src, fake::bytes_of(count, sizeof *src));
    mem.require(dst, count);
    quantize_int8_linear_host(dst, src, count);
  });
}

void quantize_int8_chw4(std::int8_t* dst, const float* src, Nchw shape, cudaStream_t stream) {
  launch_chw4(dst, src, shape, stream, "quantize_int8_chw4");
}

void relayout_int8_chw4(std::int8_t* dst, const std::int8_t* src, Nchw shape, cudaStream_t stream) {
  launch_chw4(dst, src, shape, stream, "relayout_int8_chw4");
}

void top1(std::int32_t* labels, const float* logits, std::size_t rows, std::size_t classes, std::int32_t offset,
          cudaStream_t stream) {
  detail::check_top1(labels, logits, rows, classes);
  if (rows == 0) return;
  launch("top1", stream, [=](const fake::KernelMemory& mem) {
    mem.require(logits, fake::bytes_of(fake::bytes_of(rows, classes), sizeof *logits));
    mem.require(labels, fake::bytes_of(rows, sizeof *labels));
    top1_host(labels, logits, rows, classes, offset);
  });
}

void narrow_labels(std::int32_t* labels, const std::int64_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream) {
  detail::check_elementwise(labels, src, count, "narrow_labels");
  if (count == 0) return;
  launch("narrow_labels", stream, [=](const fake::KernelMemory& mem) {
    mem.require(src, fake::bytes_of(count, sizeof *src));
    mem.require(labels, fake::bytes_of(count, sizeof *labels));
    narrow_labels_host(labels, src, count, offset);
  });
}

void narrow_labels(std::int32_t* labels, const std::int32_t* src, std::size_t count, std::int32_t offset,
                   cudaStream_t stream) {
  detail::check_elementwise(labels, src, count, "narrow_labels");
  if (count == 0) return;
  launch("narrow_labels", stream, [=](const fake::KernelMemory& mem) {
    mem.require(src, fake::bytes_of(count, sizeof *src));
    mem.require(labels, fake::bytes_of(count, sizeof *labels));
    narrow_labels_host(labels, src, count, offset);
  });
}

void hwc_u8_to_nchw_f32(float* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means, cudaStream_t stream) {
  launch_hwc(dst, src, shape, means, stream, "hwc_u8_to_nchw_f32", hwc_u8_to_nchw_f32_host);
}

void hwc_u8_to_nchw_int8(std::int8_t* dst, const std::uint8_t* src, Nchw shape, ChannelMeans means,
                         cudaStream_t stream) {
  launch_hwc(dst, src, shape, means, stream, "hwc_u8_to_nchw_int8", hwc_u8_to_nchw_int8_host);
}

void timed_answer(std::int32_t* labels, const std::byte* inputs, std::size_t sample_bytes, std::size_t count,
                  std::uint64_t spin_ns, cudaStream_t stream) {
  detail::check_timed(labels, inputs, sample_bytes, count);
  if (count == 0) return;
  launch("timed_answer", stream, [=](const fake::KernelMemory& mem) {
    mem.require(inputs, fake::bytes_of(count, sample_bytes));
    mem.require(labels, fake::bytes_of(count, sizeof *labels));
    timed_answer_host(labels, inputs, sample_bytes, count, spin_ns);
  });
}

}  // namespace fastres::kernels
