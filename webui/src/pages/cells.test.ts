import { describe, expect, it } from "vitest";
import { ago, servicesText } from "./Cells";

describe("servicesText", () => {
  it("names what a linked cell shares as a person would", () => {
    expect(servicesText(["calendar", "files"])).toBe("Calendar and contacts, Files");
  });
  it("says nothing for no grant, and keeps a name it does not know (an app)", () => {
    expect(servicesText([])).toBe("nothing");
    expect(servicesText(undefined)).toBe("nothing");
    expect(servicesText(["dokuwiki"])).toBe("dokuwiki");
  });
});

describe("ago", () => {
  const now = Date.parse("2026-11-30T12:00:00Z");
  it("says how long ago, in the unit that reads best", () => {
    expect(ago("2026-11-30T11:59:18Z", now)).toBe("42 s ago");
    expect(ago("2026-11-30T11:55:00Z", now)).toBe("5 min ago");
    expect(ago("2026-11-30T07:00:00Z", now)).toBe("5 h ago");
    expect(ago("2026-11-25T12:00:00Z", now)).toBe("5 days ago");
  });
  it("says never without a time, and not a negative age for a clock ahead", () => {
    expect(ago(null, now)).toBe("never");
    expect(ago("2026-11-30T12:00:30Z", now)).toBe("0 s ago");
  });
});
