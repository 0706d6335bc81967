// Every page as people meet it, in Debian's Chromium against a real `pic serve`:
// - the main flows with the keyboard alone (setup, log in, add a peer, roll back);
// - every page at 1280 px and 390 px, light and dark: axe-core finds no serious or critical
//   violation, and the page never scrolls sideways (also at 360 px and a tablet's 800 px);
// - no request leaves the cell's origin;
// - screenshots of every page at both widths in e2e-artifacts/pages/ (the README's come from here).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { launchChromium, waitForServer } from "./server.mjs";

const here = resolve(import.meta.dirname, "..");
const pic = process.env.PIC_BIN ?? resolve(here, "../target/debug/pic");
const port = 4000 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;
const artifacts = join(here, "e2e-artifacts", "pages");
mkdirSync(artifacts, { recursive: true });
const state = mkdtempSync(join(tmpdir(), "pic-e2e-pages-"));
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const PASSWORD = "a-good-admin-password";

const server = spawn(pic, ["--state", state, "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off",
  "--no-containers", "--webui", join(here, "dist")], { stdio: ["ignore", "ignore", "inherit"] });
const cli = (args, input = "") => execFileSync(pic, ["--state", state, ...args], { input, stdio: ["pipe", "ignore", "inherit"] });

/** The pages of an admin and of a peer, by path, with the name of their screenshots. */
const ADMIN_PAGES = [
  ["/", "dashboard"], ["/generations", "generations"], ["/backups", "backups"], ["/peers", "peers"],
  ["/routing", "routing"], ["/network", "network"], ["/cells", "cell-network"], ["/connectivity", "connectivity"],
  ["/wireguard", "wireguard"], ["/email", "email"], ["/calendar", "calendar"], ["/files", "files"], ["/store", "store"], ["/certificates", "certificates"],
  ["/containers", "containers"], ["/logs", "logs"], ["/settings", "settings"],
];
const PEER_PAGES = [["/peers", "peer-devices"], ["/files", "peer-files"], ["/settings", "peer-settings"]];

const problems = [];
const outside = new Set();

/** A page whose every request is checked against the cell's origin. */
async function newPage(browser, width, colorScheme = "light") {
  const context = await browser.newContext({ viewport: { width, height: 900 }, colorScheme });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (!["data:", "blob:"].includes(url.protocol) && url.origin !== base) outside.add(request.url());
  });
  page.on("dialog", (dialog) => dialog.accept());
  return page;
}

/** axe-core's serious and critical violations on what the page shows now. */
async function audit(page, where) {
  if (!(await page.evaluate(() => "axe" in window))) await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"] },
    });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  });
  for (const v of violations) problems.push(`${where}: ${v}`);
}

/** Whether the page scrolls sideways, and by what, if it does. */
async function sideways(page, where) {
  const wide = await page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    if (document.documentElement.scrollWidth <= width) return null;
    const culprits = [...document.querySelectorAll("body *")]
      .filter((e) => e.getBoundingClientRect().right > width + 1)
      .slice(0, 3)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ""}${e.className ? `.${String(e.className).split(" ")[0]}` : ""}`);
    return `${document.documentElement.scrollWidth} px wide in ${width} px (${culprits.join(", ")})`;
  });
  if (wide) problems.push(`${where}: scrolls sideways: ${wide}`);
}

/** Presses Tab until the focused element's accessible text matches `name`; fails naming what
 * had focus. The limit is the number of elements the page can focus, plus one round. */
async function tabTo(page, name) {
  const limit = (await page.locator("a[href], button, input, select, textarea, [tabindex]").count()) + 2;
  const seen = [];
  for (let i = 0; i < limit; i++) {
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e) return "";
      const label = e.labels?.[0]?.textContent ?? "";
      return (e.getAttribute("aria-label") ?? label ?? "") + "|" + (e.textContent ?? "");
    });
    seen.push(focused);
    if (focused.split("|").some((text) => (typeof name === "string" ? text.trim() === name : name.test(text)))) return;
  }
  throw new Error(`Tab never reached ${name} in ${limit} presses; focus went: ${seen.join(" → ")}`);
}

async function visit(page, path, shot, width, scheme) {
  await page.goto(base + path);
  await page.getByRole("heading", { level: 1 }).waitFor();
  // The page's data comes after its frame: wait until its requests are answered.
  await page.waitForLoadState("networkidle");
  const where = `${path} at ${width} px (${scheme})`;
  await sideways(page, where);
  const audited = width === 390 || width === 1280;
  if (audited) await audit(page, where);
  if (shot && scheme === "light" && audited) await page.screenshot({ path: join(artifacts, `${shot}-${width}.png`), fullPage: true });
  if (shot && scheme === "dark" && width === 1280) await page.screenshot({ path: join(artifacts, `${shot}-dark.png`), fullPage: true });
}

const browser = await launchChromium();
let failed = false;
try {
  await waitForServer(base);

  // The wizard at a phone's width, then the main flows by keyboard at a desktop's.
  const phone = await newPage(browser, 390);
  await visit(phone, "/setup", "setup", 390, "light");
  await phone.context().close();

  const page = await newPage(browser, 1280);
  await page.goto(base);
  await page.waitForURL("**/setup");
  await tabTo(page, "Cell name");
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.type("home");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Time zone" }).waitFor();
  await audit(page, "setup: time zone");
  await tabTo(page, "Time zone");
  await page.keyboard.press("ControlOrMeta+A");
  await page.keyboard.type("Europe/Berlin");
  await page.keyboard.press("Escape");
  await tabTo(page, "Next");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Administrator" }).waitFor();
  await tabTo(page, "Administrator password");
  await page.keyboard.type(PASSWORD);
  await page.getByText(/Strength: (good|strong)/).waitFor();
  await audit(page, "setup: administrator");
  await tabTo(page, "The same password again");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Services" }).waitFor();
  await audit(page, "setup: services");
  await tabTo(page, "Next");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Create" }).waitFor();
  await audit(page, "setup: create");
  await tabTo(page, "Create the cell");
  await page.keyboard.press("Enter");
  await page.waitForURL("**/login");
  await visit(page, "/login", "login", 1280, "light");
  await tabTo(page, "Password");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByTestId("current-generation").filter({ hasText: "1" }).waitFor();

  // A peer, added by keyboard from the sidebar.
  await tabTo(page, "Peers");
  await page.keyboard.press("Enter");
  await page.getByRole("heading", { name: "Peers", level: 1 }).waitFor();
  await tabTo(page, "New device's name");
  await page.keyboard.type("laptop");
  await page.keyboard.press("Enter");
  await page.getByRole("img", { name: /QR code of laptop/ }).waitFor();

  // A DNS record through the API, then a rollback by keyboard: generation 4 is 2 again.
  const status = await page.evaluate(() => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrf_token="))?.split("=")[1] ?? "";
    return fetch("/api/config").then(async (r) => {
      const config = await r.json();
      config.services.dns.records = [{ name: "nas", type: "A", value: "172.20.0.50" }];
      const headers = { "content-type": "application/json", "x-csrf-token": csrf, "if-match": r.headers.get("etag") };
      return fetch("/api/config", { method: "PUT", headers, body: JSON.stringify(config) }).then((put) => put.status);
    });
  });
  assert.equal(status, 200, "the DNS record is accepted");
  await tabTo(page, "Generations");
  await page.keyboard.press("Enter");
  await page.getByText("DNS: added the record nas").waitFor();
  await tabTo(page, "Roll back");
  await page.keyboard.press("Enter");
  await page.getByText("Rolled back.").waitFor();
  await page.locator("tr.current td").first().filter({ hasText: /^2$/ }).waitFor();
  // The CA to trust, with its fingerprint to check, and how on each kind of device.
  await tabTo(page, "Certificates");
  await page.keyboard.press("Enter");
  await page.getByTestId("ca-fingerprint").filter({ hasText: /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/ }).waitFor();
  await page.getByRole("group").filter({ hasText: "iPhone and iPad" }).waitFor();
  await page.context().close();

  // More for the pages to show: a device of a peer user, a backup.
  cli(["user", "add", "bob", "--role", "peer"], "bob-password-123\n");
  cli(["peer", "add", "bob-phone", "--user", "bob"]);

  // Every page, at both widths and in both schemes, and no page wider than a small phone.
  for (const [width, scheme] of [[1280, "light"], [390, "light"], [1280, "dark"], [390, "dark"], [360, "light"], [800, "light"]]) {
    const tour = await newPage(browser, width, scheme);
    await tour.goto(`${base}/login`);
    await tour.getByLabel("Password").fill(PASSWORD);
    await tour.getByRole("button", { name: "Log in" }).click();
    await tour.getByTestId("current-generation").waitFor();
    for (const [path, shot] of ADMIN_PAGES) await visit(tour, path, shot, width, scheme);
    await tour.context().close();
  }
  for (const width of [1280, 390]) {
    const tour = await newPage(browser, width);
    await tour.goto(`${base}/login`);
    await tour.getByLabel("User").fill("bob");
    await tour.getByLabel("Password").fill("bob-password-123");
    await tour.getByRole("button", { name: "Log in" }).click();
    await tour.getByRole("cell", { name: "bob-phone", exact: true }).waitFor();
    for (const [path, shot] of PEER_PAGES) await visit(tour, path, shot, width, "light");
    await tour.context().close();
  }

  assert.deepEqual([...outside], [], "requests left the cell's origin");
  assert.deepEqual(problems, [], `${problems.length} problems:\n${problems.join("\n")}`);
  console.log(`e2e pages: setup, login, a peer and a rollback by keyboard; ${ADMIN_PAGES.length} admin and ${PEER_PAGES.length} peer pages at 1280/390 px, light and dark, and 360/800 px: no serious axe violation, no sideways scroll, no request off the origin: ok`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill();
  rmSync(state, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
