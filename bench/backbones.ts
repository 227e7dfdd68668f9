/**
 * The face-recognition backbones ferkit imports (`faceres`, `mobilefacenet`): how well their
 * imported weights recognise faces, and how fast they train for expressions at each input size.
 *
 *   identification: 100 ORL faces (the first 20 subjects, photos 1-5, gray given as RGB) at the
 *     backbone's own input size (224 and 112), float32: the share of faces whose nearest other
 *     face (cosine of the face-recognition descriptor / embedding) is the same person, and the
 *     mean cosine between faces of the same and of different people;
 *   training speed: one step = forward + cross-entropy + backward + SGD step on random images,
 *     batch 64, 2 threads, the expression model (pooled features and a 7-class head) at each
 *     --sizes side, in bfloat16 autocast (where the CPU has it) and float32; the median of
 *     --rounds measurements of --steps steps after --warmup untimed steps.
 *
 *   npm run bench:backbones
 *   node dist/bench/backbones.js --sizes 64,96,112 --rounds 3 --steps 4
 *
 * The last line printed is one JSON object: `{"identification":[{"model","size","nn_accuracy",
 * "cos_same","cos_different"}],"speed":[{"model","size","precision","img_s"}]}`.
 */
import { parseArgs } from "node:util";
import { identification, orlFaces } from "../src/eval/identification.js";
import { atPrecision, createModel, FaceRes, MobileFaceNet } from "../src/models/index.js";
import * as torch from "../src/torch/index.js";
import { median } from "./common.js";

const { values: args } = parseArgs({
  options: {
    sizes: { type: "string", default: "64,96,112" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "4" },
    warmup: { type: "string", default: "2" },
    threads: { type: "string", default: "2" },
    models: { type: "string", default: "faceres,mobilefacenet" },
  },
});
const models = args.models.split(",");
torch.setNumThreads(Number(args.threads));

/** img/s of training steps of `name`'s expression model at `size`. */
function trainSpeed(name: string, size: number, precision: "bf16" | "fp32"): number {
  const model = createModel(name, { pretrained: "face-recognition", inputSize: size }).train();
  const net = atPrecision(model, precision);
  const opt = new torch.optim.SGD(model.parameters(), { lr: 1e-4, momentum: 0.9 });
  const batch = 64;
  const x = torch.rand([batch, 3, size, size]).contiguous("channels_last");
  const y = torch.randint(0, 7, [batch]);
  const step = () =>
    torch.tidy(() => {
      opt.zeroGrad();
      torch.F.crossEntropy(net.forward(x), y).backward();
      opt.step();
    });
  const times: number[] = [];
  for (let r = 0; r < Number(args.rounds); r++) {
    for (let i = 0; i < Number(args.warmup); i++) step();
    const t0 = performance.now();
    for (let i = 0; i < Number(args.steps); i++) step();
    times.push((performance.now() - t0) / Number(args.steps));
  }
  torch.dispose([x, y]);
  opt.dispose();
  model.dispose();
  return (batch * 1000) / median(times);
}

const identificationRows = [];
for (const name of models) {
  const size = name === "faceres" ? 224 : 112;
  const { x, people } = await orlFaces(size);
  const model = createModel(name, { pretrained: "face-recognition", embedding: true }).eval();
  const d = torch.tidy(() =>
    torch.noGrad(() => (model instanceof FaceRes ? model.descriptor(x) : (model as MobileFaceNet).embed(x)).toArray() as Float32Array),
  );
  model.dispose();
  x.dispose();
  const row = { model: name, size, ...identification(d, people) };
  identificationRows.push(row);
  console.log(
    `${name} (${size}x${size}): nearest neighbour the same person for ${(100 * row.nn_accuracy).toFixed(0)} % of 100 ORL faces; ` +
      `mean cosine ${row.cos_same.toFixed(4)} same person, ${row.cos_different.toFixed(4)} different people`,
  );
}

const precisions: ("bf16" | "fp32")[] = torch.cpuHasNativeBf16() ? ["bf16", "fp32"] : ["fp32"];
const speedRows = [];
for (const name of models)
  for (const size of args.sizes.split(",").map(Number))
    for (const precision of precisions) {
      const imgS = trainSpeed(name, size, precision);
      speedRows.push({ model: name, size, precision, img_s: Math.round(imgS) });
      console.log(`${name} ${size}x${size} ${precision}: ${imgS.toFixed(0)} img/s training (batch 64, ${args.threads} threads)`);
    }
console.log(JSON.stringify({ identification: identificationRows, speed: speedRows }));
