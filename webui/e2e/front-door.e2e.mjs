// End to end: `pic serve`'s front door in Debian's Chromium. The state directory is on a tmpfs
// too small for the cell (under the 300 MB it needs free), so the device is blocked and the page
// says why; the tmpfs is then given room, and the page turns into the wizard by itself — no
// reload by the person. Needs root (it mounts the tmpfs), as `make test` runs.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { launchChromium, waitForServer } from "./server.mjs";

if (process.getuid() !== 0) throw new Error("the front door's end-to-end test mounts a tmpfs: run it as root");
const here = resolve(import.meta.dirname, "..");
const pic = process.env.PIC_BIN ?? resolve(here, "../target/debug/pic");
const port = 4000 + Math.floor(Math.random() * 90);
const frontDoor = port + 100;
const base = `http://127.0.0.1:${frontDoor}`;
const artifacts = join(here, "e2e-artifacts");
mkdirSync(artifacts, { recursive: true });
const disk = mkdtempSync(join(tmpdir(), "pic-e2e-front-door-"));
execFileSync("mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", disk]);

const server = spawn(pic, ["--state", join(disk, "state"), "serve", "--listen", `127.0.0.1:${port}`,
  "--front-door", `127.0.0.1:${frontDoor}`, "--wireguard", "off", "--no-containers", "--webui", join(here, "dist")],
  { stdio: ["ignore", "ignore", "inherit"] });


const browser = await launchChromium();
let failed = false;
try {
  await waitForServer(base);
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } });
  const answer = await page.goto(base);
  assert.equal(answer.status(), 503, "the blocked device's page is a 503");
  await page.getByRole("heading", { name: "PIC cannot start" }).waitFor();
  const alert = await page.getByRole("alert").textContent();
  assert.match(alert, /The data partition is full: \d+ MB free of \d+ MB; PIC needs at least 300 MB free/);
  assert.equal(await page.getByRole("list", { name: "Steps" }).getByRole("listitem").count(), 1);
  const status = await (await fetch(`${base}/api/setup/status`)).json();
  assert.equal(status.device.phase, "blocked");
  assert.equal(status.device.problem.code, "data_partition_full");
  await page.screenshot({ path: join(artifacts, "front-door-blocked.png"), fullPage: true });

  // Room on the data partition: the cell starts by itself, and the page becomes the wizard.
  execFileSync("mount", ["-o", "remount,size=1g", disk]);
  // The watcher looks every second; the page every two: well under 20 s on a busy machine.
  await page.waitForURL("**/setup", { timeout: 20_000 });
  await page.getByLabel("Cell name").waitFor();
  await page.screenshot({ path: join(artifacts, "front-door-wizard.png"), fullPage: true });
  const ready = await (await fetch(`${base}/api/setup/status`)).json();
  assert.equal(ready.device.phase, "ready", JSON.stringify(ready));
  console.log("e2e front door: a full data partition named on the page (503), then the wizard by itself once it had room: ok");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill();
  await new Promise((r) => server.once("exit", r));
  execFileSync("umount", [disk]);
  rmSync(disk, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
