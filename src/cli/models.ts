/** `ferkit models`: the model zoo, with the source and model card of each model's pretrained weights. */
import { Command } from "commander";

/** The `models` command. */
export function modelsCommand(): Command {
  return new Command("models")
    .description("list the model zoo: architectures, input sizes, parameters, and where pretrained weights come from")
    .option("--json", "print one JSON object instead of text", false)
    .action(async (o: { json: boolean }) => {
      const { createModel, defaultInputSize, describeModel, listModels, pretrainedSource } = await import("../models/index.js");
      const { packageVersion } = await import("../models/tfjs_import.js");
      const rows = listModels().map((name) => {
        const model = createModel(name);
        const parameters = model.numParameters();
        model.dispose();
        const source = pretrainedSource(name);
        return {
          name,
          description: describeModel(name),
          input: [...defaultInputSize(name)],
          parameters,
          pretrained:
            source === null
              ? null
              : {
                  weights: "face-recognition",
                  package: source.package,
                  version: packageVersion(source.package),
                  file: source.file,
                  ...source.card,
                },
        };
      });
      if (o.json) {
        console.log(JSON.stringify({ models: rows }));
        return;
      }
      for (const r of rows) {
        console.log(`${r.name}: ${r.description}`);
        console.log(`  input [${r.input.join(", ")}], ${(r.parameters / 1e6).toFixed(2)} M parameters with a 7-class head`);
        const p = r.pretrained;
        if (p === null) continue;
        const installed = p.version === "?" ? "not installed" : `installed ${p.version}`;
        console.log(`  pretrained: "face-recognition" from ${p.package} (${installed}), ${p.file}`);
        for (const [k, v] of [
          ["origin", p.origin],
          ["trained on", p.trainedOn],
          ["terms", p.terms],
          ["input", p.input],
          ["measured", p.measured],
        ])
          console.log(`    ${k}: ${v}`);
      }
    });
}
