/**
 * Video in and out through Debian's ffmpeg/ffprobe as child processes: probing, decoding to raw
 * RGB frames streamed one at a time (memory does not grow with the video's length), and encoding
 * raw RGB frames to H.264 MP4.
 */
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import type { Writable } from "node:stream";
import type { RgbImage } from "../faces/index.js";

/** A file ffmpeg cannot read as a video (not a video, no video stream, unreadable). */
export class VideoError extends Error {
  override name = "VideoError";
}

/** What {@link probeVideo} finds. */
export interface VideoInfo {
  /** Frame size in pixels, after the rotation stored in the file is applied (as ffmpeg decodes it). */
  width: number;
  height: number;
  /** Frames per second (average). */
  fps: number;
  /** Duration in seconds, when the container says. */
  duration: number | null;
}

const FFPROBE = process.env.FERKIT_FFPROBE ?? "ffprobe";
const FFMPEG = process.env.FERKIT_FFMPEG ?? "ffmpeg";

function rate(s: unknown): number {
  if (typeof s !== "string") return NaN;
  const [a, b] = s.split("/").map(Number);
  return b ? a / b : a;
}

/**
 * Reads a video's frame size, rate and duration with ffprobe.
 * @throws VideoError naming the file when ffprobe is missing, fails, or finds no video stream
 */
export function probeVideo(file: string): VideoInfo {
  const p = spawnSync(
    FFPROBE,
    [
      "-v",
      "error",
      "-select_streams",
      "v:0",
      "-show_entries",
      "stream=width,height,avg_frame_rate,r_frame_rate:stream_side_data=rotation:format=duration",
      "-of",
      "json",
      file,
    ],
    { encoding: "utf8" },
  );
  if (p.error) throw new VideoError(`${file}: cannot run ffprobe (${p.error.message}); install Debian's ffmpeg`);
  if (p.status !== 0) {
    // ffprobe's last line usually starts with the file name again: drop it.
    const last = p.stderr.trim().split("\n").pop() ?? "";
    const reason = last.startsWith(`${file}: `) ? last.slice(file.length + 2) : last;
    throw new VideoError(`${file}: not a readable video (${reason || `ffprobe exit ${p.status}`})`);
  }
  const j = JSON.parse(p.stdout) as {
    streams?: {
      width?: number;
      height?: number;
      avg_frame_rate?: string;
      r_frame_rate?: string;
      side_data_list?: { rotation?: number }[];
    }[];
    format?: { duration?: string };
  };
  const s = j.streams?.[0];
  if (!s || !s.width || !s.height) throw new VideoError(`${file}: no video stream`);
  let fps = rate(s.avg_frame_rate);
  if (!(fps > 0)) fps = rate(s.r_frame_rate);
  if (!(fps > 0)) fps = 25;
  const rotation = Math.abs(s.side_data_list?.find((d) => d.rotation !== undefined)?.rotation ?? 0) % 180;
  const duration = Number(j.format?.duration);
  return {
    width: rotation === 90 ? s.height : s.width,
    height: rotation === 90 ? s.width : s.height,
    fps,
    duration: Number.isFinite(duration) ? duration : null,
  };
}

/** One decoded frame. */
export interface VideoFrame {
  /** 0-based index in the decoded stream. */
  index: number;
  /** Presentation time in seconds (index / fps). */
  time: number;
  image: RgbImage;
}

/** Options of {@link readFrames}. */
export interface ReadFramesOptions {
  /** Frames whose longer side exceeds this are scaled down by ffmpeg (default 1024 px); `scale` says by how much. */
  maxSide?: number;
}

/**
 * The frame size ffmpeg outputs for {@link readFrames}: at most `maxSide` on the longer side, and
 * even on both (H.264 in yuv420p, for annotated videos, needs even sizes). `scaleX`/`scaleY` map
 * decoded pixels back to the video's.
 */
export function decodedSize(info: VideoInfo, maxSide = 1024): { width: number; height: number; scaleX: number; scaleY: number } {
  const scale = Math.min(1, maxSide / Math.max(info.width, info.height));
  const even = (x: number): number => Math.max(2, 2 * Math.floor((x * scale) / 2));
  const width = even(info.width);
  const height = even(info.height);
  return { width, height, scaleX: info.width / width, scaleY: info.height / height };
}

/**
 * Decodes a video to RGB frames, one at a time. Memory holds the frame being read plus the pipe's
 * buffer, whatever the video's length (each frame is a new buffer, kept as long as the caller keeps
 * it): ffmpeg waits until the caller asks for the next frame.
 * A truncated file yields the frames before the damage, then `onError` gets ffmpeg's message.
 * @throws VideoError when ffmpeg cannot be started
 */
export async function* readFrames(
  file: string,
  info: VideoInfo,
  o: ReadFramesOptions & { onError?: (message: string) => void } = {},
): AsyncGenerator<VideoFrame> {
  const { width, height } = decodedSize(info, o.maxSide);
  const args = ["-v", "error", "-nostdin", "-i", file, "-map", "0:v:0", "-vsync", "passthrough"];
  if (width !== info.width || height !== info.height) args.push("-vf", `scale=${width}:${height}`);
  args.push("-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1");
  const proc = spawn(FFMPEG, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d: string) => (stderr = (stderr + d).slice(-4000)));
  const exited = new Promise<number | null>((resolve, reject) => {
    proc.on("error", (err) => reject(new VideoError(`${file}: cannot run ffmpeg (${err.message}); install Debian's ffmpeg`)));
    proc.on("close", (code) => resolve(code));
  });
  const frameBytes = width * height * 3;
  let buf = Buffer.alloc(frameBytes);
  let filled = 0;
  let index = 0;
  let completed = false;
  try {
    for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(frameBytes - filled, chunk.length - off);
        chunk.copy(buf, filled, off, off + n);
        filled += n;
        off += n;
        if (filled === frameBytes) {
          const data = new Uint8Array(buf.buffer, buf.byteOffset, frameBytes);
          yield { index, time: index / info.fps, image: { data, width, height } };
          index++;
          buf = Buffer.alloc(frameBytes);
          filled = 0;
        }
      }
    }
    const code = await exited;
    if (code !== 0 || stderr.trim() !== "") {
      const last = stderr.trim().split("\n").slice(-2).join("; ");
      o.onError?.(`ffmpeg stopped after ${index} frames${code !== 0 ? ` (exit ${code})` : ""}: ${last || "no message"}`);
    }
    completed = true;
  } finally {
    if (!completed) proc.kill("SIGKILL");
  }
}

/** An MP4 writer fed with raw RGB frames (H.264, yuv420p, so every player opens it). */
export class Mp4Writer {
  private readonly proc;
  private readonly stdin: Writable;
  private readonly done: Promise<void>;
  private stderr = "";
  private exited = false;

  /**
   * Starts ffmpeg writing `file`.
   * @param width frame width in pixels (even)
   * @param height frame height in pixels (even)
   * @param fps frames per second
   */
  constructor(
    readonly file: string,
    readonly width: number,
    readonly height: number,
    fps: number,
  ) {
    this.proc = spawn(
      FFMPEG,
      [
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        `${width}x${height}`,
        "-r",
        String(fps),
        "-i",
        "pipe:0",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        file,
      ],
      { stdio: ["pipe", "ignore", "pipe"] },
    );
    this.stdin = this.proc.stdin;
    // ffmpeg exiting early closes its input: the failure is reported by close(), not as a crash.
    this.stdin.on("error", () => {});
    this.proc.stderr.setEncoding("utf8");
    this.proc.stderr.on("data", (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    this.done = new Promise((resolve, reject) => {
      this.proc.on("error", (err) => reject(new VideoError(`cannot run ffmpeg to write ${file}: ${err.message}`)));
      this.proc.on("close", (code) => {
        this.exited = true;
        if (code === 0) resolve();
        else reject(new VideoError(`ffmpeg could not write ${file}: ${this.stderr.trim() || `exit ${code}`}`));
      });
    });
    // A failure surfaces in close(); keep it from being an unhandled rejection meanwhile.
    this.done.catch(() => {});
  }

  /** Appends one frame (`height * width * 3` bytes), waiting while ffmpeg's input is full. */
  async write(rgb: Uint8Array): Promise<void> {
    if (rgb.length !== this.width * this.height * 3)
      throw new RangeError(`Mp4Writer: frame has ${rgb.length} bytes, expected ${this.width * this.height * 3}`);
    if (this.exited) await this.done;
    if (!this.stdin.write(rgb)) await Promise.race([new Promise<void>((resolve) => this.stdin.once("drain", resolve)), this.done]);
  }

  /**
   * Finishes the file.
   * @throws VideoError when ffmpeg failed
   */
  async close(): Promise<void> {
    this.stdin.end();
    try {
      await this.done;
    } catch (err) {
      rmSync(this.file, { force: true }); // no half-written video left behind
      throw err;
    }
  }
}
