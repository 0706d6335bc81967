// The VPN peers: the list with their live status, a new peer with its QR code and config file,
// enable or disable, delete.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage, errorsByField } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";
import { Field } from "./Setup";

type Peer = {
  name: string;
  address: string;
  routing?: string;
  enabled?: boolean;
  expires?: string | null;
  status?: { last_handshake?: string | null; rx_bytes?: number; tx_bytes?: number } | null;
};

export function PeersPage() {
  const [peers, setPeers] = useState<Peer[]>([]);
  const [name, setName] = useState("");
  const [routing, setRouting] = useState("split");
  const [expires, setExpires] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const [added, setAdded] = useState<string | null>(null);

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/peers");
    setPeers((data as Peer[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const add = async (event: React.FormEvent) => {
    event.preventDefault();
    setMessage("Adding…");
    const body: Record<string, string> = { name, routing };
    if (expires) body.expires = new Date(expires).toISOString().replace(/\.\d{3}Z$/, "Z");
    const { response, error } = await api.POST("/api/peers", { body: body as never });
    if (!response.ok) {
      setErrors(errorsByField(error));
      setMessage(errorMessage(error));
      return;
    }
    setErrors({});
    setMessage("");
    setAdded(name);
    setName("");
    await load();
  };

  const toggle = async (peer: Peer) => {
    await api.PATCH("/api/peers/{name}", {
      params: { path: { name: peer.name } },
      body: { enabled: !(peer.enabled ?? true) } as never,
    });
    await load();
  };

  const remove = async (peer: Peer) => {
    if (!window.confirm(`Delete ${peer.name}? Its device loses access.`)) return;
    await api.DELETE("/api/peers/{name}", { params: { path: { name: peer.name } } });
    await load();
  };

  return (
    <>
      <h1>Peers</h1>
      <form onSubmit={add} className="inline">
        <Field id="peer_name" label="New device's name" error={errors.name}>
          <input id="peer_name" value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field id="peer_routing" label="Traffic through the cell">
          <select id="peer_routing" value={routing} onChange={(e) => setRouting(e.target.value)}>
            <option value="split">only the cell's networks</option>
            <option value="full">everything</option>
          </select>
        </Field>
        <Field id="peer_expires" label="Expires (optional)" error={errors.expires}>
          <input id="peer_expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
        </Field>
        <button type="submit">Add peer</button>
      </form>
      {message && <p role="alert" className="error">{message}</p>}
      {added && (
        <section aria-label="new peer" className="card">
          <h2>{added}</h2>
          <p>Scan this with the WireGuard app, or download its config file.</p>
          <img src={`/api/peers/${added}/qr.svg`} alt={`QR code of ${added}'s configuration`} width={240} height={240} />
          <p>
            <a href={`/api/peers/${added}/config`} download={`${added}.conf`}>
              Download {added}.conf
            </a>
          </p>
        </section>
      )}
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Address</th>
            <th>Routing</th>
            <th>Last handshake</th>
            <th>Traffic</th>
            <th>Expires</th>
            <th>Enabled</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {peers.map((p) => (
            <tr key={p.name}>
              <td>{p.name}</td>
              <td>{p.address}</td>
              <td>{p.routing ?? "split"}</td>
              <td>{p.status?.last_handshake ?? "never"}</td>
              <td>{p.status ? `${bytes(p.status.rx_bytes)} in, ${bytes(p.status.tx_bytes)} out` : "—"}</td>
              <td>{p.expires ? new Date(p.expires).toLocaleDateString() : "never"}</td>
              <td>
                <button type="button" onClick={() => toggle(p)} aria-label={`${p.enabled === false ? "Enable" : "Disable"} ${p.name}`}>
                  {p.enabled === false ? "off" : "on"}
                </button>
              </td>
              <td className="inline">
                <button type="button" onClick={() => setAdded(p.name)} aria-label={`Config of ${p.name}`}>
                  Config
                </button>
                <button type="button" onClick={() => remove(p)} aria-label={`Delete ${p.name}`}>
                  Delete
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

/** A byte count for people: 1.2 MB. */
export function bytes(n: number | undefined): string {
  if (!n) return "0 B";
  const units = ["B", "kB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log10(n) / 3));
  return `${(n / 10 ** (3 * i)).toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
