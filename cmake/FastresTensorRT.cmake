# Resolves FASTRES_WITH_TENSORRT (AUTO/ON/OFF) into FASTRES_HAVE_TENSORRT, with
# TensorRT_INCLUDE_DIR, TensorRT_LIBRARY and FASTRES_TENSORRT_VERSION when found.
# TensorRT needs CUDA; its headers and libnvinfer are searched under TensorRT_ROOT (CMake
# variable or environment), the CUDA toolkit and the usual system prefixes.
include(${CMAKE_CURRENT_LIST_DIR}/FastresTensorRTVersion.cmake)
set(FASTRES_HAVE_TENSORRT OFF)
set(FASTRES_TENSORRT_VERSION "")
if(NOT FASTRES_WITH_TENSORRT STREQUAL "OFF")
  set(_trt_hint ${TensorRT_ROOT} $ENV{TensorRT_ROOT} ${CUDAToolkit_LIBRARY_ROOT})
  find_path(TensorRT_INCLUDE_DIR NvInferRuntime.h HINTS ${_trt_hint}
    PATH_SUFFIXES include include/x86_64-linux-gnu include/aarch64-linux-gnu)
  # TensorRT 10 names the library nvinfer; 11.x archives may carry the major in the name.
  find_library(TensorRT_LIBRARY NAMES nvinfer nvinfer_11 nvinfer_10 HINTS ${_trt_hint}
    PATH_SUFFIXES lib lib64 lib/x86_64-linux-gnu lib/aarch64-linux-gnu)
  if(TensorRT_INCLUDE_DIR)
    fastres_tensorrt_version("${TensorRT_INCLUDE_DIR}/NvInferVersion.h" FASTRES_TENSORRT_VERSION)
  endif()
  set(_trt_major "")
  if(FASTRES_TENSORRT_VERSION MATCHES "^([0-9]+)\\.")
    set(_trt_major "${CMAKE_MATCH_1}")
  endif()
  if(FASTRES_HAVE_CUDA AND TensorRT_INCLUDE_DIR AND TensorRT_LIBRARY AND _trt_major GREATER_EQUAL 10)
    set(FASTRES_HAVE_TENSORRT ON)
    message(STATUS "fastres: TensorRT ${FASTRES_TENSORRT_VERSION} (${TensorRT_LIBRARY})")
  else()
    if(NOT FASTRES_HAVE_CUDA)
      set(_why "CUDA is off (TensorRT needs FASTRES_WITH_CUDA)")
    elseif(NOT TensorRT_INCLUDE_DIR OR NOT TensorRT_LIBRARY)
      set(_why "NvInferRuntime.h or libnvinfer not found (include: ${TensorRT_INCLUDE_DIR}, library: ${TensorRT_LIBRARY})")
    else()
      set(_why "${TensorRT_INCLUDE_DIR}/NvInferVersion.h says TensorRT '${FASTRES_TENSORRT_VERSION}'; fastres needs 10 or 11")
    endif()
    if(FASTRES_WITH_TENSORRT STREQUAL "ON")
      message(FATAL_ERROR "FASTRES_WITH_TENSORRT=ON but ${_why}. Install TensorRT 10 or 11 (its C++ headers "
        "and libraries: NVIDIA's tar archive or the libnvinfer-dev package) and set TensorRT_ROOT, or build with "
        "FASTRES_WITH_TENSORRT=OFF.")
    endif()
    message(STATUS "fastres: the TensorRT engine is not built (FASTRES_WITH_TENSORRT=AUTO): ${_why}")
    set(FASTRES_TENSORRT_VERSION "")
  endif()
endif()
