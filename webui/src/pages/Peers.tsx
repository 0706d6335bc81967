// The VPN peers: the list with their live status, a new peer with its QR code and config file,
// what each may use (its access list), enable or disable, delete.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage, errorsByField } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";
import { useSession } from "../session";
import { Field } from "../components/Field";

/** The services a device reaches over the network, as a person would name them. */
export const DEVICE_SERVICES: Record<string, string> = {
  dns: "Names (DNS)",
  ntp: "Time (NTP)",
  mail: "Mail",
  calendar: "Calendar and contacts",
  files: "Files",
  webmail: "Webmail",
};

/** What a device's access list says, in words. */
export function accessText(access: string[] | null | undefined): string {
  if (access == null) return "every service";
  const known = access.filter((s) => s in DEVICE_SERVICES).map((s) => DEVICE_SERVICES[s]);
  return known.length ? known.join(", ") : "only this web UI";
}

type Peer = {
  name: string;
  address: string;
  routing?: string;
  enabled?: boolean;
  expires?: string | null;
  access?: string[] | null;
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
  const [editing, setEditing] = useState<string | null>(null);
  const [running, setRunning] = useState<string[]>([]);
  const isAdmin = useSession().session?.role === "admin";

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/peers");
    setPeers((data as Peer[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => {
    if (!isAdmin) return;
    void api.GET("/api/services").then(({ data }) => {
      const services = Object.keys((data as { services?: Record<string, unknown> } | undefined)?.services ?? {});
      setRunning(Object.keys(DEVICE_SERVICES).filter((s) => services.includes(s)));
    });
  }, [isAdmin]);
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
    const { response, error } = await api.PATCH("/api/peers/{name}", {
      params: { path: { name: peer.name } },
      body: { enabled: !(peer.enabled ?? true) } as never,
    });
    setMessage(response.ok ? "" : errorMessage(error));
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
      {editing && peers.some((p) => p.name === editing) && (
        <AccessEditor
          key={editing}
          peer={peers.find((p) => p.name === editing) as Peer}
          services={running}
          onDone={async () => {
            setEditing(null);
            await load();
          }}
        />
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
            <th>May use</th>
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
                {accessText(p.access)}
                {isAdmin && (
                  <button type="button" onClick={() => setEditing(p.name)} aria-label={`Change what ${p.name} may use`}>
                    Change
                  </button>
                )}
              </td>
              <td>
                <button type="button" role="switch" aria-checked={p.enabled !== false} onClick={() => toggle(p)}>
                  {p.enabled === false ? "Off" : "On"}
                  <span className="visually-hidden">: {p.name} may connect</span>
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

/** An admin's form for a device's access list: every service, or the ones ticked. */
function AccessEditor({ peer, services, onDone }: { peer: Peer; services: string[]; onDone: () => void }) {
  const [every, setEvery] = useState(peer.access == null);
  const [chosen, setChosen] = useState<string[]>(peer.access ?? services);
  const [error, setError] = useState("");
  const flip = (service: string) =>
    setChosen((list) => (list.includes(service) ? list.filter((s) => s !== service) : [...list, service]));
  const save = async (event: React.FormEvent) => {
    event.preventDefault();
    const { response, error } = await api.PATCH("/api/peers/{name}", {
      params: { path: { name: peer.name } },
      body: { access: every ? null : chosen } as never,
    });
    if (!response.ok) {
      setError(errorMessage(error));
      return;
    }
    onDone();
  };
  return (
    <form onSubmit={save} className="card" aria-label={`What ${peer.name} may use`}>
      <fieldset>
        <legend>What {peer.name} may use</legend>
        <label className="check">
          <input type="checkbox" checked={every} onChange={(e) => setEvery(e.target.checked)} />
          Every service
        </label>
        {services.map((service) => (
          <label className="check" key={service}>
            <input
              type="checkbox"
              disabled={every}
              checked={every || chosen.includes(service)}
              onChange={() => flip(service)}
            />
            {DEVICE_SERVICES[service]}
          </label>
        ))}
      </fieldset>
      <p>
        The device always reaches this web UI. Anything else it asks for is refused: by the firewall, or with a page
        that says why. Passwords still guard each service.
      </p>
      {error && <p role="alert" className="error">{error}</p>}
      <div className="inline">
        <button type="submit">Save</button>
        <button type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** A byte count for people: 1.2 MB. */
export function bytes(n: number | undefined): string {
  if (!n) return "0 B";
  const units = ["B", "kB", "MB", "GB", "TB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log10(n) / 3));
  return `${(n / 10 ** (3 * i)).toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
