// fastres's TensorRT test double (tests/tensorrt_double/README.md): the version header. Written
// in the enterprise style of TensorRT 10.11+ and 11.x (NV_TENSORRT_* defined through
// TRT_*_ENTERPRISE), which cmake/FastresTensorRT.cmake must parse.
#ifndef NV_INFER_VERSION_H
#define NV_INFER_VERSION_H

#define TRT_MAJOR_ENTERPRISE 10
#define TRT_MINOR_ENTERPRISE 99
#define TRT_PATCH_ENTERPRISE 0
#define TRT_BUILD_ENTERPRISE 0
#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< TensorRT major version.
#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE //!< TensorRT minor version.
#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE //!< TensorRT patch version.
#define NV_TENSORRT_BUILD TRT_BUILD_ENTERPRISE //!< TensorRT build number.

#endif  // NV_INFER_VERSION_H
