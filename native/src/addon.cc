// Entry point of the ferkit libtorch binding: every op table becomes functions on
// the module's exports. The TypeScript side (src/torch/) wraps them in typed classes.
#include <cstdlib>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "common.h"

namespace ferkit {

namespace {

// A training step frees and reallocates tens of MB of activations. By default glibc serves the
// largest through fresh mmaps and hands freed heap tops back to the OS, so each step refaults
// its memory page by page (VGG-FER width 1 at bf16: 11,000-20,000 page faults and 280-380 ms per
// step of 64). A fixed 32 MB mmap threshold (glibc's maximum) and a 256 MB trim threshold keep
// that memory in the heap for the next step (700 faults, 270 ms); the trainer still returns free
// pages every `train.logEvery` steps (releaseFreeMemory). Skipped when the user tunes malloc
// through the environment, or sets FERKIT_MALLOC_TUNING=0.
void TuneMalloc() {
#ifdef __GLIBC__
  for (const char* var : {"GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"})
    if (std::getenv(var) != nullptr) return;
  const char* flag = std::getenv("FERKIT_MALLOC_TUNING");
  if (flag != nullptr && std::string(flag) == "0") return;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static bool tuned = (TuneMalloc(), true);  // once per process (workers load the addon too)
  (void)tuned;
  for (const auto& table : {TensorOps(), MathOps(), NNOps(), OptimOps(), RuntimeOps(), DistOps()}) Register(env, exports, table);
  return exports;
}

}  // namespace ferkit

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ferkit::Init(env, exports); }

NODE_API_MODULE(ferkit_torch, InitModule)
