# Fails when a test executable's cases (from --list) differ from those registered with ctest
# in CMakeLists.txt, so a new TEST_CASE cannot silently go unrun.
execute_process(COMMAND ${EXE} --list OUTPUT_VARIABLE _out RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "${EXE} --list failed (${_rc})")
endif()
string(STRIP "${_out}" _out)
string(REPLACE "\n" ";" _listed "${_out}")
list(SORT _listed)
set(_expected ${EXPECTED})
list(SORT _expected)
if(NOT "${_listed}" STREQUAL "${_expected}")
  message(FATAL_ERROR "test cases in ${EXE}: ${_listed}\nregistered in tests/cpp/CMakeLists.txt: ${_expected}")
endif()
