// End to end: a real `pic serve` on a temporary state directory and Debian's Chromium driven by
// playwright-core. A new user's first steps: the setup wizard, login, a peer with its QR code,
// the new generation and its diff, a rollback, a backup restored, logout. Every page is saved as a screenshot in
// e2e-artifacts/ (not committed).
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { launchChromium, waitForServer, openMenu, openPage } from "./server.mjs";

const here = resolve(import.meta.dirname, "..");
const pic = process.env.PIC_BIN ?? resolve(here, "../target/debug/pic");
const port = 3900 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;
const artifacts = join(here, "e2e-artifacts");
mkdirSync(artifacts, { recursive: true });
const state = mkdtempSync(join(tmpdir(), "pic-e2e-"));

const server = spawn(pic, ["--state", state, "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off",
  "--no-containers", "--webui", join(here, "dist")], { stdio: ["ignore", "ignore", "inherit"] });

/** `pic --state <state> ARGS` beside the server (the CLI and the API share the state directory). */
const cli = (args, input = "") => execFileSync(pic, ["--state", state, ...args], { input, stdio: ["pipe", "ignore", "inherit"] });


const browser = await launchChromium();
let failed = false;
try {
  await waitForServer(base);
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // phone width
  // The web UI works under its Content-Security-Policy: nothing it does is refused by it.
  const refusedByPolicy = [];
  page.on("console", (message) => /Content Security Policy/i.test(message.text()) && refusedByPolicy.push(message.text()));
  page.on("dialog", (dialog) => dialog.accept());
  const shot = (name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });

  await page.goto(base);
  await page.waitForURL("**/setup");
  await shot("setup");
  // The wizard, a step at a time; the API's error takes it back to the step of the field it names.
  const next = () => page.getByRole("button", { name: "Next" }).click();
  await page.getByLabel("Cell name").fill("Bad Name");
  await next();
  await page.getByLabel("Time zone").fill("Europe/Berlin");
  await next();
  await page.getByLabel("Administrator password").fill("password1");
  await page.getByText(/Strength: too weak/).waitFor();
  await next();
  await page.locator("#admin_password-error").getByText(/too easy to guess/).waitFor();
  await page.getByLabel("Administrator password").fill("a-good-admin-password");
  await page.getByLabel("The same password again").fill("a-good-admin-password");
  await next();
  await page.getByRole("checkbox", { name: "Calendar and contacts" }).waitFor();
  await next();
  await page.getByText("Europe/Berlin", { exact: true }).waitFor();
  await page.getByRole("button", { name: "Create the cell" }).click();
  await page.locator("#cell_name-error").waitFor();
  await page.getByLabel("Cell name").fill("home");
  for (let step = 0; step < 4; step++) await next();
  await page.getByRole("button", { name: "Create the cell" }).click();
  await page.waitForURL("**/login");
  await shot("login");

  await page.getByLabel("User").fill("admin");
  await page.getByLabel("Password").fill("a-good-admin-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByTestId("current-generation").filter({ hasText: "1" }).waitFor();
  await shot("dashboard");

  await openPage(page, "Peers");
  await page.getByLabel("New device's name").fill("phone");
  await page.getByRole("button", { name: "Add peer" }).click();
  const qr = page.getByRole("img", { name: /QR code of phone/ });
  await qr.waitFor();
  assert.ok(await qr.evaluate((img) => img.decode().then(() => img.naturalWidth > 0)), "the QR code loads");
  await shot("peers");

  // A DNS record: one new generation, switched to at once.
  await openPage(page, "Network");
  await page.getByLabel("Name", { exact: true }).fill("nas");
  await page.getByLabel("Value").fill("172.20.0.50");
  await page.getByRole("button", { name: "Add record" }).click();
  await page.getByText("Generation 3 is current.").waitFor();
  await page.getByRole("cell", { name: "nas", exact: true }).waitFor();
  await shot("network");

  await openPage(page, "Generations");
  await page.locator("tr.current td").first().filter({ hasText: "3" }).waitFor();
  assert.equal(await page.locator("tbody tr").count(), 3, "generations 1, 2 and 3");
  // Each generation says what it changed, in words; the request is a detail.
  const row = (n) => page.locator("tbody tr").filter({ has: page.getByRole("cell", { name: String(n), exact: true }) });
  await row(3).getByText("DNS: added the record nas").waitFor();
  await row(2).getByText("added the device phone").waitFor();
  await row(2).getByText("by POST /api/peers").waitFor();
  await row(1).getByText(/set up the cell/).waitFor();
  await page.getByRole("button", { name: "Show diff" }).click();
  await page.getByRole("region", { name: "diff" }).getByText("DNS: added the record nas").waitFor();
  await page.getByRole("region", { name: "diff" }).getByText(/nas\.home\.cell/).first().waitFor();
  await shot("generations");
  await page.getByRole("button", { name: "Roll back" }).click();
  await page.getByText("Rolled back.").waitFor();
  await page.locator("tr.current td").first().filter({ hasText: /^2$/ }).waitFor();

  // A backup with the secrets, checked (dry run), then restored: generation 4 is generation 2 again.
  await openPage(page, "Backups");
  await page.getByLabel(/^Passphrase/).fill("e2e-backup-passphrase");
  await page.getByRole("button", { name: "Back up" }).click();
  await page.getByText(/Backed up into pic-home-/).waitFor();
  await page.getByRole("button", { name: /^Restore pic-home-/ }).click();
  const restore = page.getByRole("region", { name: "restore" });
  await restore.getByLabel("Passphrase of the backup").fill("e2e-backup-passphrase");
  await restore.getByRole("button", { name: "Check" }).click();
  await restore.getByText("Checked: every member matches.").waitFor();
  await shot("backups");
  await restore.getByRole("button", { name: "Restore", exact: true }).click();
  await restore.getByText("Restored:").waitFor();
  await openPage(page, "Generations");
  await page.locator("tr.current td").first().filter({ hasText: /^4$/ }).waitFor();
  // A change made elsewhere (here: another client of the API) shows without a reload.
  const added = await page.evaluate(() => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrf_token="))?.split("=")[1] ?? "";
    return fetch("/api/peers", {
      method: "POST",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify({ name: "tablet" }),
    }).then((r) => r.status);
  });
  assert.equal(added, 201);
  await page.locator("tr.current td").first().filter({ hasText: /^5$/ }).waitFor();

  // What a device may use: the tablet limited to calendar and contacts (generation 6).
  await openPage(page, "Peers");
  await page.getByRole("button", { name: "Change what tablet may use" }).click();
  const access = page.getByRole("form", { name: "What tablet may use" });
  await access.getByLabel("Every service").uncheck();
  for (const other of ["Names (DNS)", "Files"]) await access.getByLabel(other).uncheck();
  await access.getByRole("button", { name: "Save" }).click();
  await page.getByRole("row", { name: /tablet/ }).getByText("Calendar and contacts", { exact: false }).waitFor();
  const tablet = await page.evaluate(() => fetch("/api/peers/tablet").then((r) => r.json()));
  assert.deepEqual(tablet.access, ["calendar"]);
  await shot("peer-access");

  // The address devices dial, set on the WireGuard page, is in every device's config.
  await openPage(page, "WireGuard");
  await page.getByLabel("Address devices dial (host:port)").fill("vpn.example.org:51820");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await page.getByText(/WireGuard settings saved\. Generation \d+ is current/).waitFor();
  const peerConfig = await page.evaluate(() => fetch("/api/peers/tablet/config").then((r) => r.text()));
  assert.match(peerConfig, /Endpoint = vpn\.example\.org:51820/);
  // A new server key: the page shows it, and every device's config names it.
  const oldKey = await page.locator("dd code").first().textContent();
  await page.getByRole("button", { name: "Make a new server key" }).click();
  await page.getByText(/The server has a new key \(generation 8\)/).waitFor();
  const newKey = await page.locator("dd code").first().textContent();
  assert.notEqual(newKey, oldKey);
  const rekeyed = await page.evaluate(() => fetch("/api/peers/tablet/config").then((r) => r.text()));
  assert.ok(rekeyed.includes(`PublicKey = ${newKey}`), rekeyed);
  // Every change this run made, in words, generation by generation.
  const summaries = await page.evaluate(() =>
    fetch("/api/generations").then((r) => r.json()).then((list) => list.map((g) => `${g.number}: ${g.summary.join("; ")}`)),
  );
  assert.deepEqual(summaries, [
    "1: set up the cell",
    "2: added the device phone",
    "3: DNS: added the record nas",
    "4: no change to the config", // the restore: generation 2's config again, after the rollback to it
    "5: added the device tablet",
    "6: changed the device tablet (access)",
    "7: WireGuard: devices dial vpn.example.org:51820",
    "8: the VPN server's key changed",
  ]);
  // Scheduled backups: weekly on Monday (a generation of its own), then the backup key.
  await openPage(page, "Backups");
  await page.getByLabel("Back up by itself").check();
  await page.getByLabel("How often").selectOption("week");
  await page.getByLabel("On", { exact: true }).selectOption("monday");
  await page.getByLabel("At", { exact: true }).fill("04:15");
  await page.getByLabel(/last … days/).fill("5");
  await page.getByRole("button", { name: "Save the schedule" }).click();
  await page.getByText(/The schedule is saved\. Generation 9 is current/).waitFor();
  await page.getByText(/^Next: .* into /).waitFor();
  await page.getByText("No backup key").first().waitFor();
  await page.getByLabel(/^Backup passphrase/).fill("e2e-backup-passphrase");
  await page.getByLabel("The same again").fill("e2e-backup-passphrase");
  await page.getByRole("button", { name: "Set up the backup key" }).click();
  await page.getByText(/The backup key is set up/).waitFor();
  const schedule = await page.evaluate(() => fetch("/api/backups/schedule").then((r) => r.json()));
  assert.deepEqual([schedule.key, schedule.settings.schedule, schedule.settings.keep], [true, { every: "week", at: "04:15", on: "monday" }, { daily: 5, weekly: 4 }]);
  for (const [link, name] of [["Containers", "containers"], ["Logs", "logs"], ["Email", "email"], ["Calendar", "calendar"], ["WireGuard", "wireguard"], ["Certificates", "certificates"], ["Settings", "settings"]]) {
    await openPage(page, link);
    await page.getByRole("heading", { level: 1 }).waitFor();
    await shot(name);
  }
  // A bad time zone is refused next to its field, and nothing changes.
  await page.getByLabel("Time zone").fill("Mars/Olympus_Mons");
  await page.locator("form", { has: page.getByLabel("Time zone") }).getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("#identity_timezone-error").waitFor();
  // The domain: DuckDNS with a name outside duckdns.org is refused at the name; a right one is a
  // new generation; a malformed token is refused at its field (no credential is kept, so the
  // DDNS client sends nothing anywhere).
  const domainForm = page.locator("form", { has: page.getByLabel("How the cell is reached") });
  await page.getByLabel("How the cell is reached").selectOption("ddns");
  await page.getByLabel("Provider").selectOption("duckdns");
  await page.getByLabel("Name", { exact: true }).fill("mycell.example.org");
  await page.getByLabel(/Your mail address/).fill("owner@example.org");
  await domainForm.getByRole("button", { name: "Save", exact: true }).click();
  await page.locator("#domain_name-error").waitFor();
  await page.getByLabel("Name", { exact: true }).fill("mycell.duckdns.org");
  await domainForm.getByRole("button", { name: "Save", exact: true }).click();
  await domainForm.getByText(/Saved\. Generation \d+ is current/).waitFor();
  await page.getByLabel("DuckDNS token").fill("not-a-token");
  await page.getByRole("button", { name: "Save and test" }).click();
  await page.locator("#domain_credential-error").waitFor();
  // DuckDNS has a record API: the cell gets the certificate itself, and says so (without a
  // credential a renewal is not tried, so nothing is sent).
  await page.getByText(/one certificate covering the name and every name under it/).waitFor();
  await page.getByRole("button", { name: "Renew now" }).waitFor();
  await shot("settings-domain");
  assert.equal((await page.evaluate(() => fetch("/api/domain").then((r) => r.json()))).credential_set, false);
  // The CA certificate is there to download.
  assert.match(await page.evaluate(() => fetch("/api/ca.crt").then((r) => r.text())), /BEGIN CERTIFICATE/);

  await (await openMenu(page)).getByRole("button", { name: "Log out" }).click();
  await page.waitForURL("**/login");

  // A peer sees only their own devices.
  cli(["user", "add", "bob", "--role", "peer"], "bob-password-123\n");
  cli(["peer", "add", "bob-phone", "--user", "bob"]);
  await page.getByLabel("User").fill("bob");
  await page.getByLabel("Password").fill("bob-password-123");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("cell", { name: "bob-phone", exact: true }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Generations" }).count(), 0, "a peer has no admin pages");
  assert.equal(await page.getByRole("cell", { name: "phone", exact: true }).count(), 0, "a peer sees no other device");
  await page.getByRole("button", { name: "Config of bob-phone" }).click();
  const own = page.getByRole("img", { name: /QR code of bob-phone/ });
  assert.ok(await own.evaluate((img) => img.decode().then(() => img.naturalWidth > 0)), "a peer gets their own QR code");
  await shot("peer-view");
  assert.deepEqual(refusedByPolicy, [], "the Content-Security-Policy refused something the web UI does");
  console.log("e2e: setup, login, peer with QR code, DNS record → generation 3 and its diff, rollback, backup and restore → generation 4, a change from elsewhere shown live, a device limited to calendar, pages, logout, a peer's own view: ok");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill();
  rmSync(state, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
