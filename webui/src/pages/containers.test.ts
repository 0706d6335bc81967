import { describe, expect, it } from "vitest";
import { stopQuestion, stoppedText } from "./Containers";

describe("stopping a service", () => {
  it("says who stopped it and when", () => {
    expect(stoppedText({ by: "alice", at: "2026-11-29T21:04:00Z" })).toMatch(/^stopped by alice at .*2026/);
  });
  it("keeps an unreadable time as it came", () => {
    expect(stoppedText({ by: "root (command line)", at: "soon" })).toBe("stopped by root (command line) at soon");
  });
  it("asks, and says what stops working for the services others depend on", () => {
    expect(stopQuestion("dns")).toContain("look up names");
    expect(stopQuestion("proxy")).toContain("web UI");
    expect(stopQuestion("ntp")).not.toContain("\n");
  });
});
