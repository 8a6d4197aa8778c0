# Resolves FASTRES_WITH_CUDA (AUTO/ON/OFF) into FASTRES_HAVE_CUDA.
set(FASTRES_HAVE_CUDA OFF)
if(NOT FASTRES_WITH_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # Hopper (H100/H200) and Ampere (A100); PTX for newer GPUs.
      set(CMAKE_CUDA_ARCHITECTURES "80;90")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit)
  endif()
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND)
    set(FASTRES_HAVE_CUDA ON)
    set(FASTRES_CUDA_VERSION "${CUDAToolkit_VERSION}")
  elseif(FASTRES_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR
      "FASTRES_WITH_CUDA=ON but no CUDA toolkit was found (nvcc and the CUDA runtime). "
      "Install the CUDA toolkit and put nvcc on PATH (or set CUDAToolkit_ROOT), "
      "or build without CUDA: FASTRES_WITH_CUDA=OFF pip install .")
  else()
    message(STATUS "fastres: CUDA toolkit not found; building the CPU-only core (FASTRES_WITH_CUDA=AUTO)")
  endif()
endif()
