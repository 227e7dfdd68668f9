/** Weight initialisation and the global pooling shared by the zoo's models. */
import { F, nn, type Tensor } from "../torch/index.js";

/**
 * torchvision's initialisation of VGG and MobileNetV2: convolutions Kaiming-normal
 * (fan_out, gain sqrt(2)) with zero bias, BatchNorm weight 1 and bias 0, linear layers
 * N(0, 0.01) with zero bias. Applies to every submodule of `model`, in place.
 */
export function torchvisionInit(model: nn.Module): void {
  const { init } = nn;
  for (const [, m] of model.namedModules()) {
    if (m instanceof nn.Conv2d) {
      init.kaimingNormal_(m.weight, 0, "fan_out", "relu");
      if (m.bias !== null) init.constant_(m.bias, 0);
    } else if (m instanceof nn.BatchNorm2d) {
      if (m.weight !== null) init.constant_(m.weight, 1);
      if (m.bias !== null) init.constant_(m.bias, 0);
    } else if (m instanceof nn.Linear) {
      init.normal_(m.weight, 0, 0.01);
      if (m.bias !== null) init.constant_(m.bias, 0);
    }
  }
}

/**
 * Global average pooling of a feature map, flattened: `[N, C, H, W]` → `[N, C]`. Takes ownership
 * of `map` (disposes it), as the models' forward passes hand it over.
 */
export function globalAvgPool(map: Tensor): Tensor {
  const pooled = F.adaptiveAvgPool2d(map, 1);
  map.dispose();
  const flat = pooled.flatten(1);
  pooled.dispose();
  return flat;
}
