// Tensor creation, read-back, metadata, views and indexing, autograd, and the
// process-wide runtime switches (grad mode, inference mode, seeds, threads).
#include <dlfcn.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>
#include <c10/core/InferenceMode.h>

#include <cstring>
#include <fstream>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <memory>
#include <vector>

#include "common.h"

namespace ferkit {

namespace {

at::ScalarType TypedArrayDtype(Args& a, napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int32_array: return at::kInt;
    case napi_int16_array: return at::kShort;
    case napi_int8_array: return at::kChar;
    case napi_uint8_array:
    case napi_uint8_clamped_array: return at::kByte;
    case napi_bigint64_array: return at::kLong;
    default: a.TypeError(0, "a Float32Array, Float64Array, Int32Array, Int16Array, Int8Array, Uint8Array or BigInt64Array");
  }
}

Napi::TypedArray TypedArg(Args& a, size_t i) {
  if (i >= a.Length() || !a.Raw(i).IsTypedArray()) a.TypeError(i, "a typed array");
  return a.Raw(i).As<Napi::TypedArray>();
}

const uint8_t* TypedData(const Napi::TypedArray& ta) {
  return static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
}

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto d : shape) {
    TORCH_CHECK(d >= 0, "shape has a negative dimension: ", d);
    n *= d;
  }
  return n;
}

// Copies a contiguous tensor's bytes into a new JS typed array of the matching kind.
Napi::Value ToTypedArray(Napi::Env env, at::Tensor t) {
  if (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) t = t.to(at::kFloat);
  if (t.scalar_type() == at::kBool) t = t.to(at::kByte);
  t = t.detach().contiguous();
  size_t n = static_cast<size_t>(t.numel());
  size_t bytes = n * t.element_size();
  auto buf = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(buf.Data(), t.data_ptr(), bytes);
  switch (t.scalar_type()) {
    case at::kFloat: return Napi::Float32Array::New(env, n, buf, 0);
    case at::kDouble: return Napi::Float64Array::New(env, n, buf, 0);
    case at::kInt: return Napi::Int32Array::New(env, n, buf, 0);
    case at::kShort: return Napi::Int16Array::New(env, n, buf, 0);
    case at::kChar: return Napi::Int8Array::New(env, n, buf, 0);
    case at::kByte: return Napi::Uint8Array::New(env, n, buf, 0);
    case at::kLong: return Napi::TypedArrayOf<int64_t>::New(env, n, buf, 0, napi_bigint64_array);
    default: throw std::runtime_error("toArray: unsupported dtype " + DtypeName(t.scalar_type()));
  }
}

// "contiguous" (default, row-major NCHW) or "channels_last" (NHWC order in memory, same shape).
at::MemoryFormat MemoryFormatArg(Args& a, size_t i) {
  if (a.Missing(i)) return at::MemoryFormat::Contiguous;
  auto f = a.Str(i);
  if (f == "contiguous") return at::MemoryFormat::Contiguous;
  if (f == "channels_last") return at::MemoryFormat::ChannelsLast;
  a.TypeError(i, "one of 'contiguous', 'channels_last'");
}

// RAII guards of c10::InferenceMode, entered and left by explicit calls from JS.
std::vector<std::unique_ptr<c10::InferenceMode>>& InferenceStack() {
  // One stack per thread: inference mode is thread-local in libtorch, and workers load this addon too.
  static thread_local std::vector<std::unique_ptr<c10::InferenceMode>> stack;
  return stack;
}

// The profile being recorded, if any (the profiler's state is per thread, like autocast's).
std::unique_ptr<torch::autograd::profiler::RecordProfile>& ActiveProfile() {
  static thread_local std::unique_ptr<torch::autograd::profiler::RecordProfile> active;
  return active;
}

}  // namespace

std::vector<OpDef> TensorOps() {
  return {
      // --- creation and read-back ---
      Op("fromArray",
         [](Args& a) {
           auto ta = TypedArg(a, 0);
           auto shape = a.Ints(1);
           auto src = TypedArrayDtype(a, ta.TypedArrayType());
           TORCH_CHECK(Numel(shape) == static_cast<int64_t>(ta.ElementLength()), "fromArray: shape ", c10::IntArrayRef(shape),
                       " needs ", Numel(shape), " elements but the array has ", ta.ElementLength());
           auto t = at::empty(shape, at::TensorOptions().dtype(src));
           if (t.numel() > 0) std::memcpy(t.data_ptr(), TypedData(ta), t.numel() * t.element_size());
           auto dtype = a.Dtype(2, src);
           return dtype == src ? t : t.to(dtype);
         }),
      Op("fromBytes",
         [](Args& a) {
           auto ta = TypedArg(a, 0);
           auto shape = a.Ints(1);
           auto dtype = a.Dtype(2, at::kFloat);
           auto t = at::empty(shape, at::TensorOptions().dtype(dtype));
           size_t bytes = t.numel() * t.element_size();
           TORCH_CHECK(bytes == ta.ByteLength(), "fromBytes: shape ", c10::IntArrayRef(shape), " of ", DtypeName(dtype), " needs ",
                       bytes, " bytes but got ", ta.ByteLength());
           if (bytes > 0) std::memcpy(t.data_ptr(), TypedData(ta), bytes);
           return t;
         }),
      {"toArray", [](Args& a) { return ToTypedArray(a.env, a.T(0)); }},
      {"toBytes",
       [](Args& a) -> Napi::Value {
         auto t = a.T(0).detach().contiguous();
         size_t bytes = t.numel() * t.element_size();
         auto buf = Napi::Buffer<uint8_t>::Copy(a.env, static_cast<const uint8_t*>(t.data_ptr()), bytes);
         return buf;
       }},
      {"item",
       [](Args& a) -> Napi::Value {
         auto& t = a.T(0);
         TORCH_CHECK(t.numel() == 1, "item: a Tensor with ", t.numel(), " elements cannot be converted to a number");
         auto s = t.item();
         if (s.isBoolean()) return Napi::Boolean::New(a.env, s.toBool());
         if (s.isIntegral(false)) return Napi::Number::New(a.env, static_cast<double>(s.toLong()));
         return Napi::Number::New(a.env, s.toDouble());
       }},
      Op("empty", [](Args& a) { return at::empty(a.Ints(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("zeros", [](Args& a) { return at::zeros(a.Ints(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("ones", [](Args& a) { return at::ones(a.Ints(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("full", [](Args& a) { return at::full(a.Ints(0), a.S(1), at::TensorOptions().dtype(a.Dtype(2, at::kFloat))); }),
      Op("arange", [](Args& a) { return at::arange(a.S(0), a.S(1), a.S(2), at::TensorOptions().dtype(a.Dtype(3, at::kLong))); }),
      Op("linspace", [](Args& a) { return at::linspace(a.S(0), a.S(1), a.I(2), at::TensorOptions().dtype(a.Dtype(3, at::kFloat))); }),
      Op("eye", [](Args& a) { return at::eye(a.I(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("zerosLike", [](Args& a) { return at::zeros_like(a.T(0)); }),
      Op("onesLike", [](Args& a) { return at::ones_like(a.T(0)); }),
      Op("fullLike", [](Args& a) { return at::full_like(a.T(0), a.S(1)); }),
      // --- seeded random ---
      Op("rand", [](Args& a) { return at::rand(a.Ints(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("randn", [](Args& a) { return at::randn(a.Ints(0), at::TensorOptions().dtype(a.Dtype(1, at::kFloat))); }),
      Op("randint", [](Args& a) { return at::randint(a.I(0), a.I(1), a.Ints(2), at::TensorOptions().dtype(a.Dtype(3, at::kLong))); }),
      Op("randperm", [](Args& a) { return at::randperm(a.I(0), at::TensorOptions().dtype(a.Dtype(1, at::kLong))); }),
      Op("bernoulli", [](Args& a) { return a.IsNumber(1) ? at::bernoulli(a.T(0), a.D(1)) : at::bernoulli(a.T(0)); }),
      Op("multinomial", [](Args& a) { return at::multinomial(a.T(0), a.I(1), a.B(2, false)); }),
      Void("uniform_", [](Args& a) { a.T(0).uniform_(a.D(1), a.D(2)); }),
      Void("normal_", [](Args& a) { a.T(0).normal_(a.D(1), a.D(2)); }),
      // --- metadata ---
      {"shape",
       [](Args& a) -> Napi::Value {
         auto sizes = a.T(0).sizes();
         auto arr = Napi::Array::New(a.env, sizes.size());
         for (size_t k = 0; k < sizes.size(); k++) arr.Set(static_cast<uint32_t>(k), Napi::Number::New(a.env, static_cast<double>(sizes[k])));
         return arr;
       }},
      {"dtype", [](Args& a) -> Napi::Value { return Napi::String::New(a.env, DtypeName(a.T(0).scalar_type())); }},
      {"device", [](Args& a) -> Napi::Value { return Napi::String::New(a.env, a.T(0).device().str()); }},
      {"isContiguous", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, a.T(0).is_contiguous(MemoryFormatArg(a, 1))); }},
      {"isInference", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, a.T(0).is_inference()); }},
      {"dispose",
       [](Args& a) -> Napi::Value {
         if (!a.Raw(0).IsExternal() || !IsHandle(a.env, a.Raw(0))) a.TypeError(0, "a Tensor");
         ReleaseHandle(a.Raw(0).As<Napi::External<Handle>>().Data());
         return a.env.Undefined();
       }},
      {"isDisposed",
       [](Args& a) -> Napi::Value {
         if (!IsHandle(a.env, a.Raw(0))) a.TypeError(0, "a Tensor");
         return Napi::Boolean::New(a.env, !a.Raw(0).As<Napi::External<Handle>>().Data()->t.defined());
       }},
      // --- views, copies, shape ---
      Op("clone", [](Args& a) { return a.T(0).clone(at::MemoryFormat::Contiguous); }),
      Op("detach", [](Args& a) { return a.T(0).detach(); }),
      Op("contiguous", [](Args& a) { return a.T(0).contiguous(MemoryFormatArg(a, 1)); }),
      Op("to", [](Args& a) { return a.T(0).to(a.Dtype(1, at::kFloat)); }),
      // toMemoryFormat(t, format): a copy in `format` order unless `t` already suggests it (null
      // then), as Tensor.to(memory_format=...) decides. Unlike contiguous(), a tensor whose
      // strides fit both orders (a [O, 1, kH, kW] filter) is copied into channels_last strides,
      // which is what makes oneDNN pick NHWC for the first convolution of a grayscale model.
      {"toMemoryFormat", [](Args& a) -> Napi::Value {
         auto& t = a.T(0);
         auto format = MemoryFormatArg(a, 1);
         if (t.suggest_memory_format() == format) return a.env.Null();
         return Wrap(a.env, at::empty_like(t, t.options(), format).copy_(t));
       }},
      Op("reshape", [](Args& a) { return a.T(0).reshape(a.Ints(1)); }),
      Op("view", [](Args& a) { return a.T(0).view(a.Ints(1)); }),
      Op("permute", [](Args& a) { return a.T(0).permute(a.Ints(1)); }),
      Op("transpose", [](Args& a) { return a.T(0).transpose(a.I(1), a.I(2)); }),
      Op("flatten", [](Args& a) { return a.T(0).flatten(a.I(1), a.I(2)); }),
      Op("squeeze", [](Args& a) { return a.Missing(1) ? a.T(0).squeeze() : a.T(0).squeeze(a.I(1)); }),
      Op("unsqueeze", [](Args& a) { return a.T(0).unsqueeze(a.I(1)); }),
      Op("expand", [](Args& a) { return a.T(0).expand(a.Ints(1)); }),
      Op("repeat", [](Args& a) { return a.T(0).repeat(a.Ints(1)); }),
      Op("slice", [](Args& a) { return a.T(0).slice(a.I(1), a.OptI(2), a.OptI(3), a.Missing(4) ? 1 : a.I(4)); }),
      Op("narrow", [](Args& a) { return a.T(0).narrow(a.I(1), a.I(2), a.I(3)); }),
      Op("select", [](Args& a) { return a.T(0).select(a.I(1), a.I(2)); }),
      Op("indexSelect", [](Args& a) { return at::index_select(a.T(0), a.I(1), a.T(2)); }),
      Op("maskedSelect", [](Args& a) { return at::masked_select(a.T(0), a.T(1)); }),
      Op("gather", [](Args& a) { return at::gather(a.T(0), a.I(1), a.T(2)); }),
      Op("scatter", [](Args& a) { return a.IsNumber(3) ? at::scatter(a.T(0), a.I(1), a.T(2), a.S(3)) : at::scatter(a.T(0), a.I(1), a.T(2), a.T(3)); }),
      Op("scatterAdd", [](Args& a) { return at::scatter_add(a.T(0), a.I(1), a.T(2), a.T(3)); }),
      Op("maskedFill", [](Args& a) { return at::masked_fill(a.T(0), a.T(1), a.S(2)); }),
      Op("nonzero", [](Args& a) { return at::nonzero(a.T(0)); }),
      Op("cat", [](Args& a) { return at::cat(a.Tensors(0), a.Missing(1) ? 0 : a.I(1)); }),
      Op("stack", [](Args& a) { return at::stack(a.Tensors(0), a.Missing(1) ? 0 : a.I(1)); }),
      Op("split", [](Args& a) { return at::split_with_sizes(a.T(0), a.Ints(1), a.Missing(2) ? 0 : a.I(2));}),
      Op("chunk", [](Args& a) { return at::chunk(a.T(0), a.I(1), a.Missing(2) ? 0 : a.I(2));}),
      Op("flip", [](Args& a) { return at::flip(a.T(0), a.Ints(1)); }),
      Op("roll", [](Args& a) { return at::roll(a.T(0), a.Ints(1), a.Ints(2)); }),
      Op("pad",
         [](Args& a) {
           auto mode = a.Missing(2) ? std::string("constant") : a.Str(2);
           auto pad = a.Ints(1);
           if (mode == "constant") return at::constant_pad_nd(a.T(0), pad, a.Missing(3) ? at::Scalar(0) : a.S(3));
           if (mode == "reflect") return at::pad(a.T(0), pad, "reflect", c10::nullopt);
           if (mode == "replicate") return at::pad(a.T(0), pad, "replicate", c10::nullopt);
           if (mode == "circular") return at::pad(a.T(0), pad, "circular", c10::nullopt);
           a.TypeError(2, "one of 'constant', 'reflect', 'replicate', 'circular'");
         }),
      Op("oneHot", [](Args& a) { return at::one_hot(a.T(0), a.Missing(1) ? -1 : a.I(1)); }),
      // --- in-place updates (optimizers, EMA, initialisation) ---
      Void("copy_", [](Args& a) { a.T(0).copy_(a.T(1)); }),
      // Swaps the storage under a tensor (a parameter) and keeps its identity, so
      // optimizers holding it see the new layout; as PyTorch's `param.data = other`.
      Void("setData_", [](Args& a) {
        auto& t = a.T(0);
        auto& src = a.T(1);
        TORCH_CHECK(src.sizes().equals(t.sizes()) && src.scalar_type() == t.scalar_type(), "setData_: the new data must have the shape ",
                    t.sizes(), " and dtype ", DtypeName(t.scalar_type()), ", got ", src.sizes(), " ", DtypeName(src.scalar_type()));
        t.set_data(src);
      }),
      Void("zero_", [](Args& a) { a.T(0).zero_(); }),
      Void("fill_", [](Args& a) { a.T(0).fill_(a.S(1)); }),
      Void("add_", [](Args& a) { a.IsNumber(1) ? a.T(0).add_(a.S(1)) : a.T(0).add_(a.T(1), a.Missing(2) ? at::Scalar(1) : a.S(2)); }),
      Void("mul_", [](Args& a) { a.IsNumber(1) ? a.T(0).mul_(a.S(1)) : a.T(0).mul_(a.T(1)); }),
      Void("div_", [](Args& a) { a.IsNumber(1) ? a.T(0).div_(a.S(1)) : a.T(0).div_(a.T(1)); }),
      Void("lerp_", [](Args& a) { a.T(0).lerp_(a.T(1), a.S(2)); }),
      Void("clamp_", [](Args& a) { a.T(0).clamp_(a.Missing(1) ? c10::optional<at::Scalar>() : a.S(1), a.Missing(2) ? c10::optional<at::Scalar>() : a.S(2)); }),
      Void("maskedFill_", [](Args& a) { a.T(0).masked_fill_(a.T(1), a.S(2)); }),
      Void("indexPut_", [](Args& a) {
        c10::List<c10::optional<at::Tensor>> idx;
        for (auto& t : a.Tensors(1)) idx.push_back(t);
        a.T(0).index_put_(idx, a.T(2), a.B(3, false));
      }),
      // --- autograd ---
      Void("requiresGrad_", [](Args& a) { a.T(0).requires_grad_(a.B(1)); }),
      {"requiresGrad", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, a.T(0).requires_grad()); }},
      {"isLeaf", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, a.T(0).is_leaf()); }},
      {"gradFn",
       [](Args& a) -> Napi::Value {
         auto fn = a.T(0).grad_fn();
         return fn ? Napi::String::New(a.env, fn->name()) : a.env.Null();
       }},
      Void("retainGrad", [](Args& a) { a.T(0).retain_grad(); }),
      Void("backward",
           [](Args& a) {
             auto& t = a.T(0);
             auto grad = a.OptT(1);
             bool create = a.B(3, false);
             c10::optional<bool> retain = a.Missing(2) ? c10::optional<bool>() : c10::optional<bool>(a.B(2));
             t.backward(grad.has_value() ? *grad : at::Tensor(), retain, create);
           }),
      Op("grad", [](Args& a) { return a.T(0).grad(); }),
      Void("setGrad", [](Args& a) {
        auto& t = a.T(0);
        if (a.Missing(1)) {
          t.mutable_grad().reset();
          return;
        }
        // The checks of PyTorch's `.grad` setter: a gradient of another shape would
        // be broadcast silently by the optimizers, one of another dtype mixed in.
        auto& g = a.T(1);
        TORCH_CHECK(g.scalar_type() == t.scalar_type(), "assigned grad has data of a different type (", DtypeName(g.scalar_type()),
                    " for a ", DtypeName(t.scalar_type()), " tensor)");
        TORCH_CHECK(g.sizes().equals(t.sizes()), "assigned grad has data of a different size (", g.sizes(), " for a tensor of size ",
                    t.sizes(), ")");
        t.mutable_grad() = g;
      }),
  };
}

std::vector<OpDef> RuntimeOps() {
  return {
      Void("setGradEnabled", [](Args& a) { at::GradMode::set_enabled(a.B(0)); }),
      {"isGradEnabled", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, at::GradMode::is_enabled()); }},
      Void("enterInferenceMode", [](Args&) { InferenceStack().push_back(std::make_unique<c10::InferenceMode>(true)); }),
      Void("exitInferenceMode", [](Args&) {
        TORCH_CHECK(!InferenceStack().empty(), "exitInferenceMode without a matching enterInferenceMode");
        InferenceStack().pop_back();
      }),
      {"isInferenceMode", [](Args& a) -> Napi::Value { return Napi::Boolean::New(a.env, c10::InferenceMode::is_enabled()); }},
      // CPU autocast, thread-local as torch.autocast("cpu") sets it. Enter/exit mirror Python's
      // context manager: the weight-cast cache lives until the outermost region exits, and must
      // be cleared then, or the next step would reuse casts of weights the optimizer has changed.
      {"autocastState", [](Args& a) -> Napi::Value {
         auto out = Napi::Array::New(a.env, 2);
         out.Set(0u, Napi::Boolean::New(a.env, at::autocast::is_cpu_enabled()));
         out.Set(1u, Napi::String::New(a.env, DtypeName(at::autocast::get_autocast_cpu_dtype())));
         return out;
       }},
      Void("autocastEnter", [](Args& a) {
        auto dtype = a.Dtype(1, at::kBFloat16);
        // libtorch 1.13 has no float16 CPU convolutions or GEMMs: bfloat16 is the CPU's autocast type.
        TORCH_CHECK(dtype == at::kBFloat16, "autocast: the CPU dtype must be bfloat16, got ", DtypeName(dtype));
        at::autocast::set_cpu_enabled(a.B(0));
        at::autocast::set_autocast_cpu_dtype(dtype);
        at::autocast::increment_nesting();
      }),
      Void("autocastExit", [](Args& a) {
        if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
        at::autocast::set_cpu_enabled(a.B(0));
        at::autocast::set_autocast_cpu_dtype(a.Dtype(1, at::kBFloat16));
      }),
      // libtorch's (legacy) autograd profiler: every op between start and stop, written as a
      // Chrome trace (JSON events with name, ts and dur in microseconds) to the given file.
      Void("profilerStart", [](Args& a) {
        auto& active = ActiveProfile();
        TORCH_CHECK(active == nullptr, "profilerStart: a profile is already being recorded");
        auto file = a.Str(0);
        // RecordProfile writes at the end and ignores a stream that failed to open: check first.
        TORCH_CHECK(std::ofstream(file).good(), "profilerStart: cannot write ", file);
        active = std::make_unique<torch::autograd::profiler::RecordProfile>(file);
      }),
      Void("profilerStop", [](Args&) {
        auto& active = ActiveProfile();
        TORCH_CHECK(active != nullptr, "profilerStop: no profile is being recorded");
        active.reset();
      }),
      Void("manualSeed", [](Args& a) {
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_current_seed(static_cast<uint64_t>(a.I(0)));
      }),
      Op("getRngState", [](Args&) {
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        return gen.get_state();
      }),
      Void("setRngState", [](Args& a) {
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(a.T(0));
      }),
      Void("setNumThreads", [](Args& a) {
        auto n = a.I(0);
        TORCH_CHECK(n >= 1, "setNumThreads: need at least 1 thread, got ", n);
        at::set_num_threads(static_cast<int>(n));
      }),
      {"getNumThreads", [](Args& a) -> Napi::Value { return Napi::Number::New(a.env, at::get_num_threads()); }},
      // OpenBLAS (behind libtorch's matrix products and its single-threaded 1x1 convolutions)
      // keeps one thread pool for the whole process, apart from libtorch's OpenMP threads. Looked
      // up at run time: another BLAS has no such call, and then these report false / -1.
      {"setBlasThreads", [](Args& a) -> Napi::Value {
         using Fn = void (*)(int);
         static auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
         auto n = a.I(0);
         TORCH_CHECK(n >= 1, "setBlasThreads: need at least 1 thread, got ", n);
         if (fn == nullptr) return Napi::Boolean::New(a.env, false);
         fn(static_cast<int>(n));
         return Napi::Boolean::New(a.env, true);
       }},
      {"getBlasThreads", [](Args& a) -> Napi::Value {
         using Fn = int (*)();
         static auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
         return Napi::Number::New(a.env, fn == nullptr ? -1 : fn());
       }},
      {"liveTensors", [](Args& a) -> Napi::Value { return Napi::Number::New(a.env, static_cast<double>(LiveHandles())); }},
      // glibc keeps freed tensor memory in its heaps, and fragmentation lets resident memory
      // creep up over a long training run; malloc_trim hands every free page back to the OS.
      {"releaseFreeMemory", [](Args& a) -> Napi::Value {
#ifdef __GLIBC__
         return Napi::Boolean::New(a.env, malloc_trim(0) == 1);
#else
         return Napi::Boolean::New(a.env, false);
#endif
       }},
      {"version", [](Args& a) -> Napi::Value { return Napi::String::New(a.env, TORCH_VERSION); }},
      {"parallelInfo", [](Args& a) -> Napi::Value { return Napi::String::New(a.env, at::get_parallel_info()); }},
  };
}

}  // namespace ferkit
