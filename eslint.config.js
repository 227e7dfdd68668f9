// ESLint flat config: TypeScript-aware recommended rules over src, test and bench.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  { ignores: ["dist/", "native/build/", "node_modules/", "runs/", "logs/", "scratch/", ".cache/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
    },
  },
  {
    // The web app of `ferkit serve`: plain ES modules in the browser, with Observable Plot's global.
    files: ["web/**/*.js"],
    languageOptions: { sourceType: "module", globals: { ...globals.browser, Plot: "readonly" } },
  },
  {
    files: ["scripts/**/*.cjs"],
    languageOptions: {
      sourceType: "commonjs",
      globals: { require: "readonly", process: "readonly", console: "readonly", __dirname: "readonly" },
    },
    rules: { "@typescript-eslint/no-require-imports": "off" },
  },
);
