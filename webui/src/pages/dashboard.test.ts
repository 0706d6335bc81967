import { describe, expect, it } from "vitest";
import { backupHealth } from "./Dashboard";

const now = Date.parse("2026-12-01T12:00:00Z");

describe("whether the cell is backed up", () => {
  it("is fine with a recent backup and says when the next one runs", () => {
    const health = backupHealth("2026-12-01T03:30:00Z", "2026-12-02T03:30:00Z", null, now);
    expect([health.tone, health.text]).toEqual(["ok", "Last backup today"]);
    expect(health.next).toMatch(/^Next: /);
  });
  it("warns without any backup, or with an old one", () => {
    expect(backupHealth(null, null, null, now)).toMatchObject({ tone: "warn", text: "No backup yet" });
    expect(backupHealth("2026-11-20T03:30:00Z", null, null, now)).toMatchObject({ tone: "warn", text: "Last backup 11 days ago" });
    expect(backupHealth(null, null, null, now).next).toContain("by hand");
  });
  it("says why the schedule failed", () => {
    const health = backupHealth("2026-11-30T03:30:00Z", "2026-12-02T03:30:00Z", "the disk is not mounted", now);
    expect([health.tone, health.text]).toEqual(["bad", "The last scheduled backup failed: the disk is not mounted"]);
  });
});
