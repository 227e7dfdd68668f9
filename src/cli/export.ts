/** `ferkit export`: a run's selected model as one shareable model file. */
import { Command } from "commander";

/** The `export` command. */
export function exportCommand(): Command {
  return new Command("export")
    .description("write a run's model (or a model file) as a standalone model file, optionally in float16")
    .argument("<model>", "a run folder or model file written by ferkit train")
    .argument("<out>", "the .safetensors file to write")
    .option("--half", "store the weights as float16 (half the size; loading converts them back to float32)", false)
    .action(async (model: string, outFile: string, o: { half: boolean }) => {
      const { loadModelFile, saveModelFile } = await import("../train/model_file.js");
      const { existsSync, mkdirSync, statSync } = await import("node:fs");
      const path = await import("node:path");
      const { ConfigError } = await import("../train/config.js");
      if (existsSync(outFile) && statSync(outFile).isDirectory())
        throw new ConfigError(`${outFile}: is a folder; give a file name such as ${path.join(outFile, "model.safetensors")}`);
      const loaded = loadModelFile(model);
      try {
        mkdirSync(path.dirname(path.resolve(outFile)), { recursive: true });
        saveModelFile(outFile, loaded.model, loaded.card, { half: o.half });
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new ConfigError(`${outFile}: cannot write it (${e.code ?? e.message})`, { cause: err });
      } finally {
        loaded.model.dispose();
      }
      console.log(
        `wrote ${outFile} (${(statSync(outFile).size / 1e6).toFixed(2)} MB, ${loaded.card.name}, classes ${loaded.card.classes.join(", ")})`,
      );
    });
}
