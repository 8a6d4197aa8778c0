// The Engine interface: what the executor runs a batch with.
//
// An engine declares its IO once (EngineIO) and runs batches through enqueue(). The executor
// calls enqueue() from stream-slot worker threads: exactly one thread per slot, so calls for
// DIFFERENT slots may run concurrently and an engine must allow that (per-slot state goes in
// the EngineSlotState it creates). A CPU engine runs synchronously inside enqueue(); a CUDA
// engine (EngineIO::device == kCuda) enqueues its work on StreamContext::stream and returns; the
// executor copies the answers back on the slot's copy stream and its completion thread waits on
// the slot's event before completing the batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// cudaStream_t without CUDA's headers (this header is CUDA-free): cuda_runtime_api.h declares the
// same `typedef struct CUstream_st* cudaStream_t`, so the two spellings are one type.
struct CUstream_st;

namespace fastres {

using CudaStream = CUstream_st*;

enum class DType { kFloat32, kFloat16, kInt8, kUInt8, kInt32, kInt64 };

// Bytes per element. Never throws.
std::size_t dtype_size(DType dtype) noexcept;
// NumPy's name for the dtype: "float32", "float16", "int8", "uint8", "int32", "int64".
const char* dtype_name(DType dtype) noexcept;
// Inverse of dtype_name(); throws InvalidArgument naming the accepted names.
DType parse_dtype(const std::string& name);

enum class Device { kCpu, kCuda };
const char* device_name(Device device) noexcept;

// What an engine consumes and produces, per sample. Immutable after the engine is built.
struct EngineIO {
  DType input_dtype = DType::kFloat32;
  std::vector<std::int64_t> input_shape;  // per sample, e.g. {3, 224, 224}; no batch dimension
  std::string input_layout = "NCHW";      // informational: "NCHW", "NC/4HW4" (int8 CHW4), ...
  std::size_t output_bytes = sizeof(std::int32_t);  // per sample: the int32 top-1 label
  std::size_t max_batch = 1;
  // kCpu: Batch::input/output are host memory and enqueue() computes. kCuda: they are device
  // memory of StreamContext::cuda_device and enqueue() only enqueues on StreamContext::stream.
  Device device = Device::kCpu;
  // kCuda only: enqueue() puts nothing but device work on StreamContext::stream (no host
  // synchronisation, no per-batch host state, no use of Batch::ids/indices), so the executor may
  // capture it into a CUDA graph once per (slot, batch size) and replay it
  // (ExecutorConfig::use_graphs). It then always passes the slot's own device buffers.
  bool graph_capturable = false;

  // Per-sample input bytes: prod(input_shape) * dtype_size(input_dtype).
  std::size_t input_bytes() const noexcept;
};

// Throws InvalidArgument when io is inconsistent (max_batch 0, a non-positive dimension,
// output_bytes 0). `who` names the engine in the message.
void validate(const EngineIO& io, const std::string& who);

// One batch as the engine sees it. Every pointer is valid until enqueue() returns (and, for a
// CUDA engine, until the slot's completion event fires): the executor owns all of it. For a
// kCuda engine `input` and `output` are device pointers; ids and indices stay host memory.
struct Batch {
  std::size_t size = 0;                   // 1 <= size <= ExecutorConfig::batch_size
  const std::uint64_t* ids = nullptr;     // LoadGen response ids, [size]
  const std::uint64_t* indices = nullptr; // QSL indices, [size]
  // [size, input_bytes] contiguous: the slot's gather buffer, or the SampleLibrary block itself
  // when the batch's samples are contiguous there (input_is_library == true; read-only). On
  // CUDA: the slot's device input buffer, or the device copy of the library (start_from_device).
  const std::byte* input = nullptr;
  bool input_is_library = false;
  // [size, output_bytes]: the slot's output buffer. The engine writes one answer per sample.
  std::byte* output = nullptr;
};

// Per-slot state an engine keeps (a TensorRT execution context, scratch buffers). Owned by the
// executor's slot; destroyed when the executor is.
class EngineSlotState {
 public:
  virtual ~EngineSlotState() = default;
};

// The stream slot a batch runs on (NVIDIA's "copy stream" and its resources). One per
// ExecutorConfig::copy_streams; a slot runs one batch at a time, from gather to completion.
struct StreamContext {
  std::size_t slot = 0;          // [0, copy_streams x devices): the executor's slot number
  std::size_t infer_stream = 0;  // this batch's inference stream, round-robin over [0, infer_streams)
  Device device = Device::kCpu;
  EngineSlotState* engine_state = nullptr;  // from Engine::create_slot_state; null if none
  // kCuda only. The device this slot runs on (current on the calling thread during
  // create_slot_state() and enqueue()), and the stream enqueue() puts its work on: the batch's
  // inference stream, or the slot's copy stream with run_infer_on_copy_streams. In
  // create_slot_state() `stream` is the slot's copy stream, for setup work.
  int cuda_device = -1;
  CudaStream stream = nullptr;
  // kCuda only: true while the executor captures this enqueue() into a CUDA graph. The work is
  // recorded, not run; the batch's ids and indices are those of the batch that triggered it.
  bool capturing = false;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // The engine's IO. Thread-safe, never blocks; the reference stays valid for the engine's life.
  virtual const EngineIO& io() const noexcept = 0;
  // A short name for messages and stats ("null", "python", "tensorrt:<file>").
  virtual std::string name() const = 0;

  // Called once per slot by the Executor's constructor, on the constructing thread, before any
  // enqueue(). Return null when the engine keeps no per-slot state. May throw (construction fails).
  virtual std::unique_ptr<EngineSlotState> create_slot_state(const StreamContext& stream) {
    (void)stream;
    return nullptr;
  }

  // Runs (CPU) or enqueues (CUDA) one batch. Called by the slot's worker thread only, so never
  // concurrently for the same slot; concurrently for different slots. May block (a CPU engine
  // computes here). Throws on failure (fastres::EngineError preferred); the executor then
  // completes every sample of the batch, flagged as failed, and records the message.
  virtual void enqueue(const Batch& batch, StreamContext& stream) = 0;
};

}  // namespace fastres
