// Python bindings of the kernels (kernels/include/fastres/kernels/kernels.hpp): the submodule
// fastres._core.kernels. Each function takes and returns NumPy arrays and runs the host twin, or,
// with device="cuda[:N]" (or an int), the CUDA kernel: inputs copied to the device, the kernel run
// on a stream of its own, the result copied back. The device path raises fastres.errors.Unavailable
// where CUDA is not compiled in or no device exists. The GIL is released while either runs.
//
// The `_*_ptr` functions launch a kernel on raw device pointers and a stream handle (from PyTorch
// or CuPy) without copies or synchronisation: for benchmarks that time the kernel alone.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fastres/kernels/kernels.hpp"
#include "fastres/status.hpp"

#if defined(FASTRES_WITH_CUDA)
#include "fastres/cuda/device.hpp"
#include "fastres/cuda/device_buffer.hpp"
#include "fastres/cuda/error.hpp"
#include "fastres/cuda/event.hpp"
#include "fastres/cuda/graph.hpp"
#include "fastres/cuda/pinned_host.hpp"
#include "fastres/cuda/stream.hpp"
#endif

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastres::python {
namespace {

namespace k = fastres::kernels;

// ---------------------------------------------------------------- where a call runs
struct Target {
  bool cuda = false;
  int device = 0;
};

[[noreturn, maybe_unused]] void throw_not_compiled(const std::string& what) {
  throw Unavailable(what + ": fastres was built without CUDA (fastres.build_info()['with_cuda'] is False); "
                           "reinstall where nvcc is on PATH: FASTRES_WITH_CUDA=ON pip install .");
}

// None or "cpu": the host twin. "cuda", "cuda:N" or an int N: CUDA device N (checked to exist).
Target parse_device(const py::object& device) {
  Target t;
  if (device.is_none()) return t;
  std::string text;
  if (py::isinstance<py::int_>(device) && !py::isinstance<py::bool_>(device)) {
    t.cuda = true;
    t.device = device.cast<int>();
    text = "device=" + std::to_string(t.device);
  } else if (py::isinstance<py::str>(device)) {
    text = device.cast<std::string>();
    if (text == "cpu") return t;
    t.cuda = text == "cuda" || text.rfind("cuda:", 0) == 0;
    if (t.cuda && text.size() > 5) {
      const std::string digits = text.substr(5);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 6) t.cuda = false;
      else t.device = std::stoi(digits);
    }
    if (!t.cuda) throw InvalidArgument("device='" + text + "': expected None, 'cpu', 'cuda', 'cuda:N' or an int N");
    text = "device='" + text + "'";
  } else {
    throw InvalidArgument("device=" + std::string(py::repr(device)) + ": expected None, 'cpu', 'cuda', 'cuda:N' or an int N");
  }
  if (t.device < 0) throw InvalidArgument(text + ": a CUDA device index must be >= 0");
#if defined(FASTRES_WITH_CUDA)
  cuda::require_device(t.device);
#else
  throw_not_compiled(text);
#endif
  return t;
}

// ---------------------------------------------------------------- arrays in and out
// `obj` as a C-contiguous array of exactly T (no silent casts: float64 clipped and cast is not
// float32 clipped and cast). `what` names the argument in errors.
template <class T>
py::array_t<T, py::array::c_style> require_array(py::handle obj, const std::string& what, const char* hint) {
  py::array arr = py::array::ensure(obj);
  if (!arr) throw InvalidArgument(what + ": expected a NumPy array");
  if (!arr.dtype().is(py::dtype::of<T>())) {
    throw InvalidArgument(what + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
                          std::string(py::str(arr.dtype())) + "; " + hint);
  }
  return py::array_t<T, py::array::c_style>::ensure(arr);
}

std::string shape_text(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// A new array, or `out` when given: then it must be C-contiguous, writeable and of exactly this
// dtype and shape (NumPy's out= rules, without casting).
py::array make_output(const py::object& out, const py::dtype& dtype, const std::vector<py::ssize_t>& shape,
                      const std::string& fn) {
  if (out.is_none()) return py::array(dtype, shape);
  auto arr = py::reinterpret_borrow<py::array>(out);
  if (!py::isinstance<py::array>(out) || !arr.dtype().is(dtype) || shape_of(arr) != shape ||
      !(arr.flags() & py::array::c_style) || !arr.writeable()) {
    throw InvalidArgument(fn + " out: expected a writeable C-contiguous " + std::string(py::str(dtype)) + " array of shape " +
                          shape_text(shape) + ", got " +
                          (py::isinstance<py::array>(out)
                               ? std::string(py::str(arr.dtype())) + " " + shape_text(shape_of(arr))
                               : std::string(py::str(py::type::of(out).attr("__name__")))));
  }
  return arr;
}

// ---------------------------------------------------------------- the device path
#if defined(FASTRES_WITH_CUDA)
struct HostSpan {
  const void* data;
  std::size_t bytes;
};

using DeviceLaunch = std::function<void(std::vector<cuda::DeviceBuffer>& inputs, cuda::DeviceBuffer& output,
                                        cudaStream_t stream)>;

// Copies `inputs` to device `device`, runs `launch` on a new stream, copies the output back into
// `output` and waits. Called without the GIL.
void run_on_device(int device, const std::vector<HostSpan>& inputs, void* output, std::size_t output_bytes,
                   const DeviceLaunch& launch) {
  cuda::DeviceGuard guard(device);
  cuda::Stream stream;
  std::vector<cuda::DeviceBuffer> dev_in;
  dev_in.reserve(inputs.size());
  for (const auto& in : inputs) {
    dev_in.emplace_back(in.bytes);
    dev_in.back().copy_from_host(in.data, in.bytes, stream.get());
  }
  cuda::DeviceBuffer dev_out(output_bytes);
  // A sentinel byte, not zeros: an element the kernel forgets to write (a padding lane, say)
  // then differs from the host twin's.
  dev_out.fill(0xA5, stream.get());
  launch(dev_in, dev_out, stream.get());
  dev_out.copy_to_host(output, output_bytes, stream.get());
  stream.synchronize();
}

cudaStream_t as_stream(std::uintptr_t handle) { return reinterpret_cast<cudaStream_t>(handle); }
#endif

template <class T>
T* ptr(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

void require_cuda_for_ptr(const char* fn) {
#if !defined(FASTRES_WITH_CUDA)
  throw_not_compiled(fn);
#else
  (void)fn;
#endif
}

// ---------------------------------------------------------------- gather
py::array gather(const py::array& library_obj, const py::object& slots_obj, const py::object& device,
                 const py::object& out) {
  const Target target = parse_device(device);
  py::array library = py::array::ensure(library_obj, py::array::c_style);
  if (!library || library.ndim() < 1) throw InvalidArgument("gather library: expected an array [samples, ...]");
  auto slots_in = py::array::ensure(slots_obj);
  if (!slots_in || slots_in.ndim() != 1 || (slots_in.size() > 0 && slots_in.dtype().kind() != 'i' && slots_in.dtype().kind() != 'u')) {
    throw InvalidArgument("gather slots: expected a 1-D sequence of integers (library rows)");
  }
  const auto rows = static_cast<std::int64_t>(library.shape(0));
  auto slots64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(slots_in);
  if (slots_in.dtype().kind() == 'u' && slots_in.itemsize() == 8) {
    auto u = py::array_t<std::uint64_t, py::array::c_style>::ensure(slots_in);
    for (py::ssize_t i = 0; i < u.size(); ++i) {
      if (u.data()[i] >= static_cast<std::uint64_t>(rows)) {
        throw InvalidArgument("gather slots[" + std::to_string(i) + "]=" + std::to_string(u.data()[i]) +
                              ": out of range for a library of " + std::to_string(rows) + " samples");
      }
    }
  }
  std::vector<std::uint32_t> slots(static_cast<std::size_t>(slots64.size()));
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const std::int64_t s = slots64.data()[i];
    if (s < 0 || s >= rows) {
      throw InvalidArgument("gather slots[" + std::to_string(i) + "]=" + std::to_string(s) + ": out of range for a library of " +
                            std::to_string(rows) + " samples");
    }
    slots[i] = static_cast<std::uint32_t>(s);
  }
  if (rows > 0xffffffffLL) throw InvalidArgument("gather library: more than 2^32 samples");
  std::vector<py::ssize_t> shape = shape_of(library);
  shape[0] = static_cast<py::ssize_t>(slots.size());
  py::array result = make_output(out, library.dtype(), shape, "gather");
  const std::size_t sample_bytes = rows > 0 ? static_cast<std::size_t>(library.nbytes()) / static_cast<std::size_t>(rows)
                                            : 0;
  if (slots.empty() || sample_bytes == 0) return result;
  const auto* lib = static_cast<const std::byte*>(library.data());
  auto* dst = static_cast<std::byte*>(result.mutable_data());
  py::gil_scoped_release release;
  if (target.cuda) {
#if defined(FASTRES_WITH_CUDA)
    run_on_device(target.device, {{lib, static_cast<std::size_t>(library.nbytes())}, {slots.data(), slots.size() * 4}},
                  dst, slots.size() * sample_bytes, [&](auto& in, auto& o, cudaStream_t s) {
                    k::gather_samples(o.data(), in[0].data(), sample_bytes, in[1].template as<std::uint32_t>(),
                                      slots.size(), s);
                  });
#endif
  } else {
    k::gather_samples_host(dst, lib, sample_bytes, slots.data(), slots.size());
  }
  return result;
}

// ---------------------------------------------------------------- quantization and layout
constexpr const char* kFloat32Hint = "convert with x.astype(numpy.float32) first";

py::array quantize_int8_linear(const py::object& x_obj, const py::object& device, const py::object& out) {
  const Target target = parse_device(device);
  auto x = require_array<float>(x_obj, "quantize_int8_linear x", kFloat32Hint);
  py::array result = make_output(out, py::dtype::of<std::int8_t>(), shape_of(x), "quantize_int8_linear");
  const auto count = static_cast<std::size_t>(x.size());
  const float* src = x.data();
  auto* dst = static_cast<std::int8_t*>(result.mutable_data());
  py::gil_scoped_release release;
  if (target.cuda) {
#if defined(FASTRES_WITH_CUDA)
    run_on_device(target.device, {{src, count * sizeof(float)}}, dst, count, [&](auto& in, auto& o, cudaStream_t s) {
      k::quantize_int8_linear(o.template as<std::int8_t>(), in[0].template as<float>(), count, s);
    });
#endif
  } else {
    k::quantize_int8_linear_host(dst, src, count);
  }
  return result;
}

// [C, H, W] or [N, C, H, W] as an Nchw shape; `batched` says which.
k::Nchw nchw_of(const py::array& x, const std::string& what, bool& batched) {
  if (x.ndim() != 3 && x.ndim() != 4) {
    throw InvalidArgument(what + ": expected [C, H, W] or [N, C, H, W], got shape " + shape_text(shape_of(x)));
  }
  batched = x.ndim() == 4;
  const py::ssize_t o = batched ? 1 : 0;
  return k::Nchw{batched ? static_cast<std::size_t>(x.shape(0)) : 1, static_cast<std::size_t>(x.shape(o)),
                 static_cast<std::size_t>(x.shape(o + 1)), static_cast<std::size_t>(x.shape(o + 2))};
}

py::array quantize_int8_chw4(const py::object& x_obj, const py::object& device, const py::object& out) {
  const Target target = parse_device(device);
  py::array any = py::array::ensure(x_obj);
  if (!any) throw InvalidArgument("quantize_int8_chw4 x: expected a NumPy array");
  const bool is_int8 = any.dtype().is(py::dtype::of<std::int8_t>());
  py::array x = is_int8 ? py::array(require_array<std::int8_t>(any, "quantize_int8_chw4 x", ""))
                        : py::array(require_array<float>(any, "quantize_int8_chw4 x",
                                                         "pass float32 (quantized here) or int8 (int8_linear)"));
  bool batched = false;
  const k::Nchw shape = nchw_of(x, "quantize_int8_chw4 x", batched);
  const auto groups = static_cast<py::ssize_t>((shape.c + 3) / 4);
  std::vector<py::ssize_t> out_shape{groups, static_cast<py::ssize_t>(shape.h), static_cast<py::ssize_t>(shape.w), 4};
  if (batched) out_shape.insert(out_shape.begin(), static_cast<py::ssize_t>(shape.n));
  py::array result = make_output(out, py::dtype::of<std::int8_t>(), out_shape, "quantize_int8_chw4");
  const std::size_t out_bytes = static_cast<std::size_t>(result.nbytes());
  const void* src = x.data();
  auto* dst = static_cast<std::int8_t*>(result.mutable_data());
  py::gil_scoped_release release;
  if (target.cuda) {
#if defined(FASTRES_WITH_CUDA)
    run_on_device(target.device, {{src, static_cast<std::size_t>(x.nbytes())}}, dst, out_bytes,
                  [&](auto& in, auto& o, cudaStream_t s) {
                    if (is_int8) k::relayout_int8_chw4(o.template as<std::int8_t>(), in[0].template as<std::int8_t>(), shape, s);
                    else k::quantize_int8_chw4(o.template as<std::int8_t>(), in[0].template as<float>(), shape, s);
                  });
#endif
  } else if (is_int8) {
    k::relayout_int8_chw4_host(dst, static_cast<const std::int8_t*>(src), shape);
  } else {
    k::quantize_int8_chw4_host(dst, static_cast<const float*>(src), shape);
  }
  return result;
}

// ---------------------------------------------------------------- top-1
py::array top1(const py::object& logits_obj, std::int32_t offset, const py::object& device, const py::object& out) {
  const Target target = parse_device(device);
  auto logits = require_array<float>(logits_obj, "top1 logits", kFloat32Hint);
  if (logits.ndim() != 2) throw InvalidArgument("top1 logits: expected [N, classes], got shape " + shape_text(shape_of(logits)));
  const auto rows = static_cast<std::size_t>(logits.shape(0));
  const auto classes = static_cast<std::size_t>(logits.shape(1));
  if (rows > 0 && classes == 0) throw InvalidArgument("top1 logits: 0 classes; an argmax needs at least one");
  py::array result = make_output(out, py::dtype::of<std::int32_t>(), {static_cast<py::ssize_t>(rows)}, "top1");
  const float* src = logits.data();
  auto* dst = static_cast<std::int32_t*>(result.mutable_data());
  py::gil_scoped_release release;
  if (target.cuda) {
#if defined(FASTRES_WITH_CUDA)
    run_on_device(target.device, {{src, rows * classes * sizeof(float)}}, dst, rows * sizeof(std::int32_t),
                  [&](auto& in, auto& o, cudaStream_t s) {
                    k::top1(o.template as<std::int32_t>(), in[0].template as<float>(), rows, classes, offset, s);
                  });
#endif
  } else {
    k::top1_host(dst, src, rows, classes, offset);
  }
  return result;
}

// ---------------------------------------------------------------- decoded images
k::ChannelMeans means_of(const std::vector<float>& means) {
  if (means.size() != 3) {
    throw InvalidArgument("hwc_to_nchw means: expected 3 values (R, G, B), got " + std::to_string(means.size()));
  }
  k::ChannelMeans m;
  for (int c = 0; c < 3; ++c) m.rgb[c] = means[static_cast<std::size_t>(c)];
  return m;
}

py::array hwc_to_nchw(const py::object& images_obj, const std::string& dtype, const std::vector<float>& means_in,
                      const py::object& device, const py::object& out) {
  const Target target = parse_device(device);
  if (dtype != "float32" && dtype != "int8") {
    throw InvalidArgument("hwc_to_nchw dtype='" + dtype + "': expected 'float32' or 'int8'");
  }
  const k::ChannelMeans means = means_of(means_in);
  auto images = require_array<std::uint8_t>(images_obj, "hwc_to_nchw images", "pass decoded uint8 RGB images [N, H, W, 3]");
  if ((images.ndim() != 3 && images.ndim() != 4) || images.shape(images.ndim() - 1) != 3) {
    throw InvalidArgument("hwc_to_nchw images: expected [H, W, 3] or [N, H, W, 3] (RGB), got shape " +
                          shape_text(shape_of(images)));
  }
  const bool batched = images.ndim() == 4;
  const py::ssize_t o = batched ? 1 : 0;
  const k::Nchw shape{batched ? static_cast<std::size_t>(images.shape(0)) : 1, 3, static_cast<std::size_t>(images.shape(o)),
                      static_cast<std::size_t>(images.shape(o + 1))};
  std::vector<py::ssize_t> out_shape{3, images.shape(o), images.shape(o + 1)};
  if (batched) out_shape.insert(out_shape.begin(), images.shape(0));
  const bool f32 = dtype == "float32";
  py::array result = make_output(out, f32 ? py::dtype::of<float>() : py::dtype::of<std::int8_t>(), out_shape, "hwc_to_nchw");
  const std::uint8_t* src = images.data();
  void* dst = result.mutable_data();
  const auto out_bytes = static_cast<std::size_t>(result.nbytes());
  py::gil_scoped_release release;
  if (target.cuda) {
#if defined(FASTRES_WITH_CUDA)
    run_on_device(target.device, {{src, shape.count()}}, dst, out_bytes, [&](auto& in, auto& o, cudaStream_t s) {
      if (f32) k::hwc_u8_to_nchw_f32(o.template as<float>(), in[0].template as<std::uint8_t>(), shape, means, s);
      else k::hwc_u8_to_nchw_int8(o.template as<std::int8_t>(), in[0].template as<std::uint8_t>(), shape, means, s);
    });
#endif
  } else if (f32) {
    k::hwc_u8_to_nchw_f32_host(static_cast<float*>(dst), src, shape, means);
  } else {
    k::hwc_u8_to_nchw_int8_host(static_cast<std::int8_t*>(dst), src, shape, means);
  }
  return result;
}

// ---------------------------------------------------------------- probes of the CUDA wrappers
// Allocates `bytes` through a fresh PinnedHostAllocator, writes and reads them back, frees them:
// says whether the memory was page-locked and what the fallback warned.
py::dict pinned_host_probe(std::size_t bytes) {
#if defined(FASTRES_WITH_CUDA)
  std::vector<std::string> warnings;
  cuda::PinnedHostAllocator alloc([&](const std::string& m) { warnings.push_back(m); });
  bool pinned = false;
  bool intact = true;
  {
    py::gil_scoped_release release;
    void* p = alloc.allocate(bytes, kPageAlignment);
    pinned = alloc.is_pinned(p);
    std::memset(p, 0x5a, bytes);
    const auto* b = static_cast<const unsigned char*>(p);
    for (std::size_t i = 0; i < bytes; i += 4096) intact = intact && b[i] == 0x5a;
    intact = intact && (reinterpret_cast<std::uintptr_t>(p) % kPageAlignment == 0);
    alloc.deallocate(p, bytes, kPageAlignment);
  }
  py::dict d;
  d["pinned"] = pinned;
  d["allocator_pinned"] = alloc.pinned();
  d["fallbacks"] = alloc.fallbacks();
  d["intact"] = intact;
  d["warnings"] = warnings;
  return d;
#else
  (void)bytes;
  throw_not_compiled("pinned host memory");
#endif
}

// Captures quantize_int8_linear of `x` into a CUDA graph on device `device` and replays it
// `replays` times (after filling the output with a sentinel each time, also captured), timing the replays with
// events: exercises Stream, Event, DeviceBuffer, DeviceGuard, Graph and GraphExec end to end.
py::tuple graph_replay_probe(const py::object& x_obj, int replays, const py::object& device) {
  const Target target = parse_device(device.is_none() ? py::object(py::str("cuda")) : device);
  auto x = require_array<float>(x_obj, "graph_replay_probe x", kFloat32Hint);
  if (replays < 1) throw InvalidArgument("graph_replay_probe replays=" + std::to_string(replays) + ": must be >= 1");
  py::array_t<std::int8_t> result(shape_of(x));
  double ms = 0.0;
#if defined(FASTRES_WITH_CUDA)
  const auto count = static_cast<std::size_t>(x.size());
  const float* src = x.data();
  auto* dst = result.mutable_data();
  {
    py::gil_scoped_release release;
    cuda::DeviceGuard guard(target.device);
    cuda::Stream stream;
    cuda::DeviceBuffer in(count * sizeof(float));
    cuda::DeviceBuffer out(count);
    in.copy_from_host(src, count * sizeof(float), stream.get());
    stream.synchronize();
    cuda::Graph graph = cuda::capture(stream.get(), [&] {
      out.fill(0xA5, stream.get());
      k::quantize_int8_linear(out.as<std::int8_t>(), in.as<float>(), count, stream.get());
    });
    cuda::GraphExec exec(graph);
    cuda::Event start(cuda::EventWait::kBlockingSync, true), end(cuda::EventWait::kBlockingSync, true);
    start.record(stream.get());
    for (int r = 0; r < replays; ++r) exec.launch(stream.get());
    end.record(stream.get());
    end.synchronize();
    ms = cuda::Event::elapsed_ms(start, end);
    out.copy_to_host(dst, count, stream.get());
    stream.synchronize();
  }
#else
  (void)target;
#endif
  return py::make_tuple(result, ms);
}

}  // namespace
}  // namespace fastres::python

void bind_kernels(py::module_& m) {
  using namespace fastres::python;
  namespace k = fastres::kernels;
  py::module_ km = m.def_submodule("kernels", R"doc(
fastres's CUDA kernels and their host twins. Each function runs the host twin by default and the
CUDA kernel with device='cuda' / 'cuda:N' / N (inputs copied to the device and the result back);
the device path raises fastres.errors.Unavailable without CUDA or a device. No dtype is cast
silently: a wrong dtype raises InvalidArgument saying what to pass.)doc");

  km.def("gather", &gather, "library"_a, "slots"_a, py::kw_only(), "device"_a = py::none(), "out"_a = py::none(),
         R"doc(library[slots]: a contiguous batch of library rows (any dtype and row shape); slots may
repeat and come in any order. The start_from_device gather.)doc");
  km.def("quantize_int8_linear", &quantize_int8_linear, "x"_a, py::kw_only(), "device"_a = py::none(),
         "out"_a = py::none(), R"doc(float32 -> int8, any shape: np.clip(x, -128, 127).astype(np.int8)
(truncation toward zero; NaN -> 0, as NumPy on x86-64).)doc");
  km.def("quantize_int8_chw4", &quantize_int8_chw4, "x"_a, py::kw_only(), "device"_a = py::none(),
         "out"_a = py::none(), R"doc(float32 (quantized like quantize_int8_linear) or int8 [C, H, W] /
[N, C, H, W] -> int8 NC/HW4 [ceil(C/4), H, W, 4] / [N, ceil(C/4), H, W, 4], zero-padded channels.)doc");
  km.def("top1", &top1, "logits"_a, "offset"_a = 0, py::kw_only(), "device"_a = py::none(), "out"_a = py::none(),
         R"doc(float32 logits [N, classes] -> int32 [N]: argmax - offset, with NumPy's argmax rules (the
first NaN wins, ties to the lowest index). offset=1 for models with a background class 0.)doc");
  km.def("hwc_to_nchw", &hwc_to_nchw, "images"_a, "dtype"_a = "float32",
         "means"_a = std::vector<float>{123.68f, 116.78f, 103.94f}, py::kw_only(), "device"_a = py::none(),
         "out"_a = py::none(), R"doc(Decoded uint8 RGB images [H, W, 3] / [N, H, W, 3] -> [3, H, W] /
[N, 3, H, W]: float32(pixel) - means[c] as 'float32', or that quantized like quantize_int8_linear as 'int8'.)doc");

  // Raw device pointers (ints) and a cudaStream_t handle (0: the legacy default stream): the
  // kernel is enqueued and the call returns. For benchmarks with PyTorch or CuPy buffers.
  km.def("_gather_ptr", [](std::uintptr_t batch, std::uintptr_t library, std::size_t sample_bytes, std::uintptr_t slots,
                           std::size_t count, std::uintptr_t stream) {
    require_cuda_for_ptr("_gather_ptr");
#if defined(FASTRES_WITH_CUDA)
    py::gil_scoped_release release;
    k::gather_samples(ptr<std::byte>(batch), ptr<const std::byte>(library), sample_bytes, ptr<const std::uint32_t>(slots),
                      count, as_stream(stream));
#else
    (void)batch, (void)library, (void)sample_bytes, (void)slots, (void)count, (void)stream;
#endif
  }, "batch"_a, "library"_a, "sample_bytes"_a, "slots"_a, "count"_a, "stream"_a = 0);
  km.def("_quantize_int8_linear_ptr", [](std::uintptr_t dst, std::uintptr_t src, std::size_t count, std::uintptr_t stream) {
    require_cuda_for_ptr("_quantize_int8_linear_ptr");
#if defined(FASTRES_WITH_CUDA)
    py::gil_scoped_release release;
    k::quantize_int8_linear(ptr<std::int8_t>(dst), ptr<const float>(src), count, as_stream(stream));
#else
    (void)dst, (void)src, (void)count, (void)stream;
#endif
  }, "dst"_a, "src"_a, "count"_a, "stream"_a = 0);
  km.def("_quantize_int8_chw4_ptr", [](std::uintptr_t dst, std::uintptr_t src, std::size_t n, std::size_t c,
                                       std::size_t h, std::size_t w, std::uintptr_t stream) {
    require_cuda_for_ptr("_quantize_int8_chw4_ptr");
#if defined(FASTRES_WITH_CUDA)
    py::gil_scoped_release release;
    k::quantize_int8_chw4(ptr<std::int8_t>(dst), ptr<const float>(src), k::Nchw{n, c, h, w}, as_stream(stream));
#else
    (void)dst, (void)src, (void)n, (void)c, (void)h, (void)w, (void)stream;
#endif
  }, "dst"_a, "src"_a, "n"_a, "c"_a, "h"_a, "w"_a, "stream"_a = 0);
  km.def("_top1_ptr", [](std::uintptr_t labels, std::uintptr_t logits, std::size_t rows, std::size_t classes,
                         std::int32_t offset, std::uintptr_t stream) {
    require_cuda_for_ptr("_top1_ptr");
#if defined(FASTRES_WITH_CUDA)
    py::gil_scoped_release release;
    k::top1(ptr<std::int32_t>(labels), ptr<const float>(logits), rows, classes, offset, as_stream(stream));
#else
    (void)labels, (void)logits, (void)rows, (void)classes, (void)offset, (void)stream;
#endif
  }, "labels"_a, "logits"_a, "rows"_a, "classes"_a, "offset"_a = 0, "stream"_a = 0);
  km.def("_hwc_to_nchw_ptr", [](std::uintptr_t dst, std::uintptr_t src, std::size_t n, std::size_t h, std::size_t w,
                                const std::string& dtype, std::uintptr_t stream) {
    require_cuda_for_ptr("_hwc_to_nchw_ptr");
    if (dtype != "float32" && dtype != "int8") throw fastres::InvalidArgument("dtype='" + dtype + "': expected 'float32' or 'int8'");
#if defined(FASTRES_WITH_CUDA)
    py::gil_scoped_release release;
    const k::Nchw shape{n, 3, h, w};
    if (dtype == "float32") k::hwc_u8_to_nchw_f32(ptr<float>(dst), ptr<const std::uint8_t>(src), shape, {}, as_stream(stream));
    else k::hwc_u8_to_nchw_int8(ptr<std::int8_t>(dst), ptr<const std::uint8_t>(src), shape, {}, as_stream(stream));
#else
    (void)dst, (void)src, (void)n, (void)h, (void)w, (void)stream;
#endif
  }, "dst"_a, "src"_a, "n"_a, "h"_a, "w"_a, "dtype"_a = "float32", "stream"_a = 0);

  km.def("_pinned_host_probe", &pinned_host_probe, "bytes"_a = std::size_t{1} << 20,
         "Test hook: allocates through a fresh PinnedHostAllocator; says whether it was pinned and what it warned.");
  km.def("_graph_replay_probe", &graph_replay_probe, "x"_a, "replays"_a = 3, py::kw_only(), "device"_a = py::none(),
         "Test hook: quantize_int8_linear captured in a CUDA graph and replayed; returns (result, milliseconds).");
}
