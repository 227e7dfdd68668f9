// Optimizer update rules, one parameter per call. The state tensors (momentum
// buffers, Adam moments) are owned by the caller, so a checkpoint can read and
// restore them like any other tensor. The formulas follow PyTorch 1.13's
// torch/optim/sgd.py and adam.py / adamw.py (_single_tensor_* functions).
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <ATen/MemoryOverlap.h>

#include <atomic>
#include <cmath>
#include <initializer_list>

#include "common.h"

namespace ferkit {

namespace {

// The constants of one Adam update, in the float32 the element-wise kernels compute in.
struct AdamConstants {
  float l2;         // L2 weight decay added to the gradient (Adam), else 0
  float decay;      // decoupled decay factor 1 - lr * wd (AdamW), else 1
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float bias_correction2_sqrt, eps, neg_step_size;
};

// Adam on float32 tensors that share one dense layout, in a single pass over memory (the op
// sequence of PyTorch 1.13's _single_tensor_adam reads and writes the parameter's size about ten
// times). Each element goes through that sequence's operations in its order, in float32; where
// ATen's vectorised kernels fuse a multiply-add the last bit can differ (a few ulp after steps).
template <bool Amsgrad>
void FusedAdam(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, float* __restrict vmax,
               int64_t n, const AdamConstants& k) {
  at::parallel_for(0, n, 32768, [=, &k](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      float pi = p[i] * k.decay;
      float gi = g[i] + pi * k.l2;
      float mi = m[i] * k.beta1 + gi * k.one_minus_beta1;
      float vi = v[i] * k.beta2 + k.one_minus_beta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      float second = vi;
      if (Amsgrad) {
        second = (vi > vmax[i] || std::isnan(vi)) ? vi : vmax[i];  // at::maximum propagates NaN
        vmax[i] = second;
      }
      float denom = std::sqrt(second) / k.bias_correction2_sqrt + k.eps;
      p[i] = pi + k.neg_step_size * (mi / denom);
    }
  });
}

// Whether `t` is float32 and lays its elements out in memory as the dense tensor `like` does:
// same sizes, same strides wherever a dimension has more than one element.
bool SameDenseFloat(const at::Tensor& t, const at::Tensor& like) {
  if (t.scalar_type() != at::kFloat || !t.sizes().equals(like.sizes())) return false;
  for (int64_t d = 0; d < t.dim(); d++)
    if (t.size(d) > 1 && t.stride(d) != like.stride(d)) return false;
  return true;
}

// Whether any two of the tensors share memory (the kernel's pointers are declared unaliased).
bool AnyOverlap(std::initializer_list<const at::Tensor*> ts) {
  for (auto a = ts.begin(); a != ts.end(); ++a)
    for (auto b = a + 1; b != ts.end(); ++b)
      if (at::get_overlap_status(**a, **b) != at::MemOverlapStatus::No) return true;
  return false;
}

// Parameter updates that took the fused path, process-wide (tests check the path is taken).
std::atomic<int64_t> fused_adam_updates{0};

}  // namespace

std::vector<OpDef> OptimOps() {
  return {
      {"adamFusedUpdates", [](Args& a) -> Napi::Value { return Napi::Number::New(a.env, static_cast<double>(fused_adam_updates.load())); }},
      // sgdStep(param, momentum_buffer?, lr, momentum, dampening, weight_decay, nesterov, first_step)
      // Returns false when the parameter has no gradient (nothing done).
      Op("sgdStep",
         [](Args& a) {
           at::NoGradGuard no_grad;
           auto& p = a.T(0);
           auto g = p.grad();
           if (!g.defined()) return false;
           double lr = a.D(2), momentum = a.D(3), dampening = a.D(4), wd = a.D(5);
           bool nesterov = a.B(6), first = a.B(7);
           auto d_p = wd != 0 ? g.add(p, wd) : g;
           if (momentum != 0) {
             auto& buf = a.T(1);
             if (first) {
               buf.copy_(d_p);
             } else {
               buf.mul_(momentum).add_(d_p, 1 - dampening);
             }
             d_p = nesterov ? d_p.add(buf, momentum) : buf;
           }
           p.add_(d_p, -lr);
           return true;
         }),
      // adamStep(param, exp_avg, exp_avg_sq, max_exp_avg_sq?, step (1-based, after increment),
      //          lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled_weight_decay (AdamW))
      Op("adamStep",
         [](Args& a) {
           at::NoGradGuard no_grad;
           auto& p = a.T(0);
           auto g = p.grad();
           if (!g.defined()) return false;
           auto& exp_avg = a.T(1);
           auto& exp_avg_sq = a.T(2);
           double step = a.D(4), lr = a.D(5), beta1 = a.D(6), beta2 = a.D(7), eps = a.D(8), wd = a.D(9);
           bool amsgrad = a.B(10), decoupled = a.B(11);
           bool fused = p.scalar_type() == at::kFloat && p.is_non_overlapping_and_dense() && SameDenseFloat(g, p) &&
                        SameDenseFloat(exp_avg, p) && SameDenseFloat(exp_avg_sq, p) && (!amsgrad || SameDenseFloat(a.T(3), p)) &&
                        !AnyOverlap(amsgrad ? std::initializer_list<const at::Tensor*>{&p, &g, &exp_avg, &exp_avg_sq, &a.T(3)}
                                            : std::initializer_list<const at::Tensor*>{&p, &g, &exp_avg, &exp_avg_sq});
           if (fused) {
             double bias_correction1 = 1 - std::pow(beta1, step);
             AdamConstants k{static_cast<float>(wd != 0 && !decoupled ? wd : 0),
                             static_cast<float>(wd != 0 && decoupled ? 1 - lr * wd : 1),
                             static_cast<float>(beta1),
                             static_cast<float>(1 - beta1),
                             static_cast<float>(beta2),
                             static_cast<float>(1 - beta2),
                             static_cast<float>(std::sqrt(1 - std::pow(beta2, step))),
                             static_cast<float>(eps),
                             static_cast<float>(-(lr / bias_correction1))};
             auto n = p.numel();
             if (amsgrad) {
               FusedAdam<true>(p.data_ptr<float>(), g.data_ptr<float>(), exp_avg.data_ptr<float>(), exp_avg_sq.data_ptr<float>(),
                               a.T(3).data_ptr<float>(), n, k);
             } else {
               FusedAdam<false>(p.data_ptr<float>(), g.data_ptr<float>(), exp_avg.data_ptr<float>(), exp_avg_sq.data_ptr<float>(),
                                nullptr, n, k);
             }
             // Written through raw pointers: tell autograd these tensors changed, as an in-place op would.
             for (auto* t : {&p, &exp_avg, &exp_avg_sq}) t->unsafeGetTensorImpl()->bump_version();
             if (amsgrad) a.T(3).unsafeGetTensorImpl()->bump_version();
             fused_adam_updates++;
             return true;
           }
           if (wd != 0) {
             if (decoupled) {
               p.mul_(1 - lr * wd);
             } else {
               g = g.add(p, wd);
             }
           }
           exp_avg.mul_(beta1).add_(g, 1 - beta1);
           exp_avg_sq.mul_(beta2).addcmul_(g, g, 1 - beta2);
           double bias_correction1 = 1 - std::pow(beta1, step);
           double bias_correction2_sqrt = std::sqrt(1 - std::pow(beta2, step));
           double step_size = lr / bias_correction1;
           at::Tensor denom;
           if (amsgrad) {
             auto& max_sq = a.T(3);
             at::maximum_out(max_sq, max_sq, exp_avg_sq);
             denom = (max_sq.sqrt() / bias_correction2_sqrt).add_(eps);
           } else {
             denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps);
           }
           p.addcdiv_(exp_avg, denom, -step_size);
           return true;
         }),
  };
}

}  // namespace ferkit
