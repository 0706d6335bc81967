// Cell Network: links with other people's cells — an invitation made or accepted, what each
// linked cell may use here, what it shares with this one, whether its tunnel is up, and removal.
import { useCallback, useEffect, useState } from "react";
import { Badge } from "../components/Badge";
import { api, errorMessage } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";
import { DEVICE_SERVICES, bytes } from "./Peers";

type LinkedCell = {
  name: string;
  domain: string;
  grants: string[];
  up: boolean;
  wireguard?: { last_handshake?: string | null; rx_bytes?: number; tx_bytes?: number } | null;
  last_sync?: string | null;
  offered?: string[];
  error?: string | null;
};

type Invitation = { token: string; expires: string; grants: string[] };

/** How often the page asks again for the tunnels' state (handshakes come every two minutes). */
const REFRESH_MS = 15_000;

/** The services as a person names them, joined; "nothing" for none. */
export function servicesText(list: string[] | undefined): string {
  const named = (list ?? []).map((s) => DEVICE_SERVICES[s] ?? s);
  return named.length ? named.join(", ") : "nothing";
}

/** "2 minutes ago" for an RFC 3339 time, against `now`. */
export function ago(time: string | null | undefined, now: number = Date.now()): string {
  if (!time) return "never";
  const seconds = Math.max(0, Math.round((now - Date.parse(time)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  return hours < 48 ? `${hours} h ago` : `${Math.round(hours / 24)} days ago`;
}

export function CellsPage() {
  const [cells, setCells] = useState<LinkedCell[]>([]);
  const [services, setServices] = useState<string[]>([]);
  const [message, setMessage] = useState("");

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/cells");
    setCells((data as LinkedCell[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [load]);
  useEffect(() => {
    void api.GET("/api/services").then(({ data }) => {
      const running = Object.keys((data as { services?: Record<string, unknown> } | undefined)?.services ?? {});
      setServices(Object.keys(DEVICE_SERVICES).filter((s) => running.includes(s)));
    });
  }, []);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const remove = async (cell: LinkedCell) => {
    if (!window.confirm(`Remove the link with ${cell.name}? Neither cell reaches the other afterwards.`)) return;
    setMessage(`Removing the link with ${cell.name}…`);
    const { data, error } = await api.DELETE("/api/cells/{name}", { params: { path: { name: cell.name } } });
    if (error) return setMessage(errorMessage(error));
    const told = (data as { told_other_cell?: boolean; error?: string | null } | undefined) ?? {};
    setMessage(
      told.told_other_cell
        ? `The link with ${cell.name} is removed, here and on ${cell.name}.`
        : `The link with ${cell.name} is removed here. ${cell.name} could not be told (${told.error ?? "unreachable"}); it removes the link when its admin does.`,
    );
    await load();
  };

  return (
    <>
      <h1>Cell Network</h1>
      <p>
        Link this cell with the cell of family or friends: each side chooses what the other may use — a shared calendar,
        files, mail between you — and nothing else crosses. Names like <em>calendar.their-cell</em> work from your devices,
        and mail to them goes straight to their cell.
      </p>
      <p role="status">{message}</p>
      <section aria-labelledby="linked-heading">
        <h2 id="linked-heading">Linked cells</h2>
        {cells.length === 0 && <p>No linked cell yet. Invite one below, or accept an invitation you were given.</p>}
        {cells.map((cell) => (
          <LinkedCellCard key={cell.name} cell={cell} services={services} onRemove={() => remove(cell)} onSaved={load} />
        ))}
      </section>
      <InviteForm services={services} />
      <AcceptForm services={services} onLinked={(text) => { setMessage(text); void load(); }} />
    </>
  );
}

function LinkedCellCard({
  cell,
  services,
  onRemove,
  onSaved,
}: {
  cell: LinkedCell;
  services: string[];
  onRemove: () => void;
  onSaved: () => Promise<void>;
}) {
  const [chosen, setChosen] = useState<string[]>(cell.grants);
  const [status, setStatus] = useState("");
  useEffect(() => setChosen(cell.grants), [cell.grants]);
  const flip = (service: string) =>
    setChosen((list) => (list.includes(service) ? list.filter((s) => s !== service) : [...list, service]));
  const choices = [...new Set([...services, ...cell.grants])];
  const save = async (event: React.FormEvent) => {
    event.preventDefault();
    setStatus("Saving…");
    const { error } = await api.PUT("/api/cells/{name}/grants", {
      params: { path: { name: cell.name } },
      body: { grants: chosen },
    });
    if (error) return setStatus(errorMessage(error));
    setStatus(`Saved. ${cell.name} may use: ${servicesText(chosen)}. It hears of it within a minute.`);
    await onSaved();
  };
  const handshake = cell.wireguard?.last_handshake;
  return (
    <article className="card" aria-label={`Linked cell ${cell.name}`}>
      <h3>
        {cell.name} <small>({cell.domain})</small>
      </h3>
      <p>
        {cell.up ? <Badge tone="ok">Connected</Badge> : <Badge tone="bad">Not connected</Badge>}
        {" — "}
        {handshake ? `tunnel last heard from ${ago(handshake)}` : "the tunnel has not connected yet"}
        {cell.wireguard && `, ${bytes(cell.wireguard.rx_bytes)} received, ${bytes(cell.wireguard.tx_bytes)} sent`};{" "}
        {cell.last_sync ? `last exchange ${ago(cell.last_sync)}` : "no exchange yet"}.
      </p>
      {cell.error && (
        <p className="error">
          The last exchange with {cell.name} failed: {cell.error}
        </p>
      )}
      <p>
        <strong>{cell.name} shares with you:</strong> {servicesText(cell.offered)}
      </p>
      <form onSubmit={save} aria-label={`What ${cell.name} may use`}>
        <fieldset>
          <legend>What {cell.name} may use here</legend>
          {choices.map((service) => (
            <label className="check" key={service}>
              <input type="checkbox" checked={chosen.includes(service)} onChange={() => flip(service)} />
              {DEVICE_SERVICES[service] ?? service}
            </label>
          ))}
        </fieldset>
        <div className="inline">
          <button type="submit">Save</button>
          <button type="button" onClick={onRemove} aria-label={`Remove the link with ${cell.name}`}>
            Remove link
          </button>
        </div>
        <p role="status">{status}</p>
      </form>
    </article>
  );
}

/** Ticks for the services this cell shares. */
function ServiceChoices({
  legend,
  services,
  chosen,
  onChange,
}: {
  legend: string;
  services: string[];
  chosen: string[];
  onChange: (list: string[]) => void;
}) {
  const flip = (service: string) =>
    onChange(chosen.includes(service) ? chosen.filter((s) => s !== service) : [...chosen, service]);
  return (
    <fieldset>
      <legend>{legend}</legend>
      {services.length === 0 && <p>This cell runs no service it could share.</p>}
      {services.map((service) => (
        <label className="check" key={service}>
          <input type="checkbox" checked={chosen.includes(service)} onChange={() => flip(service)} />
          {DEVICE_SERVICES[service]}
        </label>
      ))}
    </fieldset>
  );
}

function InviteForm({ services }: { services: string[] }) {
  const [chosen, setChosen] = useState<string[]>([]);
  const [hours, setHours] = useState("168");
  const [url, setUrl] = useState("");
  const [invitation, setInvitation] = useState<Invitation | null>(null);
  const [error, setError] = useState("");
  const [copied, setCopied] = useState(false);
  const invite = async (event: React.FormEvent) => {
    event.preventDefault();
    setError("");
    setCopied(false);
    const { data, error } = await api.POST("/api/cells/invitations", {
      body: { grants: chosen, expires_in_hours: Number(hours), url: url.trim() || null },
    });
    if (error) return setError(errorMessage(error));
    setInvitation(data as Invitation);
  };
  const copy = async () => {
    if (!invitation) return;
    await navigator.clipboard?.writeText(invitation.token).then(
      () => setCopied(true),
      () => setCopied(false),
    );
  };
  return (
    <form onSubmit={invite} className="card stack" aria-label="Invite a cell">
      <h2>Invite a cell</h2>
      <ServiceChoices legend="What the invited cell may use here" services={services} chosen={chosen} onChange={setChosen} />
      <label>
        The invitation is valid for
        <select value={hours} onChange={(e) => setHours(e.target.value)}>
          <option value="24">one day</option>
          <option value="168">one week</option>
          <option value="720">30 days</option>
        </select>
      </label>
      <details>
        <summary>Advanced</summary>
        <label>
          Where the other cell reaches this one (leave empty for this cell's public name)
          <input type="url" value={url} onChange={(e) => setUrl(e.target.value)} placeholder="https://cell.example.org" />
        </label>
      </details>
      <button type="submit">Make an invitation</button>
      {error && <p role="alert" className="error">{error}</p>}
      {invitation && (
        <>
          <label>
            Invitation (give it to the other cell's admin; it works once, until{" "}
            {invitation.expires.replace("T", " ").slice(0, 16)} UTC)
            <textarea readOnly rows={4} value={invitation.token} onFocus={(e) => e.currentTarget.select()} />
          </label>
          <button type="button" onClick={copy}>
            Copy
          </button>
          {copied && <span role="status"> Copied.</span>}
        </>
      )}
    </form>
  );
}

function AcceptForm({ services, onLinked }: { services: string[]; onLinked: (message: string) => void }) {
  const [token, setToken] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const accept = async (event: React.FormEvent) => {
    event.preventDefault();
    setError("");
    setBusy(true);
    const { data, error } = await api.POST("/api/cells/accept", { body: { token: token.trim(), grants: chosen } });
    setBusy(false);
    if (error) return setError(errorMessage(error));
    const link = (data as { link?: { name?: string; domain?: string } } | undefined)?.link;
    setToken("");
    setChosen([]);
    onLinked(`Linked with ${link?.name} (${link?.domain}).`);
  };
  return (
    <form onSubmit={accept} className="card stack" aria-label="Accept an invitation">
      <h2>Accept an invitation</h2>
      <label>
        Invitation from another cell
        <textarea rows={4} value={token} onChange={(e) => setToken(e.target.value)} required />
      </label>
      <ServiceChoices legend="What that cell may use here" services={services} chosen={chosen} onChange={setChosen} />
      <button type="submit" disabled={busy}>
        {busy ? "Linking…" : "Link"}
      </button>
      {error && <p role="alert" className="error">{error}</p>}
    </form>
  );
}
