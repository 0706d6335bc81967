import { describe, expect, it } from "vitest";
import { changeFor, wayOf } from "./Routing";

describe("a device's way out", () => {
  it("reads split, full and an exit from the peer", () => {
    expect(wayOf({ name: "a", address: "10.8.0.2" })).toBe("split");
    expect(wayOf({ name: "a", address: "10.8.0.2", routing: "full" })).toBe("full");
    expect(wayOf({ name: "a", address: "10.8.0.2", routing: "full", exit: "mullvad" })).toBe("exit:mullvad");
    // An exit is only for a device that routes everything through the cell.
    expect(wayOf({ name: "a", address: "10.8.0.2", routing: "split", exit: "mullvad" })).toBe("split");
  });
  it("turns each choice into the peer change", () => {
    expect(changeFor("split")).toEqual({ routing: "split", exit: null });
    expect(changeFor("full")).toEqual({ routing: "full", exit: null });
    expect(changeFor("exit:my-vpn")).toEqual({ routing: "full", exit: "my-vpn" });
  });
});
