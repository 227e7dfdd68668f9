// Shared helpers of the ferkit libtorch binding: tensor handles and argument decoding.
// The binding is generic (like Rust's tch): it knows tensors, not faces.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

namespace ferkit {

// A tensor owned by JavaScript. `dispose` resets `t` at once; the External's
// finalizer deletes the Handle only as a backstop when JS forgot to dispose.
struct Handle {
  at::Tensor t;
};

Napi::Value Wrap(Napi::Env env, at::Tensor t);
bool IsHandle(Napi::Env env, const Napi::Value& v);

at::ScalarType ParseDtype(Napi::Env env, const std::string& name);
std::string DtypeName(at::ScalarType t);

// Reads the arguments of one op call and throws a TypeError naming the op and the
// argument when a value has the wrong type.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), env(info.Env()), op_(op) {}

  size_t Length() const { return info_.Length(); }
  bool Missing(size_t i) const { return i >= info_.Length() || info_[i].IsUndefined() || info_[i].IsNull(); }
  bool IsNumber(size_t i) const { return i < info_.Length() && info_[i].IsNumber(); }
  bool IsTensor(size_t i) const { return i < info_.Length() && IsHandle(env, info_[i]); }

  at::Tensor& T(size_t i) const;
  c10::optional<at::Tensor> OptT(size_t i) const;
  double D(size_t i) const;
  c10::optional<double> OptD(size_t i) const;
  int64_t I(size_t i) const;
  c10::optional<int64_t> OptI(size_t i) const;
  bool B(size_t i) const;
  bool B(size_t i, bool fallback) const { return Missing(i) ? fallback : B(i); }
  at::Scalar S(size_t i) const;
  std::string Str(size_t i) const;
  std::vector<int64_t> Ints(size_t i) const;  // an array of integers, or one integer
  std::vector<at::Tensor> Tensors(size_t i) const;
  at::ScalarType Dtype(size_t i, at::ScalarType fallback) const;
  Napi::Value Raw(size_t i) const { return info_[i]; }

  [[noreturn]] void TypeError(size_t i, const std::string& expected) const;

 private:
  const Napi::CallbackInfo& info_;

 public:
  Napi::Env env;

 private:
  const char* op_;
};

// Conversion of op results to JavaScript values.
inline Napi::Value ToJs(Napi::Env env, at::Tensor t) { return Wrap(env, std::move(t)); }
inline Napi::Value ToJs(Napi::Env env, double v) { return Napi::Number::New(env, v); }
inline Napi::Value ToJs(Napi::Env env, bool v) { return Napi::Boolean::New(env, v); }
Napi::Value ToJs(Napi::Env env, const std::vector<at::Tensor>& ts);
inline Napi::Value ToJs(Napi::Env env, const std::tuple<at::Tensor, at::Tensor>& ts) {
  return ToJs(env, std::vector<at::Tensor>{std::get<0>(ts), std::get<1>(ts)});
}

using OpFn = std::function<Napi::Value(Args&)>;
struct OpDef {
  const char* name;
  OpFn fn;
};

// Runs `body` and turns libtorch errors (c10::Error) and other C++ exceptions into
// JavaScript exceptions carrying libtorch's message, so no error crashes the process.
Napi::Value Guarded(const Napi::CallbackInfo& info, const char* name, const std::function<Napi::Value()>& body);

// Table helpers: Op wraps an op returning a value, Void an in-place op returning nothing.
template <typename F>
OpDef Op(const char* name, F f) {
  return {name, [f](Args& a) -> Napi::Value { return ToJs(a.env, f(a)); }};
}
template <typename F>
OpDef Void(const char* name, F f) {
  return {name, [f](Args& a) -> Napi::Value {
            f(a);
            return a.env.Undefined();
          }};
}

// Number of tensors wrapped for JavaScript and not yet disposed (for leak checks).
int64_t LiveHandles();
void ReleaseHandle(Handle* h);

// Registers a table of ops as functions on `target`.
void Register(Napi::Env env, Napi::Object target, const std::vector<OpDef>& table);

std::vector<OpDef> TensorOps();
std::vector<OpDef> MathOps();
std::vector<OpDef> NNOps();
std::vector<OpDef> OptimOps();
std::vector<OpDef> RuntimeOps();
std::vector<OpDef> DistOps();

}  // namespace ferkit
