# fastres_tensorrt_version(<NvInferVersion.h> <out_var>): "major.minor.patch" of a TensorRT
# version header, or "" when it has none. TensorRT ships two spellings: the numbers on the
# NV_TENSORRT_* lines themselves (up to 10.x, often with a trailing //!< comment), or, from 10.11
# and in 11.x, NV_TENSORRT_MAJOR defined as TRT_MAJOR_ENTERPRISE with the number on that macro's
# own line. Both are read: a NV_TENSORRT_* value that is a macro name is looked up.
function(fastres_tensorrt_version header out_var)
  set(${out_var} "" PARENT_SCOPE)
  if(NOT EXISTS "${header}")
    return()
  endif()
  file(READ "${header}" _text)
  set(_parts)
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "#define[ \t]+NV_TENSORRT_${_part}[ \t]+([A-Za-z0-9_]+)" _ "${_text}")
    set(_value "${CMAKE_MATCH_1}")
    if(NOT _value MATCHES "^[0-9]+$" AND NOT _value STREQUAL "")
      string(REGEX MATCH "#define[ \t]+${_value}[ \t]+([0-9]+)" _ "${_text}")
      set(_value "${CMAKE_MATCH_1}")
    endif()
    if(NOT _value MATCHES "^[0-9]+$")
      return()
    endif()
    list(APPEND _parts "${_value}")
  endforeach()
  list(JOIN _parts "." _version)
  set(${out_var} "${_version}" PARENT_SCOPE)
endfunction()
