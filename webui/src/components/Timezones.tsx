// The time zones the cell accepts (`/api/setup/timezones`), as a list an input searches as the
// user types (`<input list="timezones">`).
import { useEffect, useState } from "react";
import { api } from "../api/client";

/** The zones, and the `<datalist id="timezones">` to render once on the page. */
export function useTimezoneNames(): [string[], React.ReactNode] {
  const [zones, setZones] = useState<string[]>([]);
  useEffect(() => {
    void api.GET("/api/setup/timezones").then(({ data }) => setZones((data as string[] | undefined) ?? []));
  }, []);
  const list = (
    <datalist id="timezones">
      {zones.map((zone) => (
        <option key={zone} value={zone} />
      ))}
    </datalist>
  );
  return [zones, list];
}

/** Only the `<datalist>`. */
export function useTimezones(): React.ReactNode {
  return useTimezoneNames()[1];
}
