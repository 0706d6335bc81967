// Live progress from `GET /api/events` (Server-Sent Events): pages reload their data when a
// change is done, whichever tab or client made it.
import { useEffect, useState } from "react";

export type CellEvent = { step: string; [key: string]: unknown };

/** Calls `onEvent` for every event while the page is open; returns the latest one. */
export function useEvents(onEvent?: (event: CellEvent) => void): CellEvent | null {
  const [latest, setLatest] = useState<CellEvent | null>(null);
  useEffect(() => {
    const source = new EventSource("/api/events");
    // The server names its events `progress`: `onmessage` would hear only unnamed ones.
    source.addEventListener("progress", (message) => {
      const event = JSON.parse(message.data) as CellEvent;
      setLatest(event);
      onEvent?.(event);
    });
    return () => source.close();
  }, [onEvent]);
  return latest;
}

/** True for the events after which the cell's state may differ. */
export const changesState = (event: CellEvent) =>
  ["done", "rolled_back", "restarted", "stopped", "healthy", "unhealthy"].includes(event.step);
