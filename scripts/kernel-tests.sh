#!/usr/bin/env bash
# Runs the tests that assert a training outcome again under OpenBLAS kernels other than the
# machine's own. OpenBLAS picks its kernels by CPU, or by OPENBLAS_CORETYPE where a machine sets
# it (Haswell on some processors of the kind CI runs on), and the kernel changes float rounding
# and so the outcome of a seeded training. CI lands on either kind of machine: a test that holds
# only for one kernel fails on the other. This runs each listed test file under Haswell (AVX2)
# and, where the CPU has AVX-512, SkylakeX, skipping the kernel the main run already used.
# Usage: scripts/kernel-tests.sh [test files...]   (default: the training-outcome tests)
set -euo pipefail
cd "$(dirname "$0")/.."

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(dist/test/fer_first_run.test.js dist/test/random.test.js dist/test/ssl_train.test.js)

kernels=(Haswell)
grep -qw avx512f /proc/cpuinfo && kernels+=(SkylakeX)
for k in "${kernels[@]}"; do
  if [ "${OPENBLAS_CORETYPE:-}" = "$k" ]; then
    echo "[kernel-tests] OPENBLAS_CORETYPE=$k: already covered by the main run" >&2
    continue
  fi
  echo "[kernel-tests] OPENBLAS_CORETYPE=$k: ${files[*]}" >&2
  OPENBLAS_CORETYPE=$k node --test --test-concurrency=1 "${files[@]}"
done
