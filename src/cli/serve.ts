/** `ferkit serve`: the web app and JSON API (src/serve/server.ts). */
import { Command } from "commander";
import { defaultRunsDir } from "../paths.js";
import { positiveInt } from "./options.js";

interface ServeFlags {
  host: string;
  port: number;
  runs: string;
  model?: string;
  maxUploadMb: number;
  token?: string;
}

/** The `serve` command. */
export function serveCommand(): Command {
  return new Command("serve")
    .description("serve a local web app and JSON API: predict on photos, a webcam and videos, and watch runs train live")
    .option("--host <address>", "address to listen on (another than 127.0.0.1 exposes the server to the network)", "127.0.0.1")
    .option("--port <n>", "port to listen on (0: any free port)", (v) => (v === "0" ? 0 : positiveInt("--port")(v)), 8080)
    .option("--runs <dir>", "folder whose sub-folders are the runs to show", defaultRunsDir())
    .option("--model <file>", "expression model: a model file, a run folder, or a shipped model's name (default: the shipped model)")
    .option("--max-upload-mb <n>", "largest photo or video accepted, in MB", positiveInt("--max-upload-mb"), 200)
    .option("--token <secret>", "require this token on every API request (Authorization: Bearer, or ?token= in the page's address)")
    .action(async (o: ServeFlags) => {
      const { buildServer } = await import("../serve/server.js");
      const local = o.host === "127.0.0.1" || o.host === "localhost" || o.host === "::1";
      if (!local)
        console.error(
          `warning: listening on ${o.host} exposes the server (predictions on uploads, your runs) to the network${o.token ? "" : "; add --token <secret> to require a token"}`,
        );
      const app = await buildServer({
        runsDir: o.runs,
        model: o.model,
        maxUploadBytes: o.maxUploadMb * 1024 * 1024,
        token: o.token ?? null,
      });
      const address = await app.listen({ host: o.host, port: o.port });
      console.log(`ferkit serve: ${address}/${o.token ? "?token=<your token>" : ""} (runs from ${o.runs}; Ctrl-C stops)`);
      const stop = (): void => {
        void app.close().then(() => process.exit(0));
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
