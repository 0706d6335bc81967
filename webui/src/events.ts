// Live progress from `GET /api/events` (Server-Sent Events): pages reload their data when a
// change is done, whichever tab or client made it, and the frame says what the cell is doing.
import { useEffect, useState } from "react";

export type CellEvent = { step: string; [key: string]: unknown };

type Listener = (event: CellEvent) => void;
const listeners = new Set<Listener>();
let source: EventSource | null = null;

/** One stream per tab, however many parts of the page listen (a browser allows few per origin). */
function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  if (!source) {
    source = new EventSource("/api/events");
    // The server names its events `progress`: `onmessage` would hear only unnamed ones.
    source.addEventListener("progress", (message) => {
      const event = JSON.parse((message as MessageEvent).data) as CellEvent;
      for (const l of listeners) l(event);
    });
  }
  return () => {
    listeners.delete(listener);
    if (listeners.size === 0) {
      source?.close();
      source = null;
    }
  };
}

/** Calls `onEvent` for every event while the page is open; returns the latest one. */
export function useEvents(onEvent?: (event: CellEvent) => void): CellEvent | null {
  const [latest, setLatest] = useState<CellEvent | null>(null);
  useEffect(
    () =>
      subscribe((event) => {
        setLatest(event);
        onEvent?.(event);
      }),
    [onEvent],
  );
  return latest;
}

/** True for the events after which the cell's state may differ. */
export const changesState = (event: CellEvent) =>
  ["done", "rolled_back", "restarted", "stopped", "healthy", "unhealthy"].includes(event.step);

export type Activity = { text: string; busy: boolean; tone: "ok" | "bad" | "busy"; fraction?: number };

const str = (v: unknown) => (typeof v === "string" || typeof v === "number" ? String(v) : "");
const OPERATION: Record<string, string> = { backup: "Backing up", restore: "Restoring", update: "Writing the update" };

/** What an event means to a person, or null for the ones that say nothing new. */
export function describeEvent(e: CellEvent): Activity | null {
  switch (e.step) {
    case "requested":
      return { text: "Working on your change…", busy: true, tone: "busy" };
    case "refused":
      return { text: "A change was refused; nothing changed.", busy: false, tone: "bad" };
    case "switched": {
      const summary = Array.isArray(e.summary) ? e.summary.join("; ") : "";
      return { text: `Generation ${str(e.generation)} is current${summary ? `: ${summary}` : ""}. Applying it…`, busy: true, tone: "busy" };
    }
    case "activating":
      return { text: `Applying the change to ${str(e.service)}…`, busy: true, tone: "busy" };
    case "activation_failed":
      return { text: `${str(e.service)} could not apply the change: ${str(e.error)}`, busy: false, tone: "bad" };
    case "done":
      return e.activated === false || e.generation === null || e.generation === undefined
        ? { text: "Done.", busy: false, tone: "ok" }
        : { text: `Generation ${str(e.generation)} is applied.`, busy: false, tone: "ok" };
    case "healthy":
      return { text: `Generation ${str(e.generation)} is running and healthy.`, busy: false, tone: "ok" };
    case "unhealthy":
      return { text: `Generation ${str(e.generation)} is not healthy: ${str(e.reason)}`, busy: false, tone: "bad" };
    case "rolled_back":
      return { text: `Rolled back from ${str(e.from)} to ${str(e.to)}: ${str(e.reason)}`, busy: false, tone: "bad" };
    case "restarted":
      return { text: `${str(e.service)} was restarted.`, busy: false, tone: "ok" };
    case "stopped":
      return { text: `${str(e.service)} was stopped.`, busy: false, tone: "ok" };
    case "progress": {
      const total = Number(e.total_bytes);
      const fraction = total > 0 ? Number(e.done_bytes) / total : undefined;
      const percent = fraction === undefined ? "" : ` ${Math.floor(fraction * 100)} %`;
      return { text: `${OPERATION[str(e.operation)] ?? str(e.operation)}…${percent}`, busy: true, tone: "busy", fraction };
    }
    case "scheduled_backup": {
      const state = str(e.state);
      if (state === "done") {
        const secrets = e.secrets_included ? "" : " (without the keys and passwords: no backup key)";
        return { text: `Scheduled backup made: ${str(e.archive)}${secrets}.`, busy: false, tone: "ok" };
      }
      if (state === "failed") return { text: `Scheduled backup failed: ${str(e.error)}`, busy: false, tone: "bad" };
      return { text: "Making the scheduled backup…", busy: true, tone: "busy" };
    }
    case "disk_nearly_full":
      return { text: str(e.message), busy: false, tone: "bad" };
    case "app": {
      const state = str(e.state);
      if (state === "done") return { text: `${str(e.app)}: ${str(e.action)} done.`, busy: false, tone: "ok" };
      if (state === "failed") return { text: `${str(e.app)}: ${str(e.action)} failed: ${str(e.error)}`, busy: false, tone: "bad" };
      return { text: `${str(e.app)}: ${state}…`, busy: true, tone: "busy" };
    }
    default:
      return null;
  }
}
