// The network services: DNS records and upstreams, the DHCP range and reservations, NTP servers.
// Every change is one new generation, switched to at once.
import { useCallback, useEffect, useState } from "react";
import { type CellConfig, changeConfig, loadConfig } from "../config";
import { type CellEvent, changesState, useEvents } from "../events";
import { Field } from "./Setup";

type DnsRecord = { name: string; type: string; value: string };

export function NetworkPage() {
  const [config, setConfig] = useState<CellConfig | null>(null);
  const [record, setRecord] = useState<DnsRecord>({ name: "", type: "A", value: "" });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");

  const load = useCallback(async () => setConfig((await loadConfig()).config), []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const save = async (change: (c: CellConfig) => void, done: string) => {
    setMessage("Saving…");
    const result = await changeConfig(change);
    if (!result.ok) {
      setErrors(result.fields);
      setMessage(result.message);
      return false;
    }
    setErrors({});
    setMessage(`${done} Generation ${result.generation ?? "?"} is current.`);
    await load();
    return true;
  };

  const records: DnsRecord[] = config?.services?.dns?.records ?? [];
  const index = records.length;
  const addRecord = async (event: React.FormEvent) => {
    event.preventDefault();
    const ok = await save((c) => {
      c.services.dns.records = [...(c.services.dns.records ?? []), record];
    }, `Added ${record.name}.`);
    if (ok) setRecord({ name: "", type: "A", value: "" });
  };
  const removeRecord = (name: string) =>
    save((c) => {
      c.services.dns.records = c.services.dns.records.filter((r: DnsRecord) => r.name !== name);
    }, `Removed ${name}.`);

  if (!config) return <p>Loading…</p>;
  const dhcp = config.services?.dhcp;
  const ntp = config.services?.ntp;
  return (
    <>
      <h1>Network services</h1>
      <p role="status">{message}</p>
      <section aria-label="DNS">
        <h2>DNS records</h2>
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Type</th>
              <th>Value</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {records.map((r) => (
              <tr key={r.name + r.type}>
                <td>{r.name}</td>
                <td>{r.type}</td>
                <td>{r.value}</td>
                <td>
                  <button type="button" onClick={() => removeRecord(r.name)} aria-label={`Remove record ${r.name}`}>
                    Remove
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <form onSubmit={addRecord} className="inline">
          <Field id="record_name" label="Name" error={errors[`services.dns.records[${index}].name`]}>
            <input id="record_name" value={record.name} onChange={(e) => setRecord({ ...record, name: e.target.value })} />
          </Field>
          <Field id="record_type" label="Type">
            <select id="record_type" value={record.type} onChange={(e) => setRecord({ ...record, type: e.target.value })}>
              {["A", "AAAA", "CNAME", "TXT", "MX"].map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          </Field>
          <Field id="record_value" label="Value" error={errors[`services.dns.records[${index}].value`]}>
            <input id="record_value" value={record.value} onChange={(e) => setRecord({ ...record, value: e.target.value })} />
          </Field>
          <button type="submit">Add record</button>
        </form>
        <p>Upstream resolvers: {(config.services?.dns?.upstreams ?? []).join(", ") || "none"}</p>
      </section>
      <section aria-label="DHCP">
        <h2>DHCP</h2>
        {dhcp?.enabled ? (
          <>
            <p>
              Range {dhcp.range?.start} – {dhcp.range?.end}
            </p>
            <ul>
              {(dhcp.reservations ?? []).map((r: { name: string; mac: string; address: string }) => (
                <li key={r.name}>
                  {r.name}: {r.mac} → {r.address}
                </li>
              ))}
            </ul>
          </>
        ) : (
          <p>DHCP is off.</p>
        )}
      </section>
      <section aria-label="NTP">
        <h2>NTP</h2>
        <p>{ntp?.enabled ? `Follows ${(ntp.servers ?? []).join(", ")}` : "NTP is off."}</p>
      </section>
    </>
  );
}
