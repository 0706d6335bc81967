// The service containers: state, health, restarts; stop, start or restart one; read its log.
// A service an admin stopped stays stopped (through new generations and restarts of the cell)
// until someone starts it again.
import { useCallback, useEffect, useState } from "react";
import { Badge, toneOf } from "../components/Badge";
import { api, errorMessage } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";

export type Stop = { by: string; at: string };
export type Container = {
  name: string;
  service: string;
  state: string;
  status: string;
  image: string;
  health?: string | null;
  restarts: number;
  stopped?: Stop | null;
};

/** What stops working when a service stops, for the services others depend on. */
const DEPENDED_ON: Record<string, string> = {
  dns: "Devices that use the cell's DNS can no longer look up names — the cell's own and the internet's.",
  proxy: "The web UI, calendar, files and webmail can no longer be reached by their names (this page included, if you came through them).",
};

/** "stopped by alice at 29 Nov, 21:04", in the reader's own time zone. */
export function stoppedText(stop: Stop): string {
  const at = new Date(stop.at);
  const when = Number.isNaN(at.getTime()) ? stop.at : at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  return `stopped by ${stop.by} at ${when}`;
}

/** The question to ask before stopping `service`. */
export function stopQuestion(service: string): string {
  const consequence = DEPENDED_ON[service] ? `\n\n${DEPENDED_ON[service]}` : "";
  return `Stop ${service}? It stays stopped, also after changes and restarts, until you start it again.${consequence}`;
}

export function ContainersPage() {
  const [containers, setContainers] = useState<Container[]>([]);
  const [message, setMessage] = useState("");
  const [log, setLog] = useState<{ name: string; text: string } | null>(null);

  const load = useCallback(async () => {
    const { data, error, response } = await api.GET("/api/containers");
    if (response.ok) {
      // The message stays: it tells what the last action did.
      setContainers(data as Container[]);
    } else {
      setContainers([]);
      setMessage(errorMessage(error));
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const act = async (c: Container, action: "start" | "stop" | "restart") => {
    if (action === "stop" && !window.confirm(stopQuestion(c.service))) return;
    const doing = { start: "Starting", stop: "Stopping", restart: "Restarting" }[action];
    const done = { start: "started and healthy", stop: "stopped", restart: "restarted" }[action];
    setMessage(`${doing} ${c.service}…`);
    const { response, error } = await api.POST("/api/containers/{name}/{action}", {
      params: { path: { name: c.name, action } },
    });
    setMessage(response.ok ? `${c.service} ${done}.` : errorMessage(error));
    await load();
  };
  const showLog = async (name: string) => {
    const response = await fetch(`/api/containers/${encodeURIComponent(name)}/logs?tail=200`, { credentials: "same-origin" });
    setLog({ name, text: await response.text() });
  };

  return (
    <>
      <h1>Containers</h1>
      <p role="status">{message}</p>
      <table>
        <thead>
          <tr>
            <th>Service</th>
            <th>State</th>
            <th>Health</th>
            <th>Restarts</th>
            <th>Image</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {containers.map((c) => (
            <tr key={c.name}>
              <td>{c.service}</td>
              <td>
                  {c.stopped ? <Badge tone="warn">{stoppedText(c.stopped)}</Badge> : <Badge tone={toneOf(c.state)}>{c.status || c.state}</Badge>}
                </td>
              <td>{c.stopped || !c.health ? "—" : <Badge tone={toneOf(c.health)}>{c.health}</Badge>}</td>
              <td>{c.restarts}</td>
              <td>{c.image}</td>
              <td className="inline">
                {c.stopped || c.state !== "running" ? (
                  <button type="button" onClick={() => act(c, "start")} aria-label={`Start ${c.service}`}>
                    Start
                  </button>
                ) : (
                  <>
                    <button type="button" onClick={() => act(c, "stop")} aria-label={`Stop ${c.service}`}>
                      Stop
                    </button>
                    <button type="button" onClick={() => act(c, "restart")} aria-label={`Restart ${c.service}`}>
                      Restart
                    </button>
                  </>
                )}
                <button type="button" onClick={() => showLog(c.name)} aria-label={`Log of ${c.service}`}>
                  Log
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {log && (
        <section aria-label={`log of ${log.name}`}>
          <h2>{log.name}</h2>
          <pre className="diff">{log.text || "(empty)"}</pre>
        </section>
      )}
    </>
  );
}
