/** `ferkit predict`: expressions of the faces in photos, folders and videos. */
import { existsSync, mkdirSync, statSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { Command, Option } from "commander";
import { ConfigError } from "../train/config.js";
import { stringify } from "csv-stringify/sync";
import { PREDICT_LANDMARKS } from "../predict/images.js";
import { positiveInt, positiveNumber } from "./options.js";

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
}

const out = (s: string): void => {
  process.stdout.write(s);
};

/** The `predict` command. */
export function predictCommand(): Command {
  return new Command("predict")
    .description("detect, align and classify every face in photos, folders (walked recursively) and videos")
    .argument("<inputs...>", "image files, video files (through ffmpeg) or folders")
    .option("--model <file>", "a model file or run folder written by ferkit train (default: the model shipped in models/)")
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
    .option("--max-side <px>", "videos: frames larger than this are scaled down for detection", positiveInt("--max-side"), 1024)
    .action(async (inputs: string[], o: PredictFlags) => {
      if (o.ema > 1) throw new RangeError(`--ema must be in (0, 1], got ${o.ema}`);
      const { FaceClassifier } = await import("../predict/classifier.js");
      const { expandInputs, predictImages } = await import("../predict/images.js");
      const classifier = FaceClassifier.load(o.model);
      const detectorOptions = { landmarks: o.landmarks };
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
      ];
      if (o.csv) out(stringify([csvColumns]));
      const csvRow = (r: Record<string, unknown>): void => out(stringify([csvColumns.map((k) => r[k] ?? "")]));
      if (o.json) for (const e of expanded.errors) out(JSON.stringify({ file: e.file, error: e.error }) + "\n");

      // Photos: detected on worker threads, classified in batches.
      if (expanded.images.length > 0) {
        const results = await predictImages(expanded.images, classifier, { tta: o.tta, detector: detectorOptions });
        for (const r of results) {
          if (r.error !== undefined) fail(`${r.file}: ${r.error}`);
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
                ...Object.fromEntries(classes.map((c) => [`p_${c}`, f.probs[c]])),
              }),
            );
          else if (r.error === undefined) {
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
        // Frames are detected on two worker threads when there are two cores.
        const detector = availableParallelism() >= 2 ? sharedDetectorPool(2, detectorOptions) : await FaceDetector.create(detectorOptions);
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
        }
      }
      classifier.dispose();
      // Everything readable was predicted; a non-zero code still tells scripts that some input was not.
      if (failures > 0) process.exitCode = 2;
    });
}
