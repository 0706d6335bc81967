// Every service's log in one place, searchable by service, level, text and time; and how much
// each service logs (`logging.levels` in the config: a change is a generation).
import { useCallback, useEffect, useState } from "react";
import { api } from "../api/client";
import { Field } from "../components/Field";
import { useConfigEditor } from "../config";

type Entry = { timestamp?: string; level?: string; service?: string; fields?: { message?: string } };

const LEVELS = ["error", "warn", "info", "debug"];
// `api` is pic serve itself; the rest are the catalog's services.
const SERVICES = ["api", "proxy", "dns", "dhcp", "ntp", "mail", "calendar", "files", "webmail"];
const NAMES: Record<string, string> = { api: "pic serve (the web UI and API)" };

export function LogsPage() {
  const [q, setQ] = useState("");
  const [level, setLevel] = useState("");
  const [service, setService] = useState("");
  const [since, setSince] = useState("");
  const [entries, setEntries] = useState<Entry[]>([]);

  const search = useCallback(async () => {
    const query: Record<string, string | number> = { limit: 200 };
    if (q) query.q = q;
    if (level) query.level = level;
    if (service) query.service = service;
    if (since) query.since = new Date(since).toISOString();
    const { data } = await api.GET("/api/logs", { params: { query: query as never } });
    setEntries((data as Entry[] | undefined) ?? []);
  }, [q, level, service, since]);
  useEffect(() => {
    void search();
  }, [search]);

  return (
    <>
      <h1>Logs</h1>
      <form
        className="inline"
        aria-label="Search the logs"
        onSubmit={(e) => {
          e.preventDefault();
          void search();
        }}
      >
        <label htmlFor="log_service">Service</label>
        <select id="log_service" value={service} onChange={(e) => setService(e.target.value)}>
          <option value="">all</option>
          {SERVICES.map((s) => (
            <option key={s} value={s}>
              {NAMES[s] ?? s}
            </option>
          ))}
        </select>
        <label htmlFor="log_level">Level</label>
        <select id="log_level" value={level} onChange={(e) => setLevel(e.target.value)}>
          <option value="">any</option>
          {LEVELS.map((l) => (
            <option key={l} value={l}>
              {l} and worse
            </option>
          ))}
        </select>
        <label htmlFor="log_q">Text</label>
        <input id="log_q" value={q} onChange={(e) => setQ(e.target.value)} />
        <label htmlFor="log_since">Since</label>
        <input id="log_since" type="datetime-local" value={since} onChange={(e) => setSince(e.target.value)} />
        <button type="submit">Search</button>
      </form>
      <table>
        <caption>{entries.length === 200 ? "The newest 200 entries that match" : `${entries.length} entries`}</caption>
        <thead>
          <tr>
            <th>Time</th>
            <th>Service</th>
            <th>Level</th>
            <th>Message</th>
          </tr>
        </thead>
        <tbody>
          {entries.map((e, i) => (
            <tr key={i}>
              <td>{e.timestamp?.replace("T", " ").slice(0, 19)}</td>
              <td>{e.service}</td>
              <td>{e.level?.toLowerCase()}</td>
              <td className="message">{e.fields?.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <Verbosity />
    </>
  );
}

/** How much each service logs: a service at `debug` writes what it does in detail. */
function Verbosity() {
  const { config, errors, message, save } = useConfigEditor();
  const [service, setService] = useState("dns");
  const [level, setLevel] = useState("debug");
  if (!config) return null;
  const levels: Record<string, string> = config.logging?.levels ?? {};
  return (
    <section className="card" aria-labelledby="verbosity-title">
      <h2 id="verbosity-title">How much each service logs</h2>
      <p>
        {Object.keys(levels).length
          ? Object.entries(levels)
              .map(([s, l]) => `${NAMES[s] ?? s}: ${l}`)
              .join(", ") + "; the others: info."
          : "Every service logs at info."}
      </p>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          void save((c) => {
            c.logging = { ...(c.logging ?? {}), levels: { ...(c.logging?.levels ?? {}), [service]: level } };
          }, `${NAMES[service] ?? service} logs at ${level}.`);
        }}
      >
        <Field id="verbosity-service" label="Service" error={errors[`logging.levels.${service}`]}>
          <select id="verbosity-service" value={service} onChange={(e) => setService(e.target.value)}>
            {SERVICES.map((s) => (
              <option key={s} value={s}>
                {NAMES[s] ?? s}
              </option>
            ))}
          </select>
        </Field>
        <Field id="verbosity-level" label="Logs at">
          <select id="verbosity-level" value={level} onChange={(e) => setLevel(e.target.value)}>
            {LEVELS.map((l) => (
              <option key={l}>{l}</option>
            ))}
          </select>
        </Field>
        <button type="submit">Set</button>
      </form>
      <p role="status">{message}</p>
    </section>
  );
}
