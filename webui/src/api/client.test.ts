import { describe, expect, it } from "vitest";
import { cookie, errorMessage, errorsByField } from "./client";

describe("the API client's helpers", () => {
  it("reads a cookie among others", () => {
    expect(cookie("csrf_token", "a=1; csrf_token=abc%3D; b=2")).toBe("abc=");
    expect(cookie("missing", "a=1")).toBeUndefined();
  });

  it("puts each validation error next to its field", () => {
    const body = {
      error: {
        code: "invalid_config",
        message: "the cell config has 2 problems",
        details: [
          { path: "cell_name", message: "\"Bad Name\" is not a valid name", hint: "use lowercase letters" },
          { path: "admin_password", message: "too short" },
        ],
      },
    };
    expect(errorsByField(body)).toEqual({
      cell_name: "\"Bad Name\" is not a valid name (use lowercase letters)",
      admin_password: "too short",
    });
    expect(errorMessage(body)).toBe("the cell config has 2 problems");
    expect(errorsByField(undefined)).toEqual({});
  });
});

import { online } from "../pages/Dashboard";
import { bytes } from "../pages/Peers";

describe("what the pages show", () => {
  it("counts a peer as online within three minutes of its last handshake", () => {
    const now = Date.parse("2026-11-27T12:00:00Z");
    expect(online("2026-11-27T11:58:30Z", now)).toBe(true);
    expect(online("2026-11-27T11:50:00Z", now)).toBe(false);
    expect(online(null, now)).toBe(false);
  });

  it("prints byte counts for people", () => {
    expect(bytes(0)).toBe("0 B");
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1_234_567)).toBe("1.2 MB");
  });
});
