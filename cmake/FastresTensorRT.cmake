# Resolves FASTRES_WITH_TENSORRT (AUTO/ON/OFF) into FASTRES_HAVE_TENSORRT.
# TensorRT needs CUDA; its headers and libnvinfer are searched under TensorRT_ROOT,
# the CUDA toolkit and the usual system prefixes.
set(FASTRES_HAVE_TENSORRT OFF)
if(NOT FASTRES_WITH_TENSORRT STREQUAL "OFF")
  set(_trt_hint ${TensorRT_ROOT} $ENV{TensorRT_ROOT} ${CUDAToolkit_LIBRARY_ROOT})
  find_path(TensorRT_INCLUDE_DIR NvInfer.h HINTS ${_trt_hint} PATH_SUFFIXES include)
  find_library(TensorRT_LIBRARY NAMES nvinfer nvinfer_10 nvinfer_11 HINTS ${_trt_hint} PATH_SUFFIXES lib lib64)
  if(FASTRES_HAVE_CUDA AND TensorRT_INCLUDE_DIR AND TensorRT_LIBRARY)
    file(STRINGS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_ver REGEX "#define (NV_TENSORRT_MAJOR|NV_TENSORRT_MINOR|NV_TENSORRT_PATCH|TRT_MAJOR_ENTERPRISE|TRT_MINOR_ENTERPRISE|TRT_PATCH_ENTERPRISE) ")
    set(FASTRES_TENSORRT_VERSION "")
    foreach(_l ${_trt_ver})
      string(REGEX MATCH "([0-9]+)$" _n "${_l}")
      list(APPEND _parts ${_n})
    endforeach()
    list(JOIN _parts "." FASTRES_TENSORRT_VERSION)
    set(FASTRES_HAVE_TENSORRT ON)
  elseif(FASTRES_WITH_TENSORRT STREQUAL "ON")
    message(FATAL_ERROR
      "FASTRES_WITH_TENSORRT=ON but TensorRT was not found (NvInfer.h and libnvinfer"
      "${TensorRT_INCLUDE_DIR}${TensorRT_LIBRARY}) or CUDA is off. "
      "Install TensorRT 10 or 11 and set TensorRT_ROOT, or build with FASTRES_WITH_TENSORRT=OFF.")
  else()
    message(STATUS "fastres: TensorRT not found; the TensorRT engine is not built (FASTRES_WITH_TENSORRT=AUTO)")
  endif()
endif()
