// pic serve's log, searchable: by service, level and text.
import { useCallback, useEffect, useState } from "react";
import { api } from "../api/client";

type Entry = { timestamp?: string; level?: string; fields?: { message?: string }; target?: string };

export function LogsPage() {
  const [q, setQ] = useState("");
  const [level, setLevel] = useState("");
  const [entries, setEntries] = useState<Entry[]>([]);

  const search = useCallback(async () => {
    const query: Record<string, string | number> = { limit: 200 };
    if (q) query.q = q;
    if (level) query.level = level;
    const { data } = await api.GET("/api/logs", { params: { query: query as never } });
    setEntries((data as Entry[] | undefined) ?? []);
  }, [q, level]);
  useEffect(() => {
    void search();
  }, [search]);

  return (
    <>
      <h1>Logs</h1>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void search();
        }}
      >
        <label htmlFor="log_q">Text</label>
        <input id="log_q" value={q} onChange={(e) => setQ(e.target.value)} />
        <label htmlFor="log_level">Level</label>
        <select id="log_level" value={level} onChange={(e) => setLevel(e.target.value)}>
          <option value="">any</option>
          {["error", "warn", "info", "debug"].map((l) => (
            <option key={l}>{l}</option>
          ))}
        </select>
        <button type="submit">Search</button>
      </form>
      <table>
        <tbody>
          {entries.map((e, i) => (
            <tr key={i}>
              <td>{e.timestamp}</td>
              <td>{e.level}</td>
              <td>{e.fields?.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
