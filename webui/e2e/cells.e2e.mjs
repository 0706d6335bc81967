// End to end: the Cell Network page on two real cells (`pic serve` on two temporary states, on
// loopback), each driven in Debian's Chromium by its own admin. Cell A invites with a grant;
// cell B accepts in its page (the exchange runs between the two servers); both list the link;
// A changes what B may use; a broken invitation is refused with the reason; B removes the link.
// The tunnel itself is tested by the Rust tier (runtime/tests/cell_link.rs): here WireGuard is
// off, so B cannot tell A of the removal and says so.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { launchChromium, waitForServer, openPage } from "./server.mjs";

const here = resolve(import.meta.dirname, "..");
const pic = process.env.PIC_BIN ?? resolve(here, "../target/debug/pic");
const artifacts = join(here, "e2e-artifacts");
mkdirSync(artifacts, { recursive: true });
const password = "cell-admin-password";
const firstPort = 3800 + Math.floor(Math.random() * 45) * 2;

/** A cell with WireGuard in its config (links are WireGuard peers), its admin, and `pic serve`. */
function makeCell(name, n, port) {
  const state = mkdtempSync(join(tmpdir(), `pic-e2e-${name}-`));
  const config = {
    version: 2,
    cell: { name },
    network: { subnet: `172.${20 + n}.0.0/24` },
    wireguard: { subnet: `10.${8 + n}.0.0/24`, endpoint: `${name}.example.net:51820` },
    services: { calendar: { enabled: true, users: ["admin"] }, files: { enabled: true, users: ["admin"] } },
    users: [{ name: "admin", role: "admin" }],
  };
  const file = join(state, "config.json");
  writeFileSync(file, JSON.stringify(config));
  const cli = (args, input = "") => execFileSync(pic, ["--state", join(state, "s"), ...args], { input, stdio: ["pipe", "ignore", "inherit"] });
  cli(["init", "--config", file]);
  cli(["user", "passwd", "admin"], `${password}\n`);
  cli(["switch"]);
  const server = spawn(pic, ["--state", join(state, "s"), "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off",
    "--no-containers", "--webui", join(here, "dist")], { stdio: ["ignore", "ignore", "inherit"] });
  return { name, state, server, base: `http://127.0.0.1:${port}` };
}

const a = makeCell("a", 0, firstPort);
const b = makeCell("b", 1, firstPort + 1);
const browser = await launchChromium();
let failed = false;
try {
  await Promise.all([waitForServer(a.base), waitForServer(b.base)]);
  const open = async (cell) => {
    const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // phone width
    page.on("dialog", (dialog) => dialog.accept());
    await page.goto(cell.base);
    await page.getByLabel("User").fill("admin");
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Log in" }).click();
    await openPage(page, "Cell Network");
    await page.getByRole("heading", { name: "Cell Network", level: 1 }).waitFor();
    return page;
  };
  const pageA = await open(a);
  const pageB = await open(b);
  await pageA.getByText("No linked cell yet.").waitFor();

  // A invites, sharing its calendar; the invitation is accepted at A's loopback address here.
  const invite = pageA.getByRole("form", { name: "Invite a cell" });
  await invite.getByLabel("Calendar and contacts").check();
  await invite.getByText("Advanced").click();
  await invite.getByLabel(/Where the other cell reaches this one/).fill(a.base);
  await invite.getByRole("button", { name: "Make an invitation" }).click();
  const tokenBox = invite.getByLabel(/^Invitation \(give it/);
  await tokenBox.waitFor();
  const token = await tokenBox.inputValue();
  assert.match(token, /^pic-link1\./);
  await pageA.screenshot({ path: join(artifacts, "cells-invite.png"), fullPage: true });

  // A broken invitation is refused with the reason, and nothing changes.
  const accept = pageB.getByRole("form", { name: "Accept an invitation" });
  await accept.getByLabel("Invitation from another cell").fill(`${token.slice(0, -6)}AAAAAA`);
  await accept.getByRole("button", { name: "Link" }).click();
  await accept.getByRole("alert").waitFor();
  assert.match(await accept.getByRole("alert").innerText(), /signature|invitation/i);

  // B accepts, sharing its files back.
  await accept.getByLabel("Invitation from another cell").fill(token);
  await accept.getByLabel("Files").check();
  await accept.getByRole("button", { name: "Link" }).click();
  await pageB.getByText("Linked with a (a.cell).").waitFor();
  const cardB = pageB.getByRole("article", { name: "Linked cell a" });
  await cardB.getByText("Calendar and contacts", { exact: false }).first().waitFor();
  assert.ok(await cardB.getByRole("form", { name: "What a may use" }).getByLabel("Files").isChecked());
  await pageB.screenshot({ path: join(artifacts, "cells-linked.png"), fullPage: true });

  // A lists B at once (the page follows the cell's events), with what the invitation offered.
  const cardA = pageA.getByRole("article", { name: "Linked cell b" });
  await cardA.waitFor();
  const grantsA = cardA.getByRole("form", { name: "What b may use" });
  assert.ok(await grantsA.getByLabel("Calendar and contacts").isChecked());
  // A lets B use its files too: a new generation on A.
  await grantsA.getByLabel("Files").check();
  await grantsA.getByRole("button", { name: "Save" }).click();
  await cardA.getByText(/^Saved\. b may use: Calendar and contacts, Files/).waitFor();
  const listed = await pageA.evaluate(() => fetch("/api/cells").then((r) => r.json()));
  assert.deepEqual(listed[0].grants, ["calendar", "files"]);

  // The same invitation a second time is refused by B (already linked), with the reason.
  await accept.getByLabel("Invitation from another cell").fill(token);
  await accept.getByRole("button", { name: "Link" }).click();
  await accept.getByText(/already linked with a/).waitFor();

  // B removes the link; A cannot be told without the tunnel, and the page says so.
  await cardB.getByRole("button", { name: "Remove the link with a" }).click();
  await pageB.getByText(/The link with a is removed here\. a could not be told/).waitFor();
  await pageB.getByText("No linked cell yet.").waitFor();
  await pageB.screenshot({ path: join(artifacts, "cells-removed.png"), fullPage: true });
  console.log("e2e cells: invitation made on A, a broken one refused on B, accepted on B, listed on both, grants changed on A, a second acceptance refused, removal on B: ok");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  for (const cell of [a, b]) {
    cell.server.kill();
    rmSync(cell.state, { recursive: true, force: true });
  }
}
process.exit(failed ? 1 : 0);
