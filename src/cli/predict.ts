/** `ferkit predict`: expressions of the faces in photos, folders and videos. */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { Command, Option } from "commander";
import { ConfigError } from "../train/config.js";
import { stringify } from "csv-stringify/sync";
import { PREDICT_LANDMARKS } from "../predict/images.js";
import { positiveInt, positiveNumber } from "./options.js";
import { PRECISIONS, resolvePrecision, type Precision } from "../torch/autocast.js";

interface PredictFlags {
  model?: string;
  json: boolean;
  csv: boolean;
  annotate?: string;
  abaw?: string;
  tta: boolean;
  every: number;
  voteWindow: number;
  voteStride: number;
  ema: number;
  maxSide: number;
  landmarks: "blazeface" | "mesh";
  smallFaces: boolean;
  appearance: boolean;
  crops: boolean;
  boxes?: string;
  align?: "eyes" | "resize";
  maxFaces?: number;
  saveCrops?: string;
  precision: Precision;
}

const out = (s: string): void => {
  process.stdout.write(s);
};

/** The `predict` command. */
export function predictCommand(): Command {
  return new Command("predict")
    .description("detect, align and classify every face in photos, folders (walked recursively) and videos")
    .argument("<inputs...>", "image files, video files (through ffmpeg) or folders")
    .option(
      "--model <file>",
      "a model file or run folder written by ferkit train, or a shipped model's name (default: the default model in models/)",
    )
    .addOption(new Option("--json", "one JSON object per input per line (JSON Lines)").conflicts("csv").default(false))
    .option("--csv", "one CSV row per face (per frame for videos)", false)
    .option(
      "--annotate <dir>",
      "write each photo (or an MP4 per video) with boxes and labels drawn into this folder (a photo without a face is copied as it is)",
    )
    .option("--abaw <dir>", "write an ABAW expression submission file per video into this folder")
    .option(
      "--no-tta",
      "do not average each face's probabilities with its horizontal flip's (averaging is the default, as the shipped model was evaluated)",
    )
    .addOption(
      new Option(
        "--precision <p>",
        "classification in bf16 (autocast, 2.4x faster on the shipped model, same PrivateTest figures within 0.11 points) or fp32; auto: bf16 where the CPU has native bfloat16",
      )
        .choices(PRECISIONS)
        .default("auto"),
    )
    .option("--every <n>", "videos: classify every n-th frame", positiveInt("--every"), 1)
    .option(
      "--vote-window <n>",
      "videos: majority-vote window in frames of a face track (Yu et al. 2023)",
      positiveInt("--vote-window"),
      200,
    )
    .option("--vote-stride <n>", "videos: majority-vote stride in frames", positiveInt("--vote-stride"), 100)
    .option(
      "--ema <alpha>",
      "videos: weight of the newest frame in the probability moving average, in (0, 1]",
      positiveNumber("--ema"),
      0.3,
    )
    .addOption(
      new Option(
        "--landmarks <source>",
        "eye points for alignment: BlazeFace's own (1.3x faster) or FaceMesh's (more precise; +0.6 points of accuracy on FER2013 PrivateTest photos)",
      )
        .choices(["blazeface", "mesh"])
        .default(PREDICT_LANDMARKS),
    )
    .option(
      "--no-small-faces",
      "skip the tiled detection pass that finds faces down to about 2 % of a large image's longer side (detection about 3x faster on 1280x720 frames; faces under about 5 % are then missed)",
    )
    .option(
      "--no-appearance",
      "videos: match tracks by position only, not also by what the faces look like (faster; ids may then swap when people cross or at a cut)",
    )
    .option("--max-side <px>", "videos: frames larger than this are scaled down for detection", positiveInt("--max-side"), 1024)
    .addOption(
      new Option(
        "--crops",
        "each input image (or video frame) is one face crop: no face search, the whole image is classified (aligned as --align says)",
      )
        .conflicts("boxes")
        .default(false),
    )
    .option(
      "--boxes <file>",
      "classify the faces at these boxes (your own detector's) instead of detecting: CSV with the header file,x,y,width,height[,frame] or JSON, pixels of the original image",
    )
    .addOption(
      new Option(
        "--align <how>",
        "with --crops or --boxes: 'eyes' aligns by the eye landmarks BlazeFace finds in the crop or box (else by the crop or box alone), 'resize' by the crop or box alone (default: resize for --crops, eyes for --boxes)",
      ).choices(["eyes", "resize"]),
    )
    .option("--max-faces <n>", "keep at most n faces per photo or frame, the largest first", positiveInt("--max-faces"))
    .option(
      "--save-crops <dir>",
      "write each face's aligned input (what the model classified) as a PNG of the model's input size into this folder",
    )
    .action(async (inputs: string[], o: PredictFlags) => {
      if (o.ema > 1) throw new RangeError(`--ema must be in (0, 1], got ${o.ema}`);
      if (o.align !== undefined && !o.crops && o.boxes === undefined) throw new ConfigError("--align applies only with --crops or --boxes");
      // Options that can be wrong are checked before the model loads.
      const { readBoxFile, matchBoxes } = await import("../predict/boxes.js");
      const boxList = o.boxes === undefined ? null : readBoxFile(o.boxes);
      const { CropWriter } = await import("../predict/crops.js");
      const cropWriter = o.saveCrops === undefined ? undefined : new CropWriter(o.saveCrops);
      const { FaceClassifier } = await import("../predict/classifier.js");
      const { expandInputs, predictImages } = await import("../predict/images.js");
      const precision = resolvePrecision(o.precision);
      if (o.precision === "bf16" && precision.note !== undefined) console.error(precision.note);
      const classifier = FaceClassifier.load(o.model, { precision: precision.precision });
      const detectorOptions = { landmarks: o.landmarks, tiles: o.smallFaces };
      const classes = classifier.classes;
      const expanded = expandInputs(inputs);
      let failures = 0;
      const warn = (m: string): void => console.error(`warning: ${m}`);
      // An input that could not be predicted: the rest goes on, the exit code says so (2).
      const fail = (m: string): void => {
        failures++;
        console.error(`error: ${m}`);
      };
      for (const e of expanded.errors) fail(`${e.file}: ${e.error}`);
      if (expanded.images.length + expanded.videos.length === 0 && expanded.errors.length === 0)
        fail(`no image or video files in ${inputs.join(", ")}`);
      // Boxes: names matched to the inputs; unmatched names and inputs without boxes are told, not fatal.
      const boxes = boxList === null ? null : matchBoxes(boxList, [...expanded.images, ...expanded.videos]);
      if (boxList !== null && boxes !== null) {
        const list = (names: string[]): string =>
          names.slice(0, 5).join(", ") + (names.length > 5 ? `, ... (${names.length - 5} more)` : "");
        if (boxes.unmatched.length > 0)
          warn(
            `${boxList.source}: ${boxes.unmatched.length} file name(s) match no input, their boxes are not used: ${list(boxes.unmatched)}`,
          );
        const without = [...expanded.images, ...expanded.videos].filter((f) => !boxes.byInput.has(f));
        if (without.length > 0) warn(`${without.length} input(s) have no box in ${boxList.source} (given no face): ${list(without)}`);
      }
      const reportBoxErrors = (file: string, errors: { where: string; error: string }[] | undefined): void => {
        for (const e of errors ?? []) fail(`${e.where}: ${e.error} (${file}): skipped`);
      };
      for (const [flag, dir] of [
        ["--annotate", o.annotate],
        ["--abaw", o.abaw],
      ] as const) {
        if (dir === undefined) continue;
        if (existsSync(dir) && !statSync(dir).isDirectory()) throw new ConfigError(`${flag} ${dir}: is a file, not a folder`);
        mkdirSync(dir, { recursive: true });
      }
      // Annotated copies keep their base names; a repeated name gets a numbered suffix.
      const usedNames = new Set<string>();
      const annotatedName = (file: string, ext: string): string => {
        const base = path.parse(file).name;
        let name = `${base}${ext}`;
        for (let k = 1; usedNames.has(name); k++) name = `${base}-${k}${ext}`;
        usedNames.add(name);
        return path.join(o.annotate as string, name);
      };

      const csvColumns = [
        "file",
        "frame",
        "time_s",
        "face",
        "x",
        "y",
        "w",
        "h",
        "label",
        "score",
        "label_vote",
        "label_ema",
        "detection_score",
        ...classes.map((c) => `p_${c}`),
        ...(o.crops || o.boxes !== undefined ? ["align"] : []),
        ...(cropWriter ? ["crop"] : []),
      ];
      if (o.csv) out(stringify([csvColumns]));
      const csvRow = (r: Record<string, unknown>): void => out(stringify([csvColumns.map((k) => r[k] ?? "")]));
      if (o.json) for (const e of expanded.errors) out(JSON.stringify({ file: e.file, error: e.error }) + "\n");

      // Photos: detected on worker threads, classified in batches.
      if (expanded.images.length > 0) {
        const common = { tta: o.tta, detector: detectorOptions, maxFaces: o.maxFaces, saveCrops: cropWriter };
        const { predictBoxes, predictCrops } = await import("../predict/given.js");
        const results = o.crops
          ? await predictCrops(expanded.images, classifier, { ...common, align: o.align })
          : boxes
            ? await predictBoxes(expanded.images, boxes.byInput, classifier, { ...common, align: o.align })
            : await predictImages(expanded.images, classifier, common);
        for (const r of results) {
          if (r.error !== undefined) fail(`${r.file}: ${r.error}`);
          reportBoxErrors(r.file, r.box_errors);
          if (o.json) out(JSON.stringify(r) + "\n");
          else if (o.csv)
            r.faces.forEach((f, i) =>
              csvRow({
                file: r.file,
                face: i,
                x: f.box[0],
                y: f.box[1],
                w: f.box[2],
                h: f.box[3],
                label: f.label,
                score: f.score,
                detection_score: f.detection_score,
                align: f.align,
                crop: f.crop,
                ...Object.fromEntries(classes.map((c) => [`p_${c}`, f.probs[c]])),
              }),
            );
          else if (r.faces.length > 0 || r.error === undefined) {
            if (r.faces.length === 0) out(`${r.file}: no face\n`);
            r.faces.forEach((f, i) =>
              out(`${r.file}  face ${i}  [${f.box.map(Math.round).join(", ")}]  ${f.label} ${(100 * f.score).toFixed(1)} %\n`),
            );
          }
          if (o.annotate && r.error === undefined) {
            const { annotateImageFile } = await import("../predict/annotate.js");
            const ext = path.extname(r.file).toLowerCase();
            const target = annotatedName(r.file, [".jpg", ".jpeg", ".png", ".webp"].includes(ext) ? ext : ".png");
            await annotateImageFile(
              r.file,
              target,
              r.faces.map((f, i) => ({ box: f.box, caption: `#${i} ${f.label} ${Math.round(100 * f.score)}%` })),
            );
          }
        }
      }

      // Videos: streamed frame by frame.
      if (expanded.videos.length > 0) {
        const { FaceDetector, sharedDetectorPool } = await import("../faces/index.js");
        const { predictVideo } = await import("../predict/video.js");
        const { VideoError } = await import("../predict/ffmpeg.js");
        const { writeAbawSubmission } = await import("../predict/abaw.js");
        // Frames are detected on two worker threads when there are two cores (no detector for given faces aligned by resizing).
        const needsDetector = !(o.crops || boxes) || (o.align ?? (o.crops ? "resize" : "eyes")) === "eyes";
        // Tracks follow people by their face-recognition descriptors (not for one-face-per-frame crops).
        const { FaceAppearance } = await import("../predict/appearance.js");
        const appearance = o.appearance && !o.crops ? FaceAppearance.load() : null;
        const detector = !needsDetector
          ? null
          : availableParallelism() >= 2
            ? sharedDetectorPool(2, detectorOptions)
            : await FaceDetector.create(detectorOptions);
        try {
          for (const file of expanded.videos) {
            const annotate = o.annotate ? annotatedName(file, ".mp4") : undefined;
            let first = true;
            if (o.json) out(`{"file":${JSON.stringify(file)},"type":"video","rows":[`);
            try {
              const started = performance.now();
              const s = await predictVideo(file, classifier, detector, {
                tta: o.tta,
                every: o.every,
                voteWindow: o.voteWindow,
                voteStride: o.voteStride,
                emaAlpha: o.ema,
                maxSide: o.maxSide,
                annotate,
                maxFaces: o.maxFaces,
                saveCrops: cropWriter,
                given: o.crops ? "crops" : boxes ? (boxes.byInput.get(file) ?? []) : undefined,
                align: o.align,
                appearance,
                onRow: (r) => {
                  if (o.json) {
                    out((first ? "" : ",") + JSON.stringify(r));
                    first = false;
                  } else if (o.csv)
                    csvRow({
                      file,
                      ...r,
                      x: r.box[0],
                      y: r.box[1],
                      w: r.box[2],
                      h: r.box[3],
                      ...Object.fromEntries(classes.map((c) => [`p_${c}`, r.probs[c]])),
                    });
                },
              });
              const secs = (performance.now() - started) / 1000;
              if (s.warning) fail(s.warning);
              reportBoxErrors(file, s.box_errors);
              const { mainLabels, ...summary } = s;
              if (o.json) out(`],"summary":${JSON.stringify({ ...summary, seconds: Math.round(secs * 10) / 10 })}}\n`);
              else if (!o.csv)
                out(
                  `${file}: ${s.frames} frames (${s.fps.toFixed(2)} fps), ${s.rows} face rows in ${s.tracks} track(s), ${secs.toFixed(1)} s\n`,
                );
              if (o.abaw) {
                const w = writeAbawSubmission(o.abaw, file, mainLabels, classes);
                if (w.filled === mainLabels.length) warn(`${file}: no face in any frame; ${w.file} has every frame as Neutral (0)`);
                else console.error(`${w.file}: ${mainLabels.length} frames, ${w.filled} without a face filled from the last prediction`);
              }
              if (annotate) console.error(`annotated video: ${annotate}`);
            } catch (err) {
              if (!(err instanceof VideoError)) throw err;
              fail(err.message);
              if (o.json) out(`],"error":${JSON.stringify(err.message)}}\n`);
            }
          }
        } finally {
          if (detector instanceof FaceDetector) detector.dispose();
          appearance?.dispose();
        }
      }
      classifier.dispose();
      // Everything readable was predicted; a non-zero code still tells scripts that some input was not.
      if (failures > 0) process.exitCode = 2;
    });
}
