// Errors of the fastres core. Every message names the thing and the fix.
// C++ throws these; cpp/bindings/module.cpp is the one place that turns them into
// Python's fastres.errors classes.
#pragma once

#include <stdexcept>
#include <string>

namespace fastres {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A user-supplied value is out of range or inconsistent (maps to InvalidArgument, a ValueError).
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// An engine failed while running a batch (maps to EngineError).
class EngineError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime call failed (maps to CudaError); the message names the call.
class CudaError : public Error {
 public:
  using Error::Error;
};

// A feature was not compiled in or its runtime is missing (maps to Unavailable).
class Unavailable : public Error {
 public:
  using Error::Error;
};

}  // namespace fastres
