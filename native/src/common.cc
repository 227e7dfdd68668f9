#include "common.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cmath>
#include <stdexcept>

namespace ferkit {

namespace {
// Marks our Externals so a foreign External is a TypeError, not a bad cast.
const napi_type_tag kHandleTag = {0x6665726b69742d74ULL, 0x656e736f722d7631ULL};

struct TypeErrorEx : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

namespace {
std::atomic<int64_t> live_handles{0};
}

int64_t LiveHandles() { return live_handles.load(); }

void ReleaseHandle(Handle* h) {
  if (h->t.defined()) {
    h->t.reset();
    live_handles--;
  }
}

Napi::Value Wrap(Napi::Env env, at::Tensor t) {
  if (!t.defined()) return env.Null();
  auto* h = new Handle{std::move(t)};
  live_handles++;
  // A basic finalizer (it touches no JavaScript) runs inside the garbage collection that
  // frees the External. Node defers any other kind to the event loop, so a synchronous
  // training loop would pile up every step's finalizers (and their handles) until it yields.
  auto ext = Napi::External<Handle>::New(env, h, [](Napi::BasicEnv, Handle* p) {
    ReleaseHandle(p);
    delete p;
  });
  napi_type_tag_object(env, ext, &kHandleTag);
  return ext;
}

bool IsHandle(Napi::Env env, const Napi::Value& v) {
  if (!v.IsExternal()) return false;
  bool ok = false;
  return napi_check_object_type_tag(env, v, &kHandleTag, &ok) == napi_ok && ok;
}

at::ScalarType ParseDtype(Napi::Env env, const std::string& n) {
  if (n == "float32") return at::kFloat;
  if (n == "float64") return at::kDouble;
  if (n == "float16") return at::kHalf;
  if (n == "bfloat16") return at::kBFloat16;
  if (n == "int64") return at::kLong;
  if (n == "int32") return at::kInt;
  if (n == "int16") return at::kShort;
  if (n == "int8") return at::kChar;
  if (n == "uint8") return at::kByte;
  if (n == "bool") return at::kBool;
  throw TypeErrorEx("unknown dtype '" + n +
                    "' (allowed: float32, float64, float16, bfloat16, int64, int32, int16, int8, uint8, bool)");
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kDouble: return "float64";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kShort: return "int16";
    case at::kChar: return "int8";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

void Args::TypeError(size_t i, const std::string& expected) const {
  throw TypeErrorEx(std::string(op_) + ": argument " + std::to_string(i) + " must be " + expected);
}

at::Tensor& Args::T(size_t i) const {
  if (!IsTensor(i)) TypeError(i, "a Tensor");
  auto* h = info_[i].As<Napi::External<Handle>>().Data();
  if (!h->t.defined()) throw std::runtime_error(std::string(op_) + ": argument " + std::to_string(i) + " is a disposed Tensor");
  return h->t;
}

c10::optional<at::Tensor> Args::OptT(size_t i) const {
  if (Missing(i)) return c10::nullopt;
  return T(i);
}

double Args::D(size_t i) const {
  if (!IsNumber(i)) TypeError(i, "a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

c10::optional<double> Args::OptD(size_t i) const {
  if (Missing(i)) return c10::nullopt;
  return D(i);
}

int64_t Args::I(size_t i) const {
  if (!IsNumber(i)) TypeError(i, "an integer");
  double v = info_[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::floor(v) != v) TypeError(i, "an integer");
  return static_cast<int64_t>(v);
}

c10::optional<int64_t> Args::OptI(size_t i) const {
  if (Missing(i)) return c10::nullopt;
  return I(i);
}

bool Args::B(size_t i) const {
  if (i >= info_.Length() || !info_[i].IsBoolean()) TypeError(i, "a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

at::Scalar Args::S(size_t i) const {
  if (i < info_.Length() && info_[i].IsBoolean()) return at::Scalar(info_[i].As<Napi::Boolean>().Value());
  if (!IsNumber(i)) TypeError(i, "a number");
  double v = info_[i].As<Napi::Number>().DoubleValue();
  // Integral numbers stay integral so int tensors keep their dtype (x + 1 on int64).
  if (std::isfinite(v) && std::floor(v) == v && std::fabs(v) < 9.007199254740992e15) return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

std::string Args::Str(size_t i) const {
  if (i >= info_.Length() || !info_[i].IsString()) TypeError(i, "a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> Args::Ints(size_t i) const {
  if (IsNumber(i)) return {I(i)};
  if (i >= info_.Length() || !info_[i].IsArray()) TypeError(i, "an array of integers");
  auto arr = info_[i].As<Napi::Array>();
  std::vector<int64_t> out(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!v.IsNumber()) TypeError(i, "an array of integers");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || std::floor(d) != d) TypeError(i, "an array of integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

std::vector<at::Tensor> Args::Tensors(size_t i) const {
  if (i >= info_.Length() || !info_[i].IsArray()) TypeError(i, "an array of Tensors");
  auto arr = info_[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value v = arr.Get(k);
    if (!IsHandle(env, v)) TypeError(i, "an array of Tensors");
    auto* h = v.As<Napi::External<Handle>>().Data();
    if (!h->t.defined()) throw std::runtime_error(std::string(op_) + ": argument " + std::to_string(i) + " holds a disposed Tensor");
    out.push_back(h->t);
  }
  return out;
}

at::ScalarType Args::Dtype(size_t i, at::ScalarType fallback) const {
  if (Missing(i)) return fallback;
  return ParseDtype(env, Str(i));
}

Napi::Value ToJs(Napi::Env env, const std::vector<at::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t k = 0; k < ts.size(); k++) arr.Set(static_cast<uint32_t>(k), Wrap(env, ts[k]));
  return arr;
}

Napi::Value Guarded(const Napi::CallbackInfo& info, const char* name, const std::function<Napi::Value()>& body) {
  Napi::Env env = info.Env();
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const TypeErrorEx& e) {
    throw Napi::TypeError::New(env, e.what());
  } catch (const c10::Error& e) {
    // what_without_backtrace keeps libtorch's message and drops the C++ stack.
    throw Napi::Error::New(env, std::string(name) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, e.what());
  }
}

void Register(Napi::Env env, Napi::Object target, const std::vector<OpDef>& table) {
  for (const auto& def : table) {
    auto* owned = new OpDef(def);  // lives as long as the process, like the module
    target.Set(def.name, Napi::Function::New(
                             env,
                             [](const Napi::CallbackInfo& info) -> Napi::Value {
                               auto* d = static_cast<OpDef*>(info.Data());
                               return Guarded(info, d->name, [&]() {
                                 Args a(info, d->name);
                                 return d->fn(a);
                               });
                             },
                             def.name, owned));
  }
}

}  // namespace ferkit
