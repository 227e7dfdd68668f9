// Data-parallel collectives on PyTorch's c10d, as libtorch ships it: a TCPStore rendezvous and a
// ProcessGroupGloo, one per process (the default group of torch.distributed). Collectives block
// until done; a peer that dies or a collective that outlasts the group's timeout throws, and
// Guarded turns that into a JavaScript exception naming the operation.
// Debian builds libtorch with Gloo; its headers (libgloo-dev) declare the Gloo process group
// only under this flag.
#define USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/custom_function.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace ferkit {

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
};

std::unique_ptr<Group> g_group;

Group& Current(const char* op) {
  TORCH_CHECK(g_group != nullptr, op, ": no process group (call distInit first)");
  return *g_group;
}

// Waits for a collective (each is given the group's timeout, not the rendezvous one); a timeout or a failed peer comes back as a c10::Error.
void Wait(const c10::intrusive_ptr<c10d::Work>& work, const Group& g, const char* op) {
  try {
    work->wait(g.timeout);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, op, " failed on rank ", g.rank, " of ", g.size, ": ", e.what());
  }
}

c10d::ReduceOp ParseReduce(const std::string& name) {
  if (name == "sum") return c10d::ReduceOp::SUM;
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  if (name == "product") return c10d::ReduceOp::PRODUCT;
  TORCH_CHECK(false, "unknown reduce op '", name, "' (sum, max, min, product; average is sum / world size)");
}

// distInit(masterAddr, masterPort, rank, worldSize, timeoutMs, localAddr, rendezvousTimeoutMs):
// joins the group; rank 0 hosts the store. Gloo's connections bind to localAddr, this machine's
// address on the network that reaches the master. Throws when the rendezvous times out.
void Init(Args& a) {
  TORCH_CHECK(g_group == nullptr, "distInit: this process already joined a process group (distDestroy first)");
  const std::string addr = a.Str(0);
  const int64_t port = a.I(1), rank = a.I(2), size = a.I(3);
  const auto timeout = std::chrono::milliseconds(a.I(4));
  const std::string local = a.Str(5);
  const auto rendezvous = std::chrono::milliseconds(a.I(6));
  TORCH_CHECK(port > 0 && port < 65536, "distInit: port must be in 1..65535, got ", port);
  TORCH_CHECK(size >= 1 && rank >= 0 && rank < size, "distInit: rank ", rank, " is not in 0..", size - 1);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = rank == 0;
  opts.numWorkers = static_cast<size_t>(size);
  opts.waitWorkers = true;
  opts.timeout = rendezvous;
  auto group = std::make_unique<Group>();
  group->store = c10::make_intrusive<c10d::TCPStore>(addr, opts);
  // Gloo's own connections are made during construction, under the rendezvous timeout.
  group->store->setTimeout(rendezvous);
  auto options = c10d::ProcessGroupGloo::Options::create(rendezvous);
  options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(local));
  options->threads = 2;
  group->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, static_cast<int>(rank), static_cast<int>(size), options);
  group->store->setTimeout(timeout);
  group->rank = static_cast<int>(rank);
  group->size = static_cast<int>(size);
  group->timeout = timeout;
  g_group = std::move(group);
}

// Sums `t` (float32, contiguous) over the ranks, in place.
void AllReduceSum(at::Tensor& t, const char* op) {
  Group& g = Current(op);
  std::vector<at::Tensor> ts{t};
  c10d::AllreduceOptions opts;
  opts.timeout = g.timeout;
  Wait(g.pg->allreduce(ts, opts), g, op);
}

// Synchronised batch normalisation in training mode: the batch statistics are those of every
// rank's batch together, as PyTorch's SyncBatchNorm computes them (torch/nn/modules/_functions.py):
// forward all-reduces the per-channel count, sum and sum of squares; backward all-reduces
// sum(dy) and sum(dy * (x - mean)). Statistics in float32 whatever x's dtype (bf16 under autocast).
struct SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
  // x [N, C, ...]; weight, bias [C] or undefined; running stats [C] or undefined, updated in place.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, at::Tensor x, at::Tensor weight, at::Tensor bias,
                            at::Tensor running_mean, at::Tensor running_var, double momentum, double eps) {
    const int64_t C = x.size(1);
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
    const at::Tensor xf = x.to(at::kFloat);
    at::Tensor stats = at::cat({at::full({1}, static_cast<double>(x.numel() / C), xf.options()), xf.sum(dims),
                                xf.square().sum(dims)})
                           .contiguous();
    AllReduceSum(stats, "syncBatchNorm");
    const at::Tensor count = stats.narrow(0, 0, 1);
    const at::Tensor mean = stats.narrow(0, 1, C) / count;
    const at::Tensor var = (stats.narrow(0, 1 + C, C) / count - mean.square()).clamp_min(0);
    const at::Tensor invstd = (var + eps).rsqrt();
    const double n = count.item<double>();
    TORCH_CHECK(n > 1, "syncBatchNorm: expected more than 1 value per channel over all ranks when training");
    if (running_mean.defined()) {
      at::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean, momentum);
      running_var.mul_(1 - momentum).add_(var * (n / (n - 1)), momentum);
    }
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = C;
    const at::Tensor xhat = (xf - mean.view(shape)) * invstd.view(shape);
    at::Tensor y = xhat;
    if (weight.defined()) y = y * weight.to(at::kFloat).view(shape);
    if (bias.defined()) y = y + bias.to(at::kFloat).view(shape);
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["n"] = n;
    ctx->saved_data["has_bias"] = bias.defined();
    ctx->saved_data["dtype"] = static_cast<int64_t>(x.scalar_type());
    return y.to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &xhat = saved[0], &invstd = saved[1], &weight = saved[2];
    const double n = ctx->saved_data["n"].toDouble();
    const int64_t C = xhat.size(1);
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < xhat.dim(); d++) dims.push_back(d);
    std::vector<int64_t> shape(xhat.dim(), 1);
    shape[1] = C;
    const at::Tensor dy = grads[0].to(at::kFloat);
    const at::Tensor local_dy = dy.sum(dims);
    const at::Tensor local_dy_xhat = (dy * xhat).sum(dims);
    at::Tensor sums = at::cat({local_dy, local_dy_xhat}).contiguous();
    AllReduceSum(sums, "syncBatchNorm backward");
    const at::Tensor mean_dy = (sums.narrow(0, 0, C) / n).view(shape);
    const at::Tensor mean_dy_xhat = (sums.narrow(0, C, C) / n).view(shape);
    at::Tensor scale = invstd.view(shape);
    if (weight.defined()) scale = scale * weight.to(at::kFloat).view(shape);
    const at::Tensor dx = ((dy - mean_dy - xhat * mean_dy_xhat) * scale).to(static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt()));
    // The parameters' gradients are this rank's own; data-parallel training averages them afterwards.
    at::Tensor dweight = weight.defined() ? local_dy_xhat.to(weight.scalar_type()) : at::Tensor();
    at::Tensor dbias = ctx->saved_data["has_bias"].toBool() ? local_dy : at::Tensor();
    return {dx, dweight, dbias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<OpDef> DistOps() {
  return {
      Void("distInit", Init),
      Void("distDestroy", [](Args&) { g_group.reset(); }),
      Op("distRank", [](Args&) { return static_cast<double>(g_group ? g_group->rank : -1); }),
      Op("distWorldSize", [](Args&) { return static_cast<double>(g_group ? g_group->size : 0); }),
      // distAllReduce(tensor, op): in place, on contiguous CPU tensors.
      Void("distAllReduce",
           [](Args& a) {
             Group& g = Current("allReduce");
             std::vector<at::Tensor> ts{a.T(0)};
             TORCH_CHECK(ts[0].is_contiguous(), "allReduce: the tensor must be contiguous");
             c10d::AllreduceOptions opts;
             opts.reduceOp = ParseReduce(a.Str(1));
             opts.timeout = g.timeout;
             Wait(g.pg->allreduce(ts, opts), g, "allReduce");
           }),
      // distBroadcast(tensor, root): in place.
      Void("distBroadcast",
           [](Args& a) {
             Group& g = Current("broadcast");
             std::vector<at::Tensor> ts{a.T(0)};
             TORCH_CHECK(ts[0].is_contiguous(), "broadcast: the tensor must be contiguous");
             c10d::BroadcastOptions opts;
             opts.rootRank = a.I(1);
             opts.timeout = g.timeout;
             TORCH_CHECK(opts.rootRank >= 0 && opts.rootRank < g.size, "broadcast: root ", opts.rootRank, " is not a rank");
             Wait(g.pg->broadcast(ts, opts), g, "broadcast");
           }),
      // distAllGather(tensor): every rank's tensor, stacked along a new first dimension.
      Op("distAllGather",
         [](Args& a) {
           Group& g = Current("allGather");
           std::vector<at::Tensor> input{a.T(0).contiguous()};
           std::vector<std::vector<at::Tensor>> output(1);
           for (int r = 0; r < g.size; r++) output[0].push_back(at::empty_like(input[0]));
           c10d::AllgatherOptions opts;
           opts.timeout = g.timeout;
           Wait(g.pg->allgather(output, input, opts), g, "allGather");
           return at::stack(output[0]);
         }),
      // syncBatchNorm(x, weight?, bias?, running_mean?, running_var?, momentum, eps): training mode.
      Op("syncBatchNorm",
         [](Args& a) {
           Current("syncBatchNorm");
           auto opt = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? *t : at::Tensor(); };
           return SyncBatchNorm::apply(a.T(0), opt(a.OptT(1)), opt(a.OptT(2)), opt(a.OptT(3)), opt(a.OptT(4)), a.D(5), a.D(6));
         }),
      Void("distBarrier",
           [](Args&) {
             Group& g = Current("barrier");
             c10d::BarrierOptions opts;
             opts.timeout = g.timeout;
             Wait(g.pg->barrier(opts), g, "barrier");
           }),
  };
}

}  // namespace ferkit
