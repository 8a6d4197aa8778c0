# cmake -DMODULE=... -DDOUBLE_HEADER=... -DWORK=... -P version_check.cmake
# fastres_tensorrt_version on the double's header and on the spellings TensorRT's headers use.
include("${MODULE}")
file(MAKE_DIRECTORY "${WORK}")
function(expect header want)
  fastres_tensorrt_version("${header}" got)
  if(NOT got STREQUAL want)
    message(FATAL_ERROR "${header}: parsed '${got}', expected '${want}'")
  endif()
endfunction()
expect("${DOUBLE_HEADER}" "10.99.0")
# TensorRT 8.x-10.10: numbers on the NV_TENSORRT_* lines, with doc comments after them.
file(WRITE "${WORK}/direct.h" "#define NV_TENSORRT_MAJOR 10 //!< TensorRT major version.\n"
  "#define NV_TENSORRT_MINOR 3 //!< TensorRT minor version.\n#define NV_TENSORRT_PATCH 0 //!< TensorRT patch version.\n"
  "#define NV_TENSORRT_BUILD 26 //!< TensorRT build number.\n#define NV_TENSORRT_SONAME_MAJOR 10\n")
expect("${WORK}/direct.h" "10.3.0")
# TensorRT 10.11+ and 11.x: through the TRT_*_ENTERPRISE macros (BUILD and LWS lines ignored).
file(WRITE "${WORK}/enterprise.h" "#define TRT_MAJOR_ENTERPRISE 11\n#define TRT_MINOR_ENTERPRISE 4\n"
  "#define TRT_PATCH_ENTERPRISE 0\n#define TRT_BUILD_ENTERPRISE 106\n"
  "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< TensorRT major version.\n"
  "#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE //!< TensorRT minor version.\n"
  "#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE //!< TensorRT patch version.\n"
  "#define NV_TENSORRT_LWS_MAJOR 0 //!< TensorRT LWS major version.\n")
expect("${WORK}/enterprise.h" "11.4.0")
# No version: "" (the caller then says the header is not TensorRT's).
file(WRITE "${WORK}/none.h" "#define SOMETHING 1\n")
expect("${WORK}/none.h" "")
expect("${WORK}/missing.h" "")
message(STATUS "fastres_tensorrt_version: all header spellings parsed")
