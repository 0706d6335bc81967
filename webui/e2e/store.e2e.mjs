// End to end with containers: a real `pic serve` running the example cell in Docker (images from
// `pic images build`, as the tier 3 tests make them), the repository's store index signed with a
// key made here, and Debian's Chromium. DokuWiki is installed from the Store page (its title
// set in the install form), then reached through the cell's Caddy with curl; a file uploaded on
// the Files page is read back over WebDAV with curl and the user's password. Needs root and a
// Docker engine (`make test` starts one). Screenshots in e2e-artifacts/.
import { spawn, execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { launchChromium, waitForServer, openPage } from "./server.mjs";

const here = resolve(import.meta.dirname, "..");
const workspace = resolve(here, "..");
const pic = process.env.PIC_BIN ?? resolve(workspace, "target/debug/pic");
const port = 3900 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;
const artifacts = join(here, "e2e-artifacts");
mkdirSync(artifacts, { recursive: true });
const scratch = mkdtempSync(join(tmpdir(), "pic-e2e-store-"));
const state = join(scratch, "state");
const PROXY = "172.20.0.2";
const PASSWORD = "alice-e2e-password";
// Building DokuWiki's image (a cold cache downloads its packages), starting it, its health check.
const INSTALL_LIMIT = 600_000;
// Every container of the example made and started on a busy machine, then the health gate.
const CELL_LIMIT = 300_000;

const run = (program, args, input) =>
  execFileSync(program, args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "inherit"] });
const cli = (args, input = "") => run(pic, ["--state", state, ...args], input);

/** Removes the cell's containers and network (they are named by the machine, not the state). */
function cleanDocker() {
  const ids = run("docker", ["ps", "-aq", "--filter", "label=pic.service"]).split(/\s+/).filter(Boolean);
  if (ids.length) run("docker", ["rm", "-f", ...ids]);
  try {
    execFileSync("docker", ["network", "rm", "cell-network"], { stdio: "ignore" });
  } catch {
    // not there
  }
}

/** An HTTPS request through the cell's Caddy, the certificate checked with the cell CA. */
function https(host, url, extra = []) {
  const out = run("curl", ["-s", "--max-time", "20", "--cacert", join(scratch, "ca.crt"), "--resolve",
    `${host}:443:${PROXY}`, "-w", "\n%{http_code}", ...extra, url]);
  const at = out.lastIndexOf("\n");
  return { code: Number(out.slice(at + 1)), body: out.slice(0, at) };
}

// The store's index, signed with a key made here, which the cell's config trusts.
const index = join(scratch, "index");
cpSync(join(workspace, "store"), index, { recursive: true });
run("minisign", ["-G", "-W", "-f", "-p", join(scratch, "k.pub"), "-s", join(scratch, "k.key")]);
run("minisign", ["-S", "-W", "-s", join(scratch, "k.key"), "-m", join(index, "index.json"),
  ...["dokuwiki", "syncthing", "transmission"].map((a) => join(index, a, "manifest.toml"))]);
const key = readFileSync(join(scratch, "k.pub"), "utf8").split("\n")[1];
const config = JSON.parse(readFileSync(join(workspace, "examples/cell.json"), "utf8"));
config.services.webmail.enabled = false;
// Names outside the cell are asked of nobody: no upstream answers on the cell's gateway here.
config.services.dns.upstreams = ["172.20.0.1"];
config.store = { index, trusted_keys: [key] };
writeFileSync(join(scratch, "cell.json"), JSON.stringify(config));

cleanDocker();
cli(["init", "--config", join(scratch, "cell.json")]);
cli(["switch"]);
cli(["user", "passwd", "alice"], `${PASSWORD}\n`);
writeFileSync(join(scratch, "ca.crt"), cli(["ca", "export"]));

const server = spawn(pic, ["--state", state, "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off",
  "--publish", "none", "--health-timeout", "60", "--monitor-interval", "2", "--webui", join(here, "dist"),
  "--lock", join(workspace, "target/images/test-packages.lock.json"), "--cache", join(workspace, "target/images"),
  "--definitions", join(workspace, "images")], { stdio: ["ignore", "ignore", "inherit"], cwd: workspace });

const browser = await launchChromium();
let failed = false;
let page;
try {
  await waitForServer(base);
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on("dialog", (dialog) => dialog.accept());
  const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

  await page.goto(`${base}/login`);
  await page.getByLabel("User").fill("alice");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await openPage(page, "Store");
  const offered = page.getByRole("listitem", { name: "dokuwiki in the store" });
  await offered.waitFor();
  assert.ok(await offered.locator("img").evaluate((img) => img.decode().then(() => img.naturalWidth > 0)), "the icon loads");
  await shot("store");
  await offered.getByRole("button", { name: "Install dokuwiki" }).click();
  const form = page.getByRole("form", { name: "install dokuwiki" });
  await form.getByLabel("The wiki's title, at the top of every page").fill("E2E family wiki");
  await form.getByRole("button", { name: "Install" }).click();
  await page.getByRole("status", { name: "dokuwiki progress" }).waitFor();
  await shot("store-installing");
  const installed = page.getByRole("listitem", { name: "dokuwiki", exact: true });
  await installed.getByText(/Version .* · running/).waitFor({ timeout: INSTALL_LIMIT });
  await shot("store-installed");
  const wiki = https("wiki.home.cell", "https://wiki.home.cell/doku.php?id=start");
  assert.equal(wiki.code, 200, wiki.body.slice(0, 300));
  assert.match(wiki.body, /E2E family wiki/, "the title set in the install form");

  // Files: the files service must run before alice's folder exists.
  await openPage(page, "Files");
  await page.getByRole("heading", { name: "Files" }).waitFor();
  const started = Date.now();
  while ((await page.getByText("This folder is empty.").count()) === 0) {
    if (Date.now() - started > CELL_LIMIT) {
      throw new Error(`alice's folder did not appear within ${CELL_LIMIT / 1000} s; the page says: ${await page.locator("main").innerText()}`);
    }
    await page.waitForTimeout(1000);
    await page.reload();
  }
  await page.getByLabel("Upload files").setInputFiles({ name: "from-the-browser.txt", mimeType: "text/plain",
    buffer: Buffer.from("uploaded on the Files page\n") });
  await page.getByText("Uploaded from-the-browser.txt.").waitFor();
  await page.getByRole("link", { name: "from-the-browser.txt" }).waitFor();
  await shot("files");
  const dav = https("files.home.cell", "https://files.home.cell/alice/from-the-browser.txt", ["-u", `alice:${PASSWORD}`]);
  assert.equal(dav.code, 200, dav.body);
  assert.equal(dav.body, "uploaded on the Files page\n");
  console.log("e2e store: DokuWiki installed from the Store page and served through Caddy with its title; a file uploaded on the Files page read back over WebDAV: ok");
} catch (error) {
  failed = true;
  console.error(error);
  // What the page and the server said, for the reader of a failed run.
  if (page) console.error(`--- the page ---\n${await page.locator("main").innerText().catch(() => "(none)")}`);
  try {
    const log = readFileSync(join(state, "logs/api.log"), "utf8").trim().split("\n").slice(-30).join("\n");
    console.error(`--- pic serve's log (last lines) ---\n${log}`);
  } catch {
    // no log
  }
} finally {
  await browser.close();
  server.kill();
  cleanDocker();
  rmSync(scratch, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
