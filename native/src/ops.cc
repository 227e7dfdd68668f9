// The op tables: elementwise math, reductions and the neural-network functions.
// One line per op; argument decoding and error conversion live in common.cc.
#include "common.h"

namespace ferkit {

namespace {

// A binary op whose second operand may be a Tensor or a number.
#define BINARY(js, fn) Op(js, [](Args& a) { return a.IsNumber(1) ? at::fn(a.T(0), a.S(1)) : at::fn(a.T(0), a.T(1)); })
#define UNARY(js, fn) Op(js, [](Args& a) { return at::fn(a.T(0)); })

int64_t ParseReduction(Args& a, size_t i) {
  if (a.Missing(i)) return at::Reduction::Mean;
  auto r = a.Str(i);
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  if (r == "none") return at::Reduction::None;
  a.TypeError(i, "one of 'mean', 'sum', 'none'");
}

at::OptionalIntArrayRef OptDims(Args& a, size_t i, std::vector<int64_t>& storage) {
  if (a.Missing(i)) return c10::nullopt;
  storage = a.Ints(i);
  return at::OptionalIntArrayRef(storage);
}

}  // namespace

std::vector<OpDef> MathOps() {
  return {
      Op("add", [](Args& a) { return a.IsNumber(1) ? at::add(a.T(0), a.S(1)) : at::add(a.T(0), a.T(1), a.Missing(2) ? at::Scalar(1) : a.S(2)); }),
      Op("sub", [](Args& a) { return a.IsNumber(1) ? at::sub(a.T(0), a.S(1)) : at::sub(a.T(0), a.T(1), a.Missing(2) ? at::Scalar(1) : a.S(2)); }),
      Op("rsub", [](Args& a) { return at::rsub(a.T(0), a.S(1)); }),
      BINARY("mul", mul),
      BINARY("div", div),
      BINARY("pow", pow),
      BINARY("remainder", remainder),
      BINARY("eq", eq),
      BINARY("ne", ne),
      BINARY("lt", lt),
      BINARY("le", le),
      BINARY("gt", gt),
      BINARY("ge", ge),
      Op("maximum", [](Args& a) { return at::maximum(a.T(0), a.T(1)); }),
      Op("minimum", [](Args& a) { return at::minimum(a.T(0), a.T(1)); }),
      Op("logicalAnd", [](Args& a) { return at::logical_and(a.T(0), a.T(1)); }),
      Op("logicalOr", [](Args& a) { return at::logical_or(a.T(0), a.T(1)); }),
      Op("logicalXor", [](Args& a) { return at::logical_xor(a.T(0), a.T(1)); }),
      UNARY("logicalNot", logical_not),
      UNARY("neg", neg),
      UNARY("abs", abs),
      UNARY("exp", exp),
      UNARY("log", log),
      UNARY("log1p", log1p),
      UNARY("sqrt", sqrt),
      UNARY("rsqrt", rsqrt),
      UNARY("square", square),
      UNARY("reciprocal", reciprocal),
      UNARY("sin", sin),
      UNARY("cos", cos),
      UNARY("floor", floor),
      UNARY("ceil", ceil),
      UNARY("round", round),
      UNARY("trunc", trunc),
      UNARY("sign", sign),
      UNARY("isnan", isnan),
      UNARY("isfinite", isfinite),
      Op("clamp",
         [](Args& a) {
           return at::clamp(a.T(0), a.Missing(1) ? c10::optional<at::Scalar>() : a.S(1), a.Missing(2) ? c10::optional<at::Scalar>() : a.S(2));
         }),
      Op("where",
         [](Args& a) {
           // where(cond, x, y) with x and y Tensors or numbers.
           auto& c = a.T(0);
           if (a.IsNumber(1) && a.IsNumber(2)) return at::where(c, a.S(1), a.S(2));
           if (a.IsNumber(1)) return at::where(c, a.S(1), a.T(2));
           if (a.IsNumber(2)) return at::where(c, a.T(1), a.S(2));
           return at::where(c, a.T(1), a.T(2));
         }),
      Op("addcmul", [](Args& a) { return at::addcmul(a.T(0), a.T(1), a.T(2), a.Missing(3) ? at::Scalar(1) : a.S(3)); }),
      Op("lerp", [](Args& a) { return at::lerp(a.T(0), a.T(1), a.S(2)); }),
      // --- reductions ---
      Op("sum",
         [](Args& a) {
           std::vector<int64_t> dims;
           if (a.Missing(1)) return at::sum(a.T(0));
           return at::sum(a.T(0), OptDims(a, 1, dims), a.B(2, false));
         }),
      Op("mean",
         [](Args& a) {
           std::vector<int64_t> dims;
           if (a.Missing(1)) return at::mean(a.T(0));
           return at::mean(a.T(0), OptDims(a, 1, dims), a.B(2, false));
         }),
      Op("prod", [](Args& a) { return a.Missing(1) ? at::prod(a.T(0)) : at::prod(a.T(0), a.I(1), a.B(2, false)); }),
      Op("var",
         [](Args& a) {
           std::vector<int64_t> dims;
           return at::var(a.T(0), OptDims(a, 1, dims), a.B(2, true) ? 1 : 0, a.B(3, false));
         }),
      Op("std",
         [](Args& a) {
           std::vector<int64_t> dims;
           return at::std(a.T(0), OptDims(a, 1, dims), a.B(2, true) ? 1 : 0, a.B(3, false));
         }),
      Op("logsumexp", [](Args& a) { return at::logsumexp(a.T(0), a.Ints(1), a.B(2, false)); }),
      Op("cumsum", [](Args& a) { return at::cumsum(a.T(0), a.I(1)); }),
      Op("norm", [](Args& a) {
        std::vector<int64_t> dims;
        if (a.Missing(2)) return at::norm(a.T(0), a.S(1));
        dims = a.Ints(2);
        return at::norm(a.T(0), a.S(1), dims, a.B(3, false));
      }),
      UNARY("maxAll", max),
      UNARY("minAll", min),
      Op("max", [](Args& a) { return at::max(a.T(0), a.I(1), a.B(2, false)); }),
      Op("min", [](Args& a) { return at::min(a.T(0), a.I(1), a.B(2, false)); }),
      Op("argmax", [](Args& a) { return at::argmax(a.T(0), a.OptI(1), a.B(2, false)); }),
      Op("argmin", [](Args& a) { return at::argmin(a.T(0), a.OptI(1), a.B(2, false)); }),
      Op("topk", [](Args& a) { return at::topk(a.T(0), a.I(1), a.Missing(2) ? -1 : a.I(2), a.B(3, true), a.B(4, true)); }),
      Op("sort", [](Args& a) { return at::sort(a.T(0), a.Missing(1) ? -1 : a.I(1), a.B(2, false)); }),
      UNARY("all", all),
      UNARY("any", any),
      Op("bincount", [](Args& a) { return at::bincount(a.T(0), a.OptT(1), a.Missing(2) ? 0 : a.I(2)); }),
      // --- linear algebra ---
      Op("matmul", [](Args& a) { return at::matmul(a.T(0), a.T(1)); }),
      Op("mm", [](Args& a) { return at::mm(a.T(0), a.T(1)); }),
      Op("bmm", [](Args& a) { return at::bmm(a.T(0), a.T(1)); }),
  };
}

std::vector<OpDef> NNOps() {
  return {
      Op("conv2d",
         [](Args& a) {
           // conv2d(x [N,C,H,W], weight [O,C/groups,kH,kW], bias? [O], stride, padding, dilation, groups)
           return at::conv2d(a.T(0), a.T(1), a.OptT(2), a.Ints(3), a.Ints(4), a.Ints(5), a.I(6));
         }),
      Op("convTranspose2d",
         [](Args& a) {
           return at::conv_transpose2d(a.T(0), a.T(1), a.OptT(2), a.Ints(3), a.Ints(4), a.Ints(5), a.I(6), a.Ints(7));
         }),
      Op("batchNorm",
         [](Args& a) {
           // batchNorm(x, weight?, bias?, running_mean?, running_var?, training, momentum, eps):
           // in training mode libtorch updates the running statistics in place.
           return at::batch_norm(a.T(0), a.OptT(1), a.OptT(2), a.OptT(3), a.OptT(4), a.B(5), a.D(6), a.D(7), false);
         }),
      Op("layerNorm", [](Args& a) { return at::layer_norm(a.T(0), a.Ints(1), a.OptT(2), a.OptT(3), a.D(4), false); }),
      Op("groupNorm", [](Args& a) { return at::group_norm(a.T(0), a.I(1), a.OptT(2), a.OptT(3), a.D(4), false); }),
      Op("linear", [](Args& a) { return at::linear(a.T(0), a.T(1), a.OptT(2)); }),
      Op("dropout", [](Args& a) { return at::dropout(a.T(0), a.D(1), a.B(2)); }),
      Op("dropout2d", [](Args& a) { return at::feature_dropout(a.T(0), a.D(1), a.B(2)); }),
      UNARY("relu", relu),
      Void("relu_", [](Args& a) { a.T(0).relu_(); }),
      // PyTorch's relu6 is hardtanh, whose backward libtorch 1.13 lacks for bfloat16 on CPU
      // ("hardshrink_backward_cpu" not implemented): bfloat16 takes relu then clamp_max, which
      // differ from it only in the gradient at exactly 6.
      Op("relu6",
         [](Args& a) {
           const at::Tensor& x = a.T(0);
           return x.scalar_type() == at::kBFloat16 ? at::relu(x).clamp_max(6) : at::hardtanh(x, 0, 6);
         }),
      Op("leakyRelu", [](Args& a) { return at::leaky_relu(a.T(0), a.Missing(1) ? at::Scalar(0.01) : a.S(1)); }),
      Op("prelu", [](Args& a) { return at::prelu(a.T(0), a.T(1)); }),
      Op("elu", [](Args& a) { return at::elu(a.T(0), a.Missing(1) ? at::Scalar(1.0) : a.S(1)); }),
      UNARY("silu", silu),
      Op("gelu", [](Args& a) { return at::gelu(a.T(0), a.Missing(1) ? "none" : a.Str(1)); }),
      UNARY("sigmoid", sigmoid),
      UNARY("tanh", tanh),
      UNARY("hardswish", hardswish),
      UNARY("hardsigmoid", hardsigmoid),
      Op("softmax", [](Args& a) { return at::softmax(a.T(0), a.I(1)); }),
      Op("logSoftmax", [](Args& a) { return at::log_softmax(a.T(0), a.I(1)); }),
      Op("maxPool2d",
         [](Args& a) { return at::max_pool2d(a.T(0), a.Ints(1), a.Ints(2), a.Ints(3), a.Ints(4), a.B(5, false)); }),
      Op("avgPool2d",
         [](Args& a) { return at::avg_pool2d(a.T(0), a.Ints(1), a.Ints(2), a.Ints(3), a.B(4, false), a.B(5, true)); }),
      Op("adaptiveAvgPool2d", [](Args& a) { return at::adaptive_avg_pool2d(a.T(0), a.Ints(1)); }),
      Op("adaptiveMaxPool2d", [](Args& a) { return std::get<0>(at::adaptive_max_pool2d(a.T(0), a.Ints(1))); }),
      Op("crossEntropy",
         [](Args& a) {
           // crossEntropy(logits [N,C], target [N] int64 or [N,C] probabilities, weight? [C],
           //              reduction, ignore_index, label_smoothing)
           return at::cross_entropy_loss(a.T(0), a.T(1), a.OptT(2), ParseReduction(a, 3), a.Missing(4) ? -100 : a.I(4),
                                         a.Missing(5) ? 0.0 : a.D(5));
         }),
      Op("nllLoss",
         [](Args& a) { return at::nll_loss_nd(a.T(0), a.T(1), a.OptT(2), ParseReduction(a, 3), a.Missing(4) ? -100 : a.I(4)); }),
      Op("mseLoss", [](Args& a) { return at::mse_loss(a.T(0), a.T(1), ParseReduction(a, 2)); }),
      Op("bceWithLogits",
         [](Args& a) { return at::binary_cross_entropy_with_logits(a.T(0), a.T(1), a.OptT(2), a.OptT(3), ParseReduction(a, 4)); }),
      Op("klDiv", [](Args& a) { return at::kl_div(a.T(0), a.T(1), ParseReduction(a, 2), a.B(3, false)); }),
      Op("cosineSimilarity", [](Args& a) { return at::cosine_similarity(a.T(0), a.T(1), a.I(2), a.D(3)); }),
      Op("interpolate",
         [](Args& a) {
           // interpolate(x [N,C,H,W], size [outH,outW], mode 'nearest'|'bilinear'|'bicubic', align_corners)
           auto size = a.Ints(1);
           auto mode = a.Str(2);
           if (mode == "nearest") return at::upsample_nearest2d(a.T(0), size);
           if (mode == "bilinear") return at::upsample_bilinear2d(a.T(0), size, a.B(3, false));
           if (mode == "bicubic") return at::upsample_bicubic2d(a.T(0), size, a.B(3, false));
           a.TypeError(2, "one of 'nearest', 'bilinear', 'bicubic'");
         }),
      Op("affineGrid", [](Args& a) { return at::affine_grid_generator(a.T(0), a.Ints(1), a.B(2, false)); }),
      Op("gridSample",
         [](Args& a) {
           // gridSample(x [N,C,H,W], grid [N,H',W',2] in [-1,1], mode, padding_mode, align_corners)
           auto mode = a.Missing(2) ? std::string("bilinear") : a.Str(2);
           auto pad = a.Missing(3) ? std::string("zeros") : a.Str(3);
           int64_t m = mode == "bilinear" ? 0 : mode == "nearest" ? 1 : mode == "bicubic" ? 2 : -1;
           int64_t p = pad == "zeros" ? 0 : pad == "border" ? 1 : pad == "reflection" ? 2 : -1;
           if (m < 0) a.TypeError(2, "one of 'bilinear', 'nearest', 'bicubic'");
           if (p < 0) a.TypeError(3, "one of 'zeros', 'border', 'reflection'");
           return at::grid_sampler(a.T(0), a.T(1), m, p, a.B(4, false));
         }),
  };
}

}  // namespace ferkit
