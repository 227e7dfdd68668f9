// The model zoo: parameter counts and state_dict names as torchvision's models, the
// input sizes of the registry, and a forward/backward pass of each model.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import "./helpers.js";
import * as torch from "../src/torch/index.js";
import { createModel, defaultInputSize, hasFeatures, listModels, makeDivisible, MobileNetV2 } from "../src/models/index.js";

describe("model zoo", () => {
  test("MobileNetV2 at width 1 matches torchvision's mobilenet_v2 (3,504,872 parameters, its state_dict names)", () => {
    const m = new MobileNetV2({ numClasses: 1000 });
    assert.equal(m.numParameters(), 3504872);
    const sd = m.stateDict();
    const shape = (k: string) => sd.get(k)?.shape.join("x");
    assert.equal(shape("features.0.0.weight"), "32x3x3x3");
    assert.equal(shape("features.1.conv.0.0.weight"), "32x1x3x3", "depthwise conv of the t=1 block");
    assert.equal(shape("features.1.conv.1.weight"), "16x32x1x1");
    assert.equal(shape("features.2.conv.0.0.weight"), "96x16x1x1", "expansion conv");
    assert.equal(shape("features.2.conv.3.running_var"), "24");
    assert.equal(shape("features.18.0.weight"), "1280x320x1x1");
    assert.equal(shape("classifier.1.weight"), "1000x1280");
    m.dispose();
  });

  test("width multipliers round channels as torchvision does", () => {
    assert.deepEqual(
      [makeDivisible(32 * 0.5), makeDivisible(16 * 0.35), makeDivisible(24 * 0.75), makeDivisible(1280 * 0.5)],
      [16, 8, 24, 640],
    );
  });

  test("every registered model runs forward and backward at its default input size", () => {
    for (const name of listModels()) {
      for (const stem of ["small", "imagenet"] as const) {
        if (name === "vgg-fer" && stem === "imagenet") continue;
        torch.tidy(() => {
          const opts = { width: name === "resnet18" ? undefined : 0.5, stem };
          const model = createModel(name, opts);
          const [c, h, w] = defaultInputSize(name, opts);
          const x = torch.rand([2, c, h, w]);
          const logits = model.forward(x);
          assert.deepEqual(logits.shape, [2, 7], `${name} (${stem})`);
          torch.F.crossEntropy(logits, torch.tensor([0, 3], { dtype: "int64" })).backward();
          assert.ok(
            model.parameters().every((p) => p.grad !== null),
            `${name}: every parameter has a gradient`,
          );
          assert.ok(hasFeatures(model));
          const { features } = model.forwardWithFeatures(x);
          assert.equal(features.shape[0], 2);
          model.dispose();
        });
      }
    }
  });
});
