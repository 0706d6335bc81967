// The history: every generation with what it changed (in words, the request as a detail), its
// time and status; the diff between any two;
// switch to one, or roll back after a confirmation. Progress comes from the events.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { Badge } from "../components/Badge";
import { type CellEvent, changesState, useEvents } from "../events";

type Generation = {
  number: number;
  created: string;
  reason: string;
  summary: string[];
  current: boolean;
  failed?: { reason: string } | null;
};
type Diff = { summary: string[]; config: string; services: { service: string; change: string; files: { unified: string }[] }[] };

export function GenerationsPage() {
  const [generations, setGenerations] = useState<Generation[]>([]);
  const [from, setFrom] = useState<number | null>(null);
  const [to, setTo] = useState<number | null>(null);
  const [diff, setDiff] = useState<Diff | null>(null);
  const [message, setMessage] = useState("");

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/generations");
    const list = (data as Generation[] | undefined) ?? [];
    setGenerations(list);
    if (list.length >= 2) {
      setFrom((f) => f ?? list[list.length - 2].number);
      setTo((t) => t ?? list[list.length - 1].number);
    }
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  const progress = useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const showDiff = async () => {
    if (from === null || to === null) return;
    const { data } = await api.GET("/api/generations/{a}/diff/{b}", { params: { path: { a: from, b: to } } });
    setDiff(data as Diff);
  };

  const rollback = async () => {
    if (!window.confirm("Roll back to the generation before the current one?")) return;
    setMessage("Rolling back…");
    const { response, error } = await api.POST("/api/rollback");
    await load();
    setMessage(response.ok ? "Rolled back." : errorMessage(error));
  };

  const switchTo = async (n: number) => {
    if (!window.confirm(`Switch the cell to generation ${n}? Every service runs as it did then; the generations after it stay, to switch back to.`)) return;
    setMessage(`Switching to ${n}…`);
    const { response, error } = await api.POST("/api/generations/{n}/switch", { params: { path: { n } } });
    await load();
    setMessage(response.ok ? `Generation ${n} is current.` : errorMessage(error));
  };

  return (
    <>
      <h1>Generations</h1>
      <p>
        <button type="button" onClick={rollback}>
          Roll back
        </button>{" "}
        <span role="status">{message || (progress ? `last event: ${progress.step}` : "")}</span>
      </p>
      <table>
        <thead>
          <tr>
            <th>#</th>
            <th>Created</th>
            <th>What changed</th>
            <th>Status</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {[...generations].reverse().map((g) => (
            <tr key={g.number} className={g.current ? "current" : undefined}>
              <td>{g.number}</td>
              <td>{new Date(g.created).toLocaleString()}</td>
              <td>
                {g.summary.length > 1 ? (
                  <ul className="plain">
                    {g.summary.map((line) => (
                      <li key={line}>{line}</li>
                    ))}
                  </ul>
                ) : (
                  g.summary[0]
                )}
                <br />
                <small>by {g.reason}</small>
              </td>
              <td>
                {g.current ? (
                  <Badge tone="ok">current</Badge>
                ) : g.failed ? (
                  <Badge tone="bad">failed: {g.failed.reason}</Badge>
                ) : (
                  ""
                )}
              </td>
              <td>
                {!g.current && (
                  <button type="button" onClick={() => switchTo(g.number)} aria-label={`Switch to generation ${g.number}`}>
                    Switch
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Compare</h2>
      <div className="inline">
        <label htmlFor="diff_from">From</label>
        <select id="diff_from" value={from ?? ""} onChange={(e) => setFrom(Number(e.target.value))}>
          {generations.map((g) => (
            <option key={g.number}>{g.number}</option>
          ))}
        </select>
        <label htmlFor="diff_to">To</label>
        <select id="diff_to" value={to ?? ""} onChange={(e) => setTo(Number(e.target.value))}>
          {generations.map((g) => (
            <option key={g.number}>{g.number}</option>
          ))}
        </select>
        <button type="button" onClick={showDiff}>
          Show diff
        </button>
      </div>
      {diff && (
        <section aria-label="diff">
          <ul>
            {diff.summary.map((line) => (
              <li key={line}>{line}</li>
            ))}
          </ul>
          <pre className="diff">{diff.config || "the configs are the same"}</pre>
          {diff.services.map((s) => (
            <details key={s.service} open>
              <summary>
                {s.service} ({s.change})
              </summary>
              <pre className="diff">{s.files.map((f) => f.unified).join("\n")}</pre>
            </details>
          ))}
        </section>
      )}
    </>
  );
}
