// Routing: what each device's traffic does — only this cell's services, everything through this
// cell's line, or everything through an exit — changed per device.
import { useCallback, useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { api, errorMessage } from "../api/client";
import { type CellEvent, changesState, useEvents } from "../events";

type Peer = { name: string; address: string; routing?: string; exit?: string | null; user?: string | null };
type Exit = { name: string; status?: { up: boolean } | null };

/** A device's way out as one choice: `split`, `full`, or `exit:<name>`. */
export function wayOf(peer: Peer): string {
  if (peer.routing !== "full") return "split";
  return peer.exit ? `exit:${peer.exit}` : "full";
}

/** The peer change that makes `way` a device's way out. */
export function changeFor(way: string): { routing: string; exit: string | null } {
  if (way === "split") return { routing: "split", exit: null };
  if (way === "full") return { routing: "full", exit: null };
  return { routing: "full", exit: way.slice("exit:".length) };
}

export function RoutingPage() {
  const [peers, setPeers] = useState<Peer[]>([]);
  const [exits, setExits] = useState<Exit[]>([]);
  const [message, setMessage] = useState("");
  const load = useCallback(async () => {
    const [{ data: p }, { data: e }] = await Promise.all([api.GET("/api/peers"), api.GET("/api/exits")]);
    setPeers((p as Peer[] | undefined) ?? []);
    setExits((e as Exit[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(useCallback((e: CellEvent) => changesState(e) && void load(), [load]));

  const change = async (peer: Peer, way: string) => {
    const before = wayOf(peer);
    setMessage(`Changing ${peer.name}…`);
    const { error } = await api.PATCH("/api/peers/{name}", {
      params: { path: { name: peer.name } },
      body: changeFor(way) as never,
    });
    if (error) return setMessage(`${peer.name}: ${errorMessage(error)}`);
    const routesChanged = (before === "split") !== (way === "split");
    setMessage(
      `${peer.name} is changed.` +
        (routesChanged ? ` Load its WireGuard config again on the device (Peers page): what it sends through the tunnel changed.` : ""),
    );
    await load();
  };

  return (
    <>
      <h1>Routing</h1>
      <p>
        What each device sends through its tunnel to this cell, and where its internet traffic goes. "Only this
        cell's services": the device reaches the internet directly, as without the VPN. Exits are set up on
        the <Link to="/connectivity">Connectivity</Link> page; a device sent through an exit that is down has no internet
        until it is back — its traffic never takes this cell's own line instead.
      </p>
      <p role="status">{message}</p>
      <table className="fit">
        <thead>
          <tr>
            <th>Device</th>
            <th>Address</th>
            <th>Its traffic</th>
          </tr>
        </thead>
        <tbody>
          {peers.map((peer) => (
            <tr key={peer.name}>
              <td>{peer.name}</td>
              <td>{peer.address}</td>
              <td>
                <select
                  aria-label={`Where ${peer.name}'s traffic goes`}
                  value={wayOf(peer)}
                  onChange={(e) => void change(peer, e.target.value)}
                >
                  <option value="split">Only this cell's services</option>
                  <option value="full">Everything, out through this cell's line</option>
                  {exits.map((exit) => (
                    <option key={exit.name} value={`exit:${exit.name}`}>
                      Everything, out through exit {exit.name}
                      {exit.status?.up === false ? " (down now)" : ""}
                    </option>
                  ))}
                </select>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {peers.length === 0 && <p>No device yet: add one on the Peers page.</p>}
    </>
  );
}
