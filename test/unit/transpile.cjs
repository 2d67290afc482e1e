// Loads .ts files as they are, transpiled without a type check, for `npm run test:unit`: the pure
// modules' tests then run in about a second, without a build. The type check is `npm run typecheck`'s
// (and `npm test` runs these same files from the build).
const { readFileSync } = require("node:fs");
const ts = require("typescript");

const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
require.extensions[".ts"] = (module, filename) => {
  const { outputText } = ts.transpileModule(readFileSync(filename, "utf8"), { compilerOptions, fileName: filename });
  module._compile(outputText, filename);
};
