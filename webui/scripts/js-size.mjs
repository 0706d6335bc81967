// After `vite build`: the JavaScript a browser downloads, gzipped, against the budget of 200 KB
// (a phone on a slow link loads the whole UI in a few seconds). Over budget fails the build.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";

const BUDGET = 200 * 1024;
const assets = resolve(import.meta.dirname, "../dist/assets");
let total = 0;
for (const name of readdirSync(assets).filter((n) => n.endsWith(".js"))) {
  const gzipped = gzipSync(readFileSync(join(assets, name)), { level: 9 }).length;
  total += gzipped;
  console.log(`  ${name}: ${(gzipped / 1024).toFixed(1)} KB gzipped`);
}
console.log(`JavaScript: ${(total / 1024).toFixed(1)} KB gzipped of a ${BUDGET / 1024} KB budget`);
if (total > BUDGET) {
  console.error("over the budget: find what grew before raising it");
  process.exit(1);
}
