// The service containers: state, health, restarts; restart one; read its log.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";

type Container = { name: string; service: string; state: string; status: string; image: string; health?: string | null; restarts: number };

export function ContainersPage() {
  const [containers, setContainers] = useState<Container[]>([]);
  const [message, setMessage] = useState("");
  const [log, setLog] = useState<{ name: string; text: string } | null>(null);

  const load = useCallback(async () => {
    const { data, error, response } = await api.GET("/api/containers");
    if (response.ok) {
      setContainers(data as Container[]);
      setMessage("");
    } else {
      setContainers([]);
      setMessage(errorMessage(error));
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const restart = async (name: string) => {
    setMessage(`Restarting ${name}…`);
    const { response, error } = await api.POST("/api/containers/{name}/{action}", {
      params: { path: { name, action: "restart" } },
    });
    setMessage(response.ok ? `${name} restarted.` : errorMessage(error));
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
              <td>{c.status || c.state}</td>
              <td>{c.health ?? "—"}</td>
              <td>{c.restarts}</td>
              <td>{c.image}</td>
              <td className="inline">
                <button type="button" onClick={() => restart(c.name)} aria-label={`Restart ${c.service}`}>
                  Restart
                </button>
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
