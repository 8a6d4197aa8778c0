#!/usr/bin/env bash
# Builds the C++ tests twice, under AddressSanitizer + UndefinedBehaviorSanitizer and under
# ThreadSanitizer (build/asan, build/tsan), and runs them with ctest. Any sanitizer report
# fails the run (halt_on_error=1, and -fno-sanitize-recover for UBSan).
#
# Usage: tests/cpp/sanitize.sh [asan|tsan]...   (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
jobs=$(nproc 2>/dev/null || echo 2)

build_and_test() {
  local name=$1 flags=$2
  local dir=build/$name
  echo "== $name: $flags"
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
    -DFASTRES_BUILD_TESTS=ON -DFASTRES_BUILD_BENCH=OFF -DFASTRES_WITH_CUDA=OFF -DFASTRES_WITH_TENSORRT=OFF \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer -O1 -g" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

run_asan() {
  export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
  build_and_test asan "-fsanitize=address,undefined -fno-sanitize-recover=all"
}

run_tsan() {
  export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
  # TSan's shadow memory layout rejects the high mmap entropy of recent kernels ("unexpected
  # memory mapping"); run without address-space randomisation when that is possible.
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    build_and_test_tsan_wrapped
  else
    build_and_test tsan "-fsanitize=thread"
  fi
}

build_and_test_tsan_wrapped() {
  local dir=build/tsan flags="-fsanitize=thread"
  echo "== tsan: $flags (ASLR off via setarch -R)"
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug \
    -DFASTRES_BUILD_TESTS=ON -DFASTRES_BUILD_BENCH=OFF -DFASTRES_WITH_CUDA=OFF -DFASTRES_WITH_TENSORRT=OFF \
    -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer -O1 -g" \
    -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
  cmake --build "$dir" -j "$jobs"
  setarch "$(uname -m)" -R ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(asan tsan)
for t in "${targets[@]}"; do
  case $t in
    asan) (run_asan) ;;
    tsan) (run_tsan) ;;
    *) echo "unknown sanitizer '$t': expected asan or tsan" >&2; exit 2 ;;
  esac
done
echo "== sanitizers clean: ${targets[*]}"
