// Khronos glTF-Validator on each file named on the command line; prints one JSON line per file
// ({file, errors, warnings, infos, messages}) and exits 1 when any file has an error.
import { readFileSync } from "node:fs";
// $GLTF_VALIDATOR: the package folder's index.js when it is not in a node_modules above this script
const validator = (await import(process.env.GLTF_VALIDATOR ?? "gltf-validator")).default;

let failed = false;
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
    uri: file,
    maxIssues: 50,
    format: "glb",
  });
  const issues = report.issues;
  failed ||= issues.numErrors > 0;
  console.log(
    JSON.stringify({
      file,
      errors: issues.numErrors,
      warnings: issues.numWarnings,
      infos: issues.numInfos,
      messages: issues.messages.map((m) => `${m.severity === 0 ? "error" : m.severity === 1 ? "warning" : "info"} ${m.code} ${m.pointer ?? ""}: ${m.message}`),
    })
  );
}
process.exit(failed ? 1 : 0);
