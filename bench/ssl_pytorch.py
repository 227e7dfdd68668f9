#!/usr/bin/python3
"""PyTorch twin of bench/ssl.ts: one DTM training step written the way a PyTorch user writes it.

The step follows the method's reference code (GUIDE section 4): the pseudo-label is the mean
softmax of the two weak views, computed without gradient; one threshold per class; the
labeled batch and the strong views go through the model; loss = CE + 0.5 * masked CE averaged
over the whole unlabeled batch; Adam; an EMA teacher (decay 0.999) updated after the step.
Inputs are random tensors made once (augmentation is not timed here; ferkit's side times its
own). By default each view has its own forward call, as in the reference code; --cat
concatenates them (USB's use_cat), which is what ferkit does.

  /usr/bin/python3 bench/ssl_pytorch.py --steps 10 --warmup 2 --threads 2
  echo '{"steps": 5, "warmup": 1}' | /usr/bin/python3 bench/ssl_pytorch.py --serve

The last line printed is one JSON object (in --serve mode: one per request).
"""

import argparse
import copy
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_pytorch import VggFer, machine_busy_seconds  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labeled", type=int, default=30)
    ap.add_argument("--unlabeled", type=int, default=30)
    ap.add_argument("--width", type=float, default=1.0, help="must be 1: the twin model has the full VGG-FER widths")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cat", action="store_true", help="one forward per phase on concatenated views")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help='bf16: the step\'s forward passes and losses under torch.autocast("cpu", dtype=torch.bfloat16)')
    ap.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous")
    ap.add_argument("--serve", action="store_true", help='keep the model; time {"steps","warmup"} requests read from stdin')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = VggFer()
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    tau = torch.full((7,), 0.8)
    B, U = args.labeled, args.unlabeled
    x = torch.rand(B, 1, 48, 48)
    y = torch.randint(0, 7, (B,))
    u_w1, u_w2, u_s = torch.rand(U, 1, 48, 48), torch.rand(U, 1, 48, 48), torch.rand(U, 1, 48, 48)
    if args.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        ema = ema.to(memory_format=torch.channels_last)
        x, u_w1, u_w2, u_s = (t.contiguous(memory_format=torch.channels_last) for t in (x, u_w1, u_w2, u_s))
    bf16 = args.precision == "bf16"

    def step():
        # Two autocast regions: PyTorch 1.13 caches the bfloat16 casts of the weights for a whole
        # region, and casts made under no_grad carry no graph, so a grad-enabled forward after a
        # no_grad one in the same region gives the convolution and linear weights no gradient
        # (silently: only BatchNorm's parameters would train, and the step would look 1.4x faster).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pseudo_label, mask = guess()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward_and_loss(pseudo_label, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, s in zip(ema.parameters(), model.parameters()):
                e.mul_(0.999).add_(s, alpha=0.001)
            for e, s in zip(ema.buffers(), model.buffers()):
                e.copy_(s)

    def guess():
        with torch.no_grad():
            if args.cat:
                # .float(): the pseudo-label softmax in float32, as ferkit computes it (under CPU
                # autocast, 1.13's softmax would otherwise run in the logits' bfloat16).
                p = model(torch.cat([u_w1, u_w2])).float().softmax(1).view(2, U, -1).mean(0)
            else:
                p = (model(u_w1).float().softmax(1) + model(u_w2).float().softmax(1)) / 2
            conf, pseudo_label = p.max(1)
            mask = (conf >= tau[pseudo_label]).float()
        return pseudo_label, mask

    def forward_and_loss(pseudo_label, mask):
        if args.cat:
            logits_x, logits_s = model(torch.cat([x, u_s])).split([B, U])
        else:
            logits_x, logits_s = model(x), model(u_s)
        return F.cross_entropy(logits_x, y) + 0.5 * (F.cross_entropy(logits_s, pseudo_label, reduction="none") * mask).mean()

    def measure(steps, warmup):
        for _ in range(warmup):
            step()
        busy0, cpu0, t0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - t0
        own = time.process_time() - cpu0
        return {
            "steps": steps,
            "seconds": seconds,
            "steps_s": steps / seconds,
            "other_load": max(0.0, machine_busy_seconds() - busy0 - own) / seconds,
            "threads": torch.get_num_threads(),
            "cat": args.cat,
            "precision": args.precision,
            "torch": torch.__version__,
        }

    # The step must train every weight (see step's comment): check once before timing.
    step()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise SystemExit(f"the DTM step left {len(missing)} parameters without a gradient, e.g. {missing[:3]}")
    if not args.serve:
        print(json.dumps(measure(args.steps, args.warmup)), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip():
            req = json.loads(line)
            print(json.dumps(measure(int(req["steps"]), int(req.get("warmup", 0)))), flush=True)


if __name__ == "__main__":
    main()
