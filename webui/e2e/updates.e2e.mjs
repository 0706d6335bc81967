// End to end: Settings → Updates on a real `pic serve` standing in for a flashed device — its ESP
// a folder, its two root slots files, its kernel command line naming slot A (the places
// `PIC_UPDATE_*` move). The running version and both slots shown; a bundle signed by another key
// refused with the reason; a good one uploaded with progress and waiting in slot B, the restart
// offered. (Restarting, and the device's boots, are the VM tier's: vm-tests/tests/appliance.rs.)
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
const port = 3800 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;

const dir = mkdtempSync(join(tmpdir(), "pic-e2e-updates-"));
const state = join(dir, "s");
const slotA = "0a0a0a0a-0000-4000-8000-00000000000a";
const slotB = "0b0b0b0b-0000-4000-8000-00000000000b";
mkdirSync(join(dir, "esp/loader/entries"), { recursive: true });
writeFileSync(join(dir, "esp/loader/entries/pic-2026.1101.100000.conf"), `version 2026.1101.100000\noptions root=PARTUUID=${slotA} ro\n`);
for (const slot of ["a", "b"]) writeFileSync(join(dir, `slot-${slot}`), Buffer.alloc(4 << 20));
writeFileSync(
  join(dir, "slots.json"),
  JSON.stringify({
    esp: join(dir, "esp"),
    slots: [
      { name: "a", partuuid: slotA, device: join(dir, "slot-a") },
      { name: "b", partuuid: slotB, device: join(dir, "slot-b") },
    ],
  }),
);
writeFileSync(join(dir, "cmdline"), `root=PARTUUID=${slotA} ro quiet\n`);
for (const [name, text] of [["root", "r".repeat(1 << 20)], ["vmlinuz", "kernel"], ["initrd", "initrd"]]) writeFileSync(join(dir, name), text);
// The builder's key and a stranger's: the device trusts the first.
const pack = (key, version, output) =>
  JSON.parse(
    execFileSync(pic, ["--json", "update", "pack", "--root", join(dir, "root"), "--kernel", join(dir, "vmlinuz"), "--initrd", join(dir, "initrd"),
      "--cmdline", "ro quiet", "--image-version", version, "--update-key", join(dir, key), "--output", join(dir, output)]),
  );
const good = pack("builder.key", "2026.1201.090000", "pic-2026.1201.090000.picupd");
pack("stranger.key", "2026.1201.090000", "stranger.picupd");
writeFileSync(join(dir, "trusted.pub"), `${good.public_key}\n`);

const config = {
  version: 2,
  cell: { name: "home" },
  network: { subnet: "172.20.0.0/24" },
  wireguard: { subnet: "10.8.0.0/24" },
  users: [{ name: "admin", role: "admin" }],
};
writeFileSync(join(dir, "config.json"), JSON.stringify(config));
const cli = (args, input = "") => execFileSync(pic, ["--state", state, ...args], { input, stdio: ["pipe", "ignore", "inherit"] });
cli(["init", "--config", join(dir, "config.json")]);
cli(["user", "passwd", "admin"], `${password}\n`);
cli(["switch"]);
const env = {
  ...process.env,
  PIC_UPDATE_LAYOUT: join(dir, "slots.json"),
  PIC_UPDATE_CMDLINE: join(dir, "cmdline"),
  PIC_UPDATE_TRUSTED_KEY: join(dir, "trusted.pub"),
};
const server = spawn(pic, ["--state", state, "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off", "--no-containers",
  "--webui", join(here, "dist")], { stdio: ["ignore", "ignore", "inherit"], env });

const browser = await launchChromium();
let failed = false;
try {
  await waitForServer(base);
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // phone width
  await page.goto(base);
  await page.getByLabel("User").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await openPage(page, "Settings");
  const updates = page.getByRole("region", { name: "Updates" });
  await updates.getByText("This device runs PIC 2026.1101.100000.").waitFor();
  const slots = updates.getByRole("table", { name: "The device's two system slots" });
  await slots.getByRole("row", { name: /A \(running\) 2026.1101.100000 Good/ }).waitFor();
  await slots.getByRole("row", { name: /B — Empty/ }).waitFor();

  // Another key's bundle: refused, saying why; nothing waits.
  const file = updates.getByLabel("Install an update file (.picupd)");
  await file.setInputFiles(join(dir, "stranger.picupd"));
  await updates.getByRole("status").getByText(/Not installed: .*its signature is not the key this device trusts/).waitFor();
  assert.equal(await updates.getByRole("button", { name: /Restart now/ }).count(), 0);

  // The builder's: uploaded, written into slot B, the restart offered.
  await file.setInputFiles(join(dir, "pic-2026.1201.090000.picupd"));
  await updates.getByRole("status").getByText("Version 2026.1201.090000 is ready in slot B. Restart the device to start it.").waitFor();
  await slots.getByRole("row", { name: /B 2026.1201.090000 Ready, 3 tries/ }).waitFor();
  await updates.getByRole("button", { name: "Restart now to start it" }).waitFor();
  await page.screenshot({ path: join(artifacts, "settings-updates.png"), fullPage: true });
  const status = await page.evaluate(() => fetch("/api/updates").then((r) => r.json()));
  assert.equal(status.slots[1].state, "trying");
  assert.equal(status.slots[1].tries_left, 3);
  console.log("e2e updates: the running version and slots shown, a stranger's bundle refused with the reason, a good one uploaded into slot B and its restart offered: ok");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
