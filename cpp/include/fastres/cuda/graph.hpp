// CUDA graphs: capture the work one batch enqueues on a stream once, replay it per batch
// (one graph per stream slot and batch size). Only with FASTRES_WITH_CUDA.
#pragma once

#include <cuda_runtime_api.h>

#include <functional>

namespace fastres::cuda {

// A captured graph (a template; instantiate it to run it). Move-only.
class Graph {
 public:
  Graph() = default;
  explicit Graph(cudaGraph_t graph) noexcept : graph_(graph) {}
  ~Graph();
  Graph(Graph&& other) noexcept;
  Graph& operator=(Graph&& other) noexcept;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  cudaGraph_t get() const noexcept { return graph_; }
  explicit operator bool() const noexcept { return graph_ != nullptr; }

 private:
  cudaGraph_t graph_ = nullptr;
};

// Records what `enqueue` puts on `stream` (thread-local capture mode: other threads' CUDA calls
// are unaffected) and returns it as a graph. If enqueue throws or the capture fails, the capture
// is ended and discarded before the error propagates, leaving the stream usable.
Graph capture(cudaStream_t stream, const std::function<void()>& enqueue);

// An executable graph. Move-only; launch() may be called repeatedly, from one thread at a time.
class GraphExec {
 public:
  GraphExec() = default;
  explicit GraphExec(const Graph& graph);
  ~GraphExec();
  GraphExec(GraphExec&& other) noexcept;
  GraphExec& operator=(GraphExec&& other) noexcept;
  GraphExec(const GraphExec&) = delete;
  GraphExec& operator=(const GraphExec&) = delete;

  cudaGraphExec_t get() const noexcept { return exec_; }
  explicit operator bool() const noexcept { return exec_ != nullptr; }
  void launch(cudaStream_t stream) const;

 private:
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace fastres::cuda
