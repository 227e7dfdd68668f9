#!/usr/bin/env bash
# Runs the tests that assert a training outcome again under the numerics the main run did not
# use. Two things change float rounding, and so the outcome of a seeded training:
#  - OpenBLAS's kernel, picked by CPU or forced by OPENBLAS_CORETYPE where a machine sets it
#    (Haswell on some processors of the kind CI runs on); it computes float32 matrix products;
#  - the precision: bf16 autocast (oneDNN) where the CPU has native bfloat16, else float32.
# CI lands on either kind of machine, so a test must hold for each. This runs the listed test
# files in float32 (FERKIT_NATIVE_BF16=0, as a CPU without bfloat16 runs them) under Haswell
# (AVX2) and, where the CPU has AVX-512, SkylakeX; and, where the CPU has native bfloat16, in
# bf16 under the kernel the main run did not use. Combinations the main run covered are skipped.
# Usage: scripts/kernel-tests.sh [test files...]   (default: the training-outcome tests)
set -euo pipefail
cd "$(dirname "$0")/.."

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(dist/test/fer_first_run.test.js dist/test/random.test.js dist/test/ssl_train.test.js dist/test/finetune.test.js dist/test/distill.test.js)

native_bf16=0
if [ "${FERKIT_NATIVE_BF16:-}" = 1 ] || { [ "${FERKIT_NATIVE_BF16:-}" != 0 ] && grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo; }; then
  native_bf16=1
fi
main_precision=$([ $native_bf16 = 1 ] && echo bf16 || echo fp32)
kernels=(Haswell)
grep -qw avx512f /proc/cpuinfo && kernels+=(SkylakeX)
# Unset, OpenBLAS picks the CPU's own kernel; on these CPUs that computes as SkylakeX with
# AVX-512 and as Haswell without (docs/evidence.md).
main_kernel=${OPENBLAS_CORETYPE:-${kernels[-1]}}
for k in "${kernels[@]}"; do
  precisions=(fp32)
  [ $native_bf16 = 1 ] && precisions+=(bf16)
  for p in "${precisions[@]}"; do
    if [ "$main_kernel" = "$k" ] && [ "$main_precision" = "$p" ]; then
      echo "[kernel-tests] OPENBLAS_CORETYPE=$k, $p: already covered by the main run" >&2
      continue
    fi
    echo "[kernel-tests] OPENBLAS_CORETYPE=$k, $p: ${files[*]}" >&2
    OPENBLAS_CORETYPE=$k FERKIT_NATIVE_BF16=$([ "$p" = bf16 ] && echo 1 || echo 0) node --test --test-concurrency=1 "${files[@]}"
  done
done
