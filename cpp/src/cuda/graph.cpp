#include "fastres/cuda/graph.hpp"

#include <utility>

#include "fastres/cuda/error.hpp"

namespace fastres::cuda {

Graph::~Graph() {
  if (graph_ != nullptr) ignore(cudaGraphDestroy(graph_));
}

Graph::Graph(Graph&& other) noexcept : graph_(std::exchange(other.graph_, nullptr)) {}

Graph& Graph::operator=(Graph&& other) noexcept {
  if (this != &other) {
    if (graph_ != nullptr) ignore(cudaGraphDestroy(graph_));
    graph_ = std::exchange(other.graph_, nullptr);
  }
  return *this;
}

Graph capture(cudaStream_t stream, const std::function<void()>& enqueue) {
  FASTRES_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    enqueue();
  } catch (...) {
    cudaGraph_t partial = nullptr;
    if (cudaStreamEndCapture(stream, &partial) == cudaSuccess && partial != nullptr) ignore(cudaGraphDestroy(partial));
    cudaGetLastError();
    throw;
  }
  cudaGraph_t graph = nullptr;
  // Fails (cudaErrorStreamCaptureInvalidated, ...) when enqueue did something capture forbids,
  // such as a synchronous copy from pageable memory or a cudaStreamSynchronize.
  FASTRES_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  return Graph(graph);
}

GraphExec::GraphExec(const Graph& graph) { FASTRES_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph.get(), 0)); }

GraphExec::~GraphExec() {
  if (exec_ != nullptr) ignore(cudaGraphExecDestroy(exec_));
}

GraphExec::GraphExec(GraphExec&& other) noexcept : exec_(std::exchange(other.exec_, nullptr)) {}

GraphExec& GraphExec::operator=(GraphExec&& other) noexcept {
  if (this != &other) {
    if (exec_ != nullptr) ignore(cudaGraphExecDestroy(exec_));
    exec_ = std::exchange(other.exec_, nullptr);
  }
  return *this;
}

void GraphExec::launch(cudaStream_t stream) const { FASTRES_CUDA_CHECK(cudaGraphLaunch(exec_, stream)); }

}  // namespace fastres::cuda
