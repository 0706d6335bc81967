// What the end-to-end runs share: waiting for a `pic serve` to answer, and Debian's Chromium.
import { chromium } from "playwright-core";

/** Waits for `base`/health to answer: a debug build's start on a busy machine takes well under 30 s. */
export async function waitForServer(base) {
  const limit = 30_000;
  const started = Date.now();
  let seen = "nothing yet";
  while (Date.now() - started < limit) {
    try {
      const response = await fetch(`${base}/health`);
      if (response.ok) return;
      seen = `HTTP ${response.status}`;
    } catch (error) {
      seen = String(error.cause?.code ?? error);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`pic serve did not answer ${base}/health within ${limit / 1000} s; last: ${seen}`);
}

/** Debian's Chromium, headless; no browser is ever downloaded. */
export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
}

/** Opens the main navigation: behind the Menu button at phone widths, always open beside the page. */
export async function openMenu(page) {
  // The frame first (right after logging in, the page may still be the login form).
  await page.locator("nav#main-nav").waitFor({ state: "attached" });
  const menu = page.getByRole("button", { name: "Menu" });
  if ((await menu.isVisible()) && (await menu.getAttribute("aria-expanded")) !== "true") await menu.click();
  return page.getByRole("navigation", { name: "main" });
}

/** Opens a page from the main navigation. */
export async function openPage(page, label) {
  await (await openMenu(page)).getByRole("link", { name: label, exact: true }).click();
}
