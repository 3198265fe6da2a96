#!/usr/bin/env bash
# Builds the extension with AddressSanitizer + UndefinedBehaviorSanitizer (the CMake option
# FASTLOSS_SANITIZE) into its own build directory and install prefix, then runs tests with
# the ASan runtime preloaded into the (uninstrumented) Python. Any ASan report or UBSan
# report stops the run with a non-zero exit code.
#
#   tools/sanitize.sh                 # the selection below, every SIMD path this CPU runs
#   tools/sanitize.sh --ci            # what CI runs: the same selection, the baseline and
#                                     # AVX2 kernel files only, with ASan only (see below)
#   tools/sanitize.sh --emu512        # the same selection on the emu512 test path alone:
#                                     # the AVX-512 path's 16-float lanes compiled for AVX2,
#                                     # so that its tails and partial vectors meet ASan on a
#                                     # CPU without AVX-512 (kernel files with ASan only; the
#                                     # emu512 elementwise file alone compiles for about 11
#                                     # minutes, which is why CI does not run this)
#   tools/sanitize.sh --ci --build    # only the instrumented build (CI runs it beside the
#                                     # main test suite, which leaves a core idle)
#   tools/sanitize.sh --ci --no-build # only the tests, on the build already there
#   tools/sanitize.sh tests           # the whole suite (about 4x slower than without)
#   tools/sanitize.sh tests/test_api.py -k out
#
# UBSan instruments every lane operation of the vector kernels, which makes the kernel files
# compile about 3x slower than with ASan alone: on a 2-core machine the whole run takes about
# 13.5 minutes with both on every file and 8 with --ci, which builds the kernel files with
# ASan only and keeps UBSan on the bindings and the driver (scalar code). Set
# FASTLOSS_SANITIZE_KERNELS=address,undefined to choose for yourself.
#
# Needs g++ or clang++ with their sanitizer runtimes, and the test dependencies (numpy,
# pytest, hypothesis) in the current Python environment. Built objects are kept in
# build/sanitize (incremental on a re-run); the package is installed in build/sanitize-site.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# The selection (also CI's): the hardening tests, which drive every loss through every entry
# point and argument check (bad input, properties, threads, fork, determinism), the API and
# thread tests, and the cross-entropy, focal, margin and ranking matrices for one thread
# count per ISA. Left out: the external-oracle comparisons (PyTorch, JAX, ... are not built
# with the sanitizers and only compare numbers), the 2^31-element test, the RSS checks (ASan
# keeps freed memory in quarantine) and the regression matrix (its kernels share the driver
# and the vector math with the ones above). About 10,000 tests, 3-4 minutes on 2 cores.
SELECTION=(tests/test_focal.py tests/test_bad_input.py tests/test_properties.py
           tests/test_hardening.py tests/test_api.py tests/test_threads.py
           tests/test_cross_entropy.py tests/test_margin.py tests/test_ranking.py
           -m "not slow" -k "not t7 and not t2 and not torch and not jax")
kernels=${FASTLOSS_SANITIZE_KERNELS:-address,undefined}
emu512=0
ci=0
step=all  # all, build (only), test (only)
while [ "$#" -gt 0 ]; do  # the options, in any order, before any pytest arguments
  case "$1" in
    --ci) kernels=${FASTLOSS_SANITIZE_KERNELS:-address}; ci=1 ;;
    --emu512) kernels=${FASTLOSS_SANITIZE_KERNELS:-address}; emu512=1 ;;
    --build) step=build ;;
    --no-build) step=test ;;
    *) break ;;
  esac
  shift
done
if [ "$#" -gt 0 ]; then
  SELECTION=("$@")
fi

PYTHON=${PYTHON:-python}
CXX=${CXX:-c++}
build="$root/build/sanitize"
site="$root/build/sanitize-site"
if [ "$emu512" = 1 ]; then
  build="$root/build/sanitize-emu512"
  site="$root/build/sanitize-emu512-site"
fi

asan_rt=$("$CXX" -print-file-name=libasan.so)
if [ ! -e "$asan_rt" ]; then
  echo "sanitize.sh: no libasan.so for $CXX" >&2
  exit 2
fi
# The C++ runtime is preloaded too: ASan intercepts __cxa_throw only if libstdc++ is there
# when it starts (Python itself does not link it), or the first C++ exception aborts.
cxx_rt=$("$CXX" -print-file-name=libstdc++.so)
if [ -e "$cxx_rt" ]; then
  asan_rt="$asan_rt:$cxx_rt"
fi

# Only the SIMD paths this CPU runs (the others could not be tested here), at -O1: an
# instrumented kernel file takes minutes to compile at -O2. --ci leaves out AVX-512: its
# elementwise file alone compiles for about 6 minutes of one core, and its tails are masked
# loads and stores, where AVX2's and the baseline's, which CI keeps, are the overlapping
# vectors and scalar loops that ASan is there for (the full run keeps every path).
isas=avx2
if [ "$ci" = 0 ] && grep -q avx512bw /proc/cpuinfo 2>/dev/null; then
  isas="avx2;avx512"
fi
if [ "$emu512" = 1 ]; then
  isas="avx2;emu512"
  export FASTLOSS_TEST_ISAS=emu512  # tests/conftest.py: the ISA-parametrized tests run it alone
fi
if [ "$step" != test ]; then
echo "== building with -fsanitize=address,undefined (kernel files: $kernels) into $build"
isolation=()
if "$PYTHON" -c "import scikit_build_core, pybind11" 2>/dev/null; then
  isolation=(--no-build-isolation)
fi
rm -rf "$site"
"$PYTHON" -m pip install -q --no-deps "${isolation[@]}" --target "$site" \
  -C cmake.define.FASTLOSS_SANITIZE=ON -C cmake.build-type=RelWithDebInfo \
  -C cmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
  -C "cmake.define.FASTLOSS_SANITIZE_KERNELS=$kernels" \
  -C "cmake.define.FASTLOSS_ISAS=$isas" -C build-dir="$build" .
fi
if [ "$step" = build ]; then
  echo "sanitize.sh: built into $site"
  exit 0
fi
if [ ! -d "$site/fastloss" ]; then
  echo "sanitize.sh: no sanitized build in $site (run with --build first)" >&2
  exit 2
fi

echo "== running tests under ASan + UBSan: ${SELECTION[*]}"
# detect_leaks=0: CPython keeps interned objects alive at exit (not fastloss leaks; the RSS
# tests check that calls do not grow memory). halt_on_error: the first report fails the run.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:detect_odr_violation=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1:abort_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}"
export FASTLOSS_SANITIZED=1
# PYTHONPATH puts the sanitized site ahead of site-packages, but an editable install of
# fastloss in this environment adds an import hook (a meta path finder) that is asked before
# any path: a sitecustomize in the sanitized site removes that hook, and nothing else.
cat > "$site/sitecustomize.py" <<'PY'
import sys

sys.meta_path[:] = [f for f in sys.meta_path if "fastloss" not in type(f).__module__]
PY
cd "$site"   # import the sanitized build, not a source tree or another install
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$asan_rt" \
  "$PYTHON" -c "import fastloss, sys; assert fastloss.__file__.startswith('$site'), fastloss.__file__; print('sanitized fastloss from', fastloss.__file__)"
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$asan_rt" \
  "$PYTHON" -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" \
  "${SELECTION[@]/#tests/$root/tests}"
echo "sanitize.sh: clean"
