// The network services: DNS records and upstreams, the DHCP range and reservations, NTP servers.
// Every change is one new generation, switched to at once.
import { useEffect, useState } from "react";
import { useConfigEditor } from "../config";
import { Field } from "../components/Field";

type DnsRecord = { name: string; type: string; value: string };
type Reservation = { name: string; mac: string; address: string };

export function NetworkPage() {
  const { config, errors, message, save } = useConfigEditor();
  const [record, setRecord] = useState<DnsRecord>({ name: "", type: "A", value: "" });

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
    window.confirm(`Remove the record ${name}? Devices no longer find it by name (a rollback brings it back).`) &&
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
        <ListEditor
          id="dns_upstreams"
          label="Upstream resolvers (comma separated)"
          value={config.services?.dns?.upstreams ?? []}
          error={Object.entries(errors).find(([k]) => k.startsWith("services.dns.upstreams"))?.[1]}
          onSave={(list) => save((c) => (c.services.dns.upstreams = list), "Upstreams saved.")}
        />
      </section>
      <section aria-label="DHCP">
        <h2>DHCP</h2>
        {dhcp?.enabled ? (
          <>
            <RangeEditor
              start={dhcp.range?.start ?? ""}
              end={dhcp.range?.end ?? ""}
              errors={errors}
              onSave={(start, end) => save((c) => (c.services.dhcp.range = { start, end }), "DHCP range saved.")}
            />
            <h3>Reservations</h3>
            <ul>
              {(dhcp.reservations ?? []).map((r: Reservation) => (
                <li key={r.name}>
                  {r.name}: {r.mac} → {r.address}{" "}
                  <button
                    type="button"
                    aria-label={`Remove reservation ${r.name}`}
                    onClick={() =>
                      window.confirm(`Remove the reservation of ${r.name}? It may get another address at its next lease.`) &&
                      save((c) => {
                        c.services.dhcp.reservations = c.services.dhcp.reservations.filter((x: Reservation) => x.name !== r.name);
                      }, `Removed ${r.name}.`)
                    }
                  >
                    Remove
                  </button>
                </li>
              ))}
            </ul>
            <ReservationForm
              index={(dhcp.reservations ?? []).length}
              errors={errors}
              onAdd={(r) => save((c) => (c.services.dhcp.reservations = [...(c.services.dhcp.reservations ?? []), r]), `Reserved ${r.address} for ${r.name}.`)}
            />
          </>
        ) : (
          <p>DHCP is off.</p>
        )}
      </section>
      <section aria-label="NTP">
        <h2>NTP</h2>
        {ntp?.enabled ? (
          <ListEditor
            id="ntp_servers"
            label="Servers to follow (comma separated)"
            value={ntp.servers ?? []}
            error={Object.entries(errors).find(([k]) => k.startsWith("services.ntp"))?.[1]}
            onSave={(list) => save((c) => (c.services.ntp.servers = list), "NTP servers saved.")}
          />
        ) : (
          <p>NTP is off.</p>
        )}
      </section>
    </>
  );
}

/** A comma-separated list, saved as one change. */
export function ListEditor(props: { id: string; label: string; value: string[]; error?: string; onSave: (list: string[]) => void }) {
  const [text, setText] = useState(props.value.join(", "));
  useEffect(() => setText(props.value.join(", ")), [props.value]);
  return (
    <form
      className="inline"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSave(text.split(",").map((x) => x.trim()).filter(Boolean));
      }}
    >
      <Field id={props.id} label={props.label} error={props.error}>
        <input id={props.id} value={text} onChange={(e) => setText(e.target.value)} />
      </Field>
      <button type="submit">Save</button>
    </form>
  );
}

function RangeEditor(props: { start: string; end: string; errors: Record<string, string>; onSave: (start: string, end: string) => void }) {
  const [start, setStart] = useState(props.start);
  const [end, setEnd] = useState(props.end);
  return (
    <form
      className="inline"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSave(start, end);
      }}
    >
      <Field id="dhcp_start" label="Range start" error={props.errors["services.dhcp.range.start"] ?? props.errors["services.dhcp.range"]}>
        <input id="dhcp_start" value={start} onChange={(e) => setStart(e.target.value)} />
      </Field>
      <Field id="dhcp_end" label="Range end" error={props.errors["services.dhcp.range.end"]}>
        <input id="dhcp_end" value={end} onChange={(e) => setEnd(e.target.value)} />
      </Field>
      <button type="submit">Save range</button>
    </form>
  );
}

function ReservationForm(props: { index: number; errors: Record<string, string>; onAdd: (r: Reservation) => Promise<boolean> }) {
  const [r, setR] = useState<Reservation>({ name: "", mac: "", address: "" });
  const at = (field: string) => props.errors[`services.dhcp.reservations[${props.index}].${field}`];
  return (
    <form
      className="inline"
      onSubmit={async (e) => {
        e.preventDefault();
        if (await props.onAdd(r)) setR({ name: "", mac: "", address: "" });
      }}
    >
      <Field id="reservation_name" label="Device" error={at("name")}>
        <input id="reservation_name" value={r.name} onChange={(e) => setR({ ...r, name: e.target.value })} />
      </Field>
      <Field id="reservation_mac" label="MAC address" error={at("mac")}>
        <input id="reservation_mac" value={r.mac} onChange={(e) => setR({ ...r, mac: e.target.value })} />
      </Field>
      <Field id="reservation_address" label="Address" error={at("address")}>
        <input id="reservation_address" value={r.address} onChange={(e) => setR({ ...r, address: e.target.value })} />
      </Field>
      <button type="submit">Reserve</button>
    </form>
  );
}
