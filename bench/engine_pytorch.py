#!/usr/bin/python3
"""PyTorch twin of bench/engine.ts: the same models, the same training step, timed.

Run with Debian's interpreter (/usr/bin/python3, package python3-torch), which links the
same libtorch 1.13 as ferkit's binding. The models mirror src/models/vgg_fer.ts and
src/models/resnet.ts layer for layer, with the same state_dict names and shapes
(bench/engine.ts compares them before timing). ReLU is in place, as in torchvision
(nn.ReLU(inplace=True)), as ferkit's VGG-FER and ResNet do; --no-inplace gives an out-of-place
ReLU, to see what that difference costs.

  /usr/bin/python3 bench/engine_pytorch.py vgg-fer --batch 64 --steps 20 --warmup 3 --threads 2
  /usr/bin/python3 bench/engine_pytorch.py resnet18 --describe
  echo '{"steps": 5, "warmup": 1}' | /usr/bin/python3 bench/engine_pytorch.py resnet18 --batch 32 --serve

The last line printed is one JSON object (in --serve mode: one per request).
"""

import argparse
import json
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

def machine_busy_seconds():
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0


INPUT_SIZES = {"vgg-fer": (1, 48, 48), "resnet18": (3, 112, 112)}


class VggFer(nn.Module):
    """VGG for 48x48 grayscale faces (Khaireddin & Chen 2021), as src/models/vgg_fer.ts."""

    def __init__(self, num_classes=7, in_channels=1, dropout=0.5, inplace=True, width=1.0):
        super().__init__()
        layers = []
        c = in_channels
        scaled = lambda n: max(1, round(n * width))
        for out in (scaled(64), scaled(128), scaled(256), scaled(512)):
            for _ in range(2):
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=inplace)]
                c = out
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(c * 3 * 3, scaled(1024)),
            nn.ReLU(inplace=inplace),
            nn.Dropout(dropout),
            nn.Linear(scaled(1024), scaled(1024)),
            nn.ReLU(inplace=inplace),
            nn.Dropout(dropout),
            nn.Linear(scaled(1024), num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (torchvision/models/resnet.py)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, inplace=True):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with basic blocks; stem 'imagenet' (7x7/2 + maxpool) or 'small' (3x3/1)."""

    def __init__(self, layers, num_classes=7, in_channels=3, stem="imagenet", inplace=True):
        super().__init__()
        self.inplanes = 64
        self.inplace = inplace
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=inplace)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        self.layer1 = self._make_layer(64, layers[0], 1)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample, self.inplace)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes, inplace=self.inplace))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def create(name, inplace=True, width=1.0):
    if name == "vgg-fer":
        return VggFer(inplace=inplace, width=width)
    if name == "resnet18":
        return ResNet([2, 2, 2, 2], stem="imagenet", inplace=inplace)
    raise SystemExit(f"unknown model {name!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", choices=sorted(INPUT_SIZES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=float, default=1.0, help="VGG-FER channel multiplier (as ferkit's model.width)")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                    help='bf16: forward and loss under torch.autocast("cpu", dtype=torch.bfloat16), as PyTorch\'s AMP recipe')
    ap.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous",
                    help="model and input memory format (contiguous is PyTorch's default)")
    ap.add_argument("--no-inplace", action="store_true", help="out-of-place ReLU (ferkit's models, like torchvision's, use in-place ReLU)")
    ap.add_argument("--describe", action="store_true", help="print parameter count and state_dict shapes, no timing")
    ap.add_argument("--serve", action="store_true", help='keep the model; time {"steps","warmup"} requests read from stdin')
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.width != 1.0 and args.model != "vgg-fer":
        raise SystemExit("--width applies to vgg-fer only")
    model = create(args.model, inplace=not args.no_inplace, width=args.width)
    n_params = sum(p.numel() for p in model.parameters())
    if args.describe:
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        print(json.dumps({"model": args.model, "params": n_params, "state_dict": shapes, "torch": torch.__version__}))
        return

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(args.batch, *INPUT_SIZES[args.model])
    y = torch.randint(0, 7, (args.batch,))
    if args.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = model(x)
            loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def measure(steps, warmup):
        for _ in range(warmup):
            step()
        busy0, cpu0, t0 = machine_busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(steps):
            step()
        seconds = time.perf_counter() - t0
        own = time.process_time() - cpu0
        return {
            "model": args.model,
            "batch": args.batch,
            "threads": torch.get_num_threads(),
            "steps": steps,
            "seconds": seconds,
            "img_s": args.batch * steps / seconds,
            "precision": args.precision,
            "memory_format": args.memory_format,
            "other_load": max(0.0, machine_busy_seconds() - busy0 - own) / seconds,
            "params": n_params,
            "torch": torch.__version__,
        }

    if not args.serve:
        print(json.dumps(measure(args.steps, args.warmup)), flush=True)
        return
    # Serve mode: one JSON request per stdin line, {"steps": n, "warmup": w}; one JSON reply line each.
    print(json.dumps({"ready": True, "params": n_params}), flush=True)
    while True:
        line = sys.stdin.readline()
        if not line:
            break
        if line.strip():
            req = json.loads(line)
            print(json.dumps(measure(int(req["steps"]), int(req.get("warmup", 0)))), flush=True)

if __name__ == "__main__":
    main()
