import { describe, expect, it } from "vitest";
import { accessText } from "./Peers";

describe("accessText", () => {
  it("says every service when a device has no list", () => {
    expect(accessText(undefined)).toBe("every service");
    expect(accessText(null)).toBe("every service");
  });
  it("names the services of a list as a person would, leaving out what a device cannot reach", () => {
    expect(accessText(["dns", "calendar", "wireguard"])).toBe("Names (DNS), Calendar and contacts");
  });
  it("says only the web UI for an empty list", () => {
    expect(accessText([])).toBe("only this web UI");
  });
});
