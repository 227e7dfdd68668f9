// Entry point of the ferkit libtorch binding: every op table becomes functions on
// the module's exports. The TypeScript side (src/torch/) wraps them in typed classes.
#include "common.h"

namespace ferkit {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  for (const auto& table : {TensorOps(), MathOps(), NNOps(), OptimOps(), RuntimeOps()}) Register(env, exports, table);
  return exports;
}

}  // namespace ferkit

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return ferkit::Init(env, exports); }

NODE_API_MODULE(ferkit_torch, InitModule)
