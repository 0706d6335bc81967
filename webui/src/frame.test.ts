// The frame's words for events, and the column names tables carry as cards on a phone.
import { describe, expect, it } from "vitest";
import { describeEvent } from "./events";
import { labelTableCells } from "./tables";

describe("describeEvent", () => {
  it("says what the cell is doing in words, busy until it is done", () => {
    expect(describeEvent({ step: "switched", generation: 5, summary: ["added the device phone"] })).toEqual({
      text: "Generation 5 is current: added the device phone. Applying it…",
      busy: true,
      tone: "busy",
    });
    expect(describeEvent({ step: "done", generation: 5 })?.text).toBe("Generation 5 is applied.");
    expect(describeEvent({ step: "done", generation: 5, activated: false })?.text).toBe("Done.");
    expect(describeEvent({ step: "rolled_back", from: 6, to: 5, reason: "dns is unhealthy" })).toMatchObject({ tone: "bad" });
    expect(describeEvent({ step: "progress", operation: "backup", done_bytes: 50, total_bytes: 200 })).toMatchObject({
      text: "Backing up… 25 %",
      fraction: 0.25,
    });
    expect(describeEvent({ step: "disk_nearly_full", message: "The data partition is 95 % full" })).toMatchObject({ tone: "bad" });
    expect(describeEvent({ step: "ddns" })).toBeNull();
  });
});

describe("labelTableCells", () => {
  it("gives each body cell its column's name, also for rows added later", () => {
    document.body.innerHTML =
      "<table><thead><tr><th>Name</th><th>Size</th><th></th></tr></thead><tbody><tr><td>a</td><td>1</td><td><button>x</button></td></tr></tbody></table>";
    labelTableCells(document.body);
    const cells = [...document.querySelectorAll("td")].map((td) => td.getAttribute("data-label"));
    expect(cells).toEqual(["Name", "Size", ""]);
    document.querySelector("tbody")!.insertAdjacentHTML("beforeend", "<tr><td>b</td><td>2</td></tr>");
    labelTableCells(document.body);
    expect(document.querySelectorAll("tbody tr")[1].children[1].getAttribute("data-label")).toBe("Size");
  });
});
