/**
 * `ferkit serve`: a fastify HTTP server with a JSON API and one web app (web/), everything served
 * from the project and its npm packages (no CDN).
 *
 * API (errors are JSON `{"error": message}` with the status):
 * - `GET /api/health`: status, version, the model and its classes, the work queue's load.
 * - `POST /api/predict`: multipart, the photo or video in field `file`; answers what
 *   `ferkit predict --json` prints for it. With `?session=<id>` (a webcam's frames) each face also
 *   gets its `track` id and its averaged `probs_ema` / `label_ema`, kept between the session's frames. 400 malformed request, 413 larger than the upload
 *   limit, 415 not an image or video, 503 when the bounded work queue is full.
 * - `GET /api/progress/:job`: where a prediction sent with `?job=<id>` stands (a video's frame).
 * - `GET /api/runs`: the run folders under the runs root with their state and key metrics.
 * - `GET /api/runs/:id`: one run's summary and its report data (404 for an unknown run).
 * - `GET /api/runs/:id/events`: server-sent events, `run` with the summary and report data on
 *   connect and each time the run's `log.jsonl` changes.
 *
 * Uploads go to a private temporary folder (mode 0700) and are deleted after use, also when the
 * request fails or the client goes away midway. With a token, every `/api/` request needs it
 * (`Authorization: Bearer <token>`, or `?token=` for the event stream).
 */
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync, watchFile, unwatchFile } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import helmet from "@fastify/helmet";
import multipart from "@fastify/multipart";
import fastifyStatic from "@fastify/static";
import { readRun } from "../report/run_data.js";
import { PACKAGE_ROOT } from "../torch/native.js";
import { VideoError } from "../predict/ffmpeg.js";
import { HttpError, NamedEntries } from "./http.js";
import { LiveSession, Predictor } from "./predictor.js";
import { QueueFullError, WorkQueue } from "./queue.js";
import { listRuns, runDir, summarizeRun } from "./runs.js";

/** Options of {@link buildServer}. */
export interface ServeOptions {
  /** Folder whose sub-folders are the runs shown (default `runs/`). */
  runsDir: string;
  /** The expression model: a model file, run folder or shipped name (default: the shipped model). */
  model?: string;
  /** Largest upload in bytes (default 200 MB); larger ones get 413. */
  maxUploadBytes?: number;
  /** Required on every `/api/` request when set. */
  token?: string | null;
  /** Predictions run at once and waiting (default 1 and 4); more get 503. */
  concurrency?: number;
  maxWaiting?: number;
  /** How often a run's log is checked for changes, in milliseconds (default 500). */
  pollMs?: number;
  /** Where the private upload folder is made (default: the system's temporary folder). */
  uploadsRoot?: string;
  /** A loaded predictor (tests share one); the server then does not dispose it. */
  predictor?: Predictor;
}

/** Where a named prediction stands: waiting, running (a video's frame and estimated frame count), or done. */
interface JobProgress {
  stage: "queued" | "processing" | "done";
  frame: number;
  frames: number;
}

const WEB_DIR = path.join(PACKAGE_ROOT, "web");

/** Vendor scripts the web app loads, from their npm packages. */
const VENDOR: Record<string, string> = {
  "d3.js": path.join(PACKAGE_ROOT, "node_modules", "d3", "dist", "d3.min.js"),
  "plot.js": path.join(PACKAGE_ROOT, "node_modules", "@observablehq", "plot", "dist", "plot.umd.min.js"),
};

function sameToken(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** A safe file name for an upload: its extension (for ffmpeg's sake), nothing of the rest of the client's name. */
function uploadName(client: string): string {
  const ext = path.extname(client).toLowerCase();
  return `upload${/^\.[a-z0-9]{1,8}$/.test(ext) ? ext : ""}`;
}

/**
 * Builds the server (not listening yet: call `listen`). Closing it frees the models it loaded
 * and removes the upload folder.
 * @throws ConfigError when the model file is not a usable ferkit model
 */
export async function buildServer(o: ServeOptions): Promise<FastifyInstance> {
  const maxUploadBytes = o.maxUploadBytes ?? 200 * 1024 * 1024;
  const predictor = o.predictor ?? (await Predictor.load(o.model));
  const queue = new WorkQueue(o.concurrency ?? 1, o.maxWaiting ?? 4);
  const uploads = mkdtempSync(path.join(o.uploadsRoot ?? tmpdir(), "ferkit-serve-"));
  const pollMs = o.pollMs ?? 500;
  const version = (JSON.parse(readFileSync(path.join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;

  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  // Open event streams, ended when the server closes (they would keep it open).
  const streams = new Set<() => void>();
  app.addHook("preClose", async () => {
    for (const end of streams) end();
    streams.clear();
  });
  app.addHook("onClose", async () => {
    if (!o.predictor) predictor.dispose();
    rmSync(uploads, { recursive: true, force: true });
  });
  await app.register(helmet, {
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        // Observable Plot puts a <style> element in each chart; scripts stay 'self' only.
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", "blob:", "data:"],
        mediaSrc: ["'self'", "blob:", "mediastream:"],
        connectSrc: ["'self'"],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        fontSrc: ["'self'"],
        // Plain http on a LAN address must keep working.
        upgradeInsecureRequests: null,
      },
    },
  });
  await app.register(multipart, { limits: { fileSize: maxUploadBytes, files: 1, fields: 4, parts: 5 } });
  await app.register(fastifyStatic, { root: WEB_DIR, prefix: "/", index: "index.html" });

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    let status = err instanceof HttpError ? err.statusCode : (err.statusCode ?? 500);
    let message = err.message;
    if (err.code === "FST_INVALID_MULTIPART_CONTENT_TYPE" || err.code === "FST_MP_PREMATURE_CLOSE") {
      status = 400;
      message = "malformed request: send multipart/form-data with the photo or video in the field 'file'";
    } else if (err.code === "FST_REQ_FILE_TOO_LARGE" || err.code === "FST_FILES_LIMIT" || err.code === "FST_PARTS_LIMIT") {
      status = 413;
      message = `upload too large: at most ${maxUploadBytes} bytes and one file`;
    } else if (err.code === "FST_ERR_VALIDATION") status = 400;
    else if (status >= 500) message = `internal error: ${err.message}`;
    void reply.code(status).type("application/json").send({ error: message });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `not found: ${req.method} ${req.url.split("?")[0]}` });
  });

  if (o.token)
    app.addHook("onRequest", async (req: FastifyRequest) => {
      if (!req.url.startsWith("/api/")) return;
      const header = req.headers.authorization ?? "";
      const query = (req.query as { token?: unknown } | undefined)?.token;
      const given = header.startsWith("Bearer ") ? header.slice(7) : typeof query === "string" ? query : "";
      if (!sameToken(given, o.token as string)) throw new HttpError(401, "a token is required: Authorization: Bearer <token>, or ?token=");
    });

  for (const [name, file] of Object.entries(VENDOR))
    app.get(`/vendor/${name}`, async (_req, reply) => reply.type("text/javascript").send(readFileSync(file)));

  app.get("/api/health", async () => ({
    status: "ok",
    version,
    model: { file: predictor.classifier.file, classes: predictor.classifier.classes },
    queue: queue.load,
    max_upload_bytes: maxUploadBytes,
  }));

  // Webcam streams' tracks, dropped after 2 minutes without a frame; video progress, 5 minutes.
  const sessions = new NamedEntries<LiveSession>("session", 120_000, 32);
  const jobs = new NamedEntries<JobProgress>("job", 300_000, 256);

  app.post("/api/predict", async (req: FastifyRequest) => {
    if (queue.full)
      throw new HttpError(503, `busy: ${queue.load.running} prediction(s) running and ${queue.load.waiting} waiting; try again shortly`);
    if (!req.isMultipart())
      throw new HttpError(400, "malformed request: send multipart/form-data with the photo or video in the field 'file'");
    let job: JobProgress | null = null;
    const dir = await mkdtemp(path.join(uploads, "u-"));
    try {
      const part = await req.file();
      if (part === undefined || part.fieldname !== "file") throw new HttpError(400, "malformed request: no file in the field 'file'");
      const name = path.basename(part.filename || "upload");
      const file = path.join(dir, uploadName(name));
      await pipeline(part.file, createWriteStream(file, { mode: 0o600 }));
      if (part.file.truncated) throw new HttpError(413, `upload too large: at most ${maxUploadBytes} bytes`);
      if (statSync(file).size === 0) throw new HttpError(400, "malformed request: the file is empty");
      const { kind, reason } = await Predictor.kind(file);
      if (kind === "unknown") throw new HttpError(415, `${name}: ${reason ?? "not an image or video that ferkit can read"}`);
      const query = req.query as { session?: unknown; job?: unknown };
      const live = sessions.take(query.session, () => new LiveSession());
      job = jobs.take(query.job, (): JobProgress => ({ stage: "queued", frame: 0, frames: 0 }), true);
      const result = await queue.run(async () => {
        try {
          if (job !== null) job.stage = "processing";
          if (kind === "video")
            return await predictor.video(file, name, (frame, frames) => {
              if (job !== null) Object.assign(job, { frame, frames });
            });
          return live === null ? await predictor.photo(file, name) : await predictor.liveFrame(file, name, live);
        } catch (err) {
          if (err instanceof VideoError) throw new HttpError(415, err.message);
          throw err;
        }
      });
      return result;
    } catch (err) {
      if (err instanceof QueueFullError) throw new HttpError(503, `${err.message}; try again shortly`);
      throw err;
    } finally {
      if (job !== null) job.stage = "done";
      await rm(dir, { recursive: true, force: true });
    }
  });

  app.get(
    "/api/progress/:job",
    { schema: { params: { type: "object", properties: { job: { type: "string", maxLength: 64 } } } } },
    async (req) => {
      const progress = jobs.get((req.params as { job: string }).job);
      if (progress === undefined) throw new HttpError(404, "unknown job");
      return progress;
    },
  );

  const runParams = {
    params: { type: "object", properties: { id: { type: "string", minLength: 1, maxLength: 200 } }, required: ["id"] },
  } as const;
  const findRun = (id: string): string => {
    const dir = runDir(o.runsDir, id);
    if (dir === null) throw new HttpError(404, `unknown run '${id}'`);
    return dir;
  };
  const runPayload = (id: string, dir: string) => {
    const run = readRun(dir);
    return { summary: summarizeRun(id, dir, run), run: { ...run, dir: undefined } };
  };

  app.get("/api/runs", async () => ({ runs: listRuns(o.runsDir) }));
  app.get("/api/runs/:id", { schema: runParams }, async (req) => {
    const { id } = req.params as { id: string };
    return runPayload(id, findRun(id));
  });
  app.get("/api/runs/:id/events", { schema: runParams }, async (req, reply) => {
    const { id } = req.params as { id: string };
    const dir = findRun(id);
    const log = path.join(dir, "log.jsonl");
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-content-type-options": "nosniff",
    });
    const send = (): void => {
      try {
        res.write(`event: run\ndata: ${JSON.stringify(runPayload(id, dir))}\n\n`);
      } catch (err) {
        res.write(`event: problem\ndata: ${JSON.stringify({ error: (err as Error).message })}\n\n`);
      }
    };
    send();
    const onChange = (now: { mtimeMs: number; size: number }, before: { mtimeMs: number; size: number }): void => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size) send();
    };
    watchFile(log, { interval: pollMs }, onChange);
    const heartbeat = setInterval(() => res.write(": keep-alive\n\n"), 15000);
    const stop = (): void => {
      clearInterval(heartbeat);
      unwatchFile(log, onChange);
    };
    const end = (): void => {
      stop();
      res.end();
    };
    streams.add(end);
    req.raw.on("close", () => {
      stop();
      streams.delete(end);
    });
  });

  return app;
}
