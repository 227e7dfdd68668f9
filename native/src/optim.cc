// Optimizer update rules, one parameter per call. The state tensors (momentum
// buffers, Adam moments) are owned by the caller, so a checkpoint can read and
// restore them like any other tensor. The formulas follow PyTorch 1.13's
// torch/optim/sgd.py and adam.py / adamw.py (_single_tensor_* functions).
#include <ATen/core/grad_mode.h>

#include <cmath>

#include "common.h"

namespace ferkit {

std::vector<OpDef> OptimOps() {
  return {
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
