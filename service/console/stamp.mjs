// Writes static/source.sha256: the hash of the console's source (src/*.ts, the
// lock file, the build script). tests/service/test_console_bundle.py recomputes it,
// so a source change committed without `npm run build` fails the tests.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";

const files = ["package.json", "package-lock.json",
  ...readdirSync("src").filter((f) => f.endsWith(".ts")).sort().map((f) => `src/${f}`)];
const h = createHash("sha256");
for (const f of files) {
  h.update(f + "\0");
  h.update(readFileSync(f));
  h.update("\0");
}
writeFileSync("static/source.sha256", h.digest("hex") + "\n");
