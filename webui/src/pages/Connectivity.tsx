// Connectivity: exits — VPN providers that chosen devices' internet traffic leaves through —
// with their state, a test through each, a new one from the provider's file, and removal.
import { useCallback, useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { Badge } from "../components/Badge";
import { api, errorMessage } from "../api/client";
import { type CellEvent, useEvents } from "../events";
import { ago } from "./Cells";
import { bytes } from "./Peers";

type ExitStatus = {
  up: boolean;
  problem?: string | null;
  last_handshake?: string | null;
  rx_bytes: number;
  tx_bytes: number;
  devices: string[];
};
type Exit = { name: string; kind: string; endpoint: string; status?: ExitStatus | null };
type Peer = { name: string; address: string };
type TestResult = { ok: boolean; milliseconds?: number | null; error?: string | null };

/** How often the page asks again for the exits' state. */
const REFRESH_MS = 10_000;

export function ConnectivityPage() {
  const [exits, setExits] = useState<Exit[]>([]);
  const [peers, setPeers] = useState<Peer[]>([]);
  const [message, setMessage] = useState("");

  const load = useCallback(async () => {
    const [{ data: exitData }, { data: peerData }] = await Promise.all([api.GET("/api/exits"), api.GET("/api/peers")]);
    setExits((exitData as Exit[] | undefined) ?? []);
    setPeers((peerData as Peer[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
    const timer = window.setInterval(() => void load(), REFRESH_MS);
    return () => window.clearInterval(timer);
  }, [load]);
  useEvents(
    useCallback(
      (e: CellEvent) => {
        if (e.step === "exit_down") setMessage(`Exit ${String(e.exit)} is down: ${String(e.problem ?? "")}`);
        if (e.step === "exit_up") setMessage(`Exit ${String(e.exit)} is up.`);
        if (["exit_down", "exit_up", "done"].includes(String(e.step))) void load();
      },
      [load],
    ),
  );
  const deviceName = (address: string) => peers.find((p) => p.address === address)?.name ?? address;

  const remove = async (exit: Exit) => {
    if (!window.confirm(`Remove the exit ${exit.name}? Its provider's keys are deleted from the cell.`)) return;
    const { error } = await api.DELETE("/api/exits/{name}", { params: { path: { name: exit.name } } });
    setMessage(error ? errorMessage(error) : `The exit ${exit.name} is removed.`);
    await load();
  };

  return (
    <>
      <h1>Connectivity</h1>
      <p>
        Send chosen devices' internet traffic through a VPN provider instead of this cell's own line. If the provider's
        connection drops, their internet traffic stops: it never falls back to your line. Everything else — this cell's
        services, linked cells — stays as it is. Which device goes where is on the <Link to="/routing">Routing</Link>{" "}
        page.
      </p>
      <p role="status">{message}</p>
      <section aria-labelledby="exits-heading">
        <h2 id="exits-heading">Exits</h2>
        {exits.length === 0 && <p>No exit yet. Add one below with the WireGuard file your VPN provider gives you.</p>}
        {exits.map((exit) => (
          <ExitCard key={exit.name} exit={exit} deviceName={deviceName} onRemove={() => remove(exit)} />
        ))}
      </section>
      <AddExit onAdded={(text) => { setMessage(text); void load(); }} />
    </>
  );
}

function ExitCard({ exit, deviceName, onRemove }: { exit: Exit; deviceName: (a: string) => string; onRemove: () => void }) {
  const [test, setTest] = useState<TestResult | null>(null);
  const [testing, setTesting] = useState(false);
  const status = exit.status;
  const run = async () => {
    setTesting(true);
    setTest(null);
    const { data, error } = await api.POST("/api/exits/{name}/test", { params: { path: { name: exit.name } } });
    setTesting(false);
    setTest(error ? { ok: false, error: errorMessage(error) } : (data as TestResult));
  };
  const devices = status?.devices ?? [];
  return (
    <article className="card" aria-label={`Exit ${exit.name}`}>
      <h3>
        {exit.name} <small>({{ openvpn: "OpenVPN", tor: "Tor", wireguard: "WireGuard" }[exit.kind] ?? exit.kind}, {exit.endpoint})</small>
      </h3>
      <p>
        {status?.up ? <Badge tone="ok">Up</Badge> : <Badge tone="bad">Down</Badge>}
        {status && !status.up && status.problem ? ` — ${status.problem}` : ""}
        {status?.last_handshake ? `; last heard from ${ago(status.last_handshake)}` : ""}
        {status && exit.kind === "wireguard" && `; ${bytes(status.rx_bytes)} received, ${bytes(status.tx_bytes)} sent`}.
      </p>
      <p>
        <strong>Devices going out through it:</strong>{" "}
        {devices.length ? devices.map(deviceName).join(", ") : "none yet (choose them on the Routing page)"}
      </p>
      <div className="inline">
        <button type="button" onClick={run} disabled={testing}>
          {testing ? "Testing…" : "Test"}
        </button>
        <button type="button" onClick={onRemove} aria-label={`Remove the exit ${exit.name}`}>
          Remove
        </button>
      </div>
      {test && (
        <p role="status" className={test.ok ? "ok" : "error"}>
          {test.ok
            ? `Works: the provider answered through the exit in ${test.milliseconds} ms.`
            : `Does not work: ${test.error ?? "no answer"}. Devices sent through it have no internet until it works again.`}
        </p>
      )}
    </article>
  );
}

function AddExit({ onAdded }: { onAdded: (message: string) => void }) {
  const [name, setName] = useState("");
  const [kind, setKind] = useState<"wireguard" | "openvpn" | "tor">("wireguard");
  const [file, setFile] = useState("");
  const [dns, setDns] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const read = async (event: React.ChangeEvent<HTMLInputElement>) => {
    const chosen = event.target.files?.[0];
    if (chosen) setFile(await chosen.text());
  };
  const add = async (event: React.FormEvent) => {
    event.preventDefault();
    setError("");
    setBusy(true);
    const body =
      kind === "wireguard"
        ? { name: name.trim(), wireguard: file }
        : kind === "tor"
          ? { name: name.trim(), tor: true }
          : { name: name.trim(), openvpn: file, dns: dns.trim(), username: username || null, password: password || null };
    const { error } = await api.POST("/api/exits", { body: body as never });
    setBusy(false);
    if (error) {
      const details = (error as { error?: { details?: { message: string; hint?: string }[] } }).error?.details ?? [];
      const lines = details.map((d) => (d.hint ? `${d.message} (${d.hint})` : d.message));
      return setError([errorMessage(error), ...lines].join("\n"));
    }
    setName("");
    setFile("");
    setPassword("");
    onAdded(`The exit ${name.trim()} is added. Choose the devices that go out through it on the Routing page.`);
  };
  return (
    <form onSubmit={add} className="card stack" aria-label="Add an exit">
      <h2>Add an exit</h2>
      <label>
        Name (up to 12 letters, digits or hyphens)
        <input value={name} onChange={(e) => setName(e.target.value)} required maxLength={12} pattern="[a-z0-9]([a-z0-9-]*[a-z0-9])?" />
      </label>
      <label>
        The provider's connection
        <select value={kind} onChange={(e) => setKind(e.target.value as "wireguard" | "openvpn" | "tor")}>
          <option value="wireguard">WireGuard (a .conf file)</option>
          <option value="openvpn">OpenVPN (an .ovpn file)</option>
          <option value="tor">Tor (no provider needed)</option>
        </select>
      </label>
      {kind === "tor" ? (
        <p>
          Tor carries web and other TCP traffic and names; everything else of a device sent through it (calls, games,
          other UDP) is blocked. It helps around censorship; it does not make a device anonymous.
        </p>
      ) : (
        <>
          <label>
            The provider's file
            <input type="file" accept={kind === "wireguard" ? ".conf,text/plain" : ".ovpn,.conf,text/plain"} onChange={read} />
          </label>
          <label>
            … or its text
            <textarea rows={6} value={file} onChange={(e) => setFile(e.target.value)} required spellCheck={false} />
          </label>
        </>
      )}
      {kind === "openvpn" && (
        <>
          <label>
            The provider's DNS server (its guide names it)
            <input value={dns} onChange={(e) => setDns(e.target.value)} required inputMode="decimal" placeholder="10.8.0.1" />
          </label>
          <label>
            User name with the provider (if its file asks for one)
            <input value={username} onChange={(e) => setUsername(e.target.value)} autoComplete="off" />
          </label>
          <label>
            Password with the provider
            <input type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />
          </label>
        </>
      )}
      <p>The file's keys and the password are kept in the cell's secrets, never in its config or its history.</p>
      <button type="submit" disabled={busy}>
        {busy ? "Adding…" : "Add exit"}
      </button>
      {error && (
        <p role="alert" className="error" style={{ whiteSpace: "pre-line" }}>
          {error}
        </p>
      )}
    </form>
  );
}
