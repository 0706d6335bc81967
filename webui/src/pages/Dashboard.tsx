// The cell at a glance: the current generation, the services and their containers, the peers,
// and what just happened.
import { useCallback, useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { Badge, type Tone, toneOf } from "../components/Badge";
import { api } from "../api/client";
import { type CellEvent, changesState, describeEvent, useEvents } from "../events";
import { type Stop, stoppedText } from "./Containers";

type Container = { service: string; state: string; health?: string | null; restarts: number; stopped?: Stop | null };

export function DashboardPage() {
  const [generation, setGeneration] = useState<number | null>(null);
  const [services, setServices] = useState<string[]>([]);
  const [containers, setContainers] = useState<Container[] | string>([]);
  const [peers, setPeers] = useState({ total: 0, online: 0 });
  const [recent, setRecent] = useState<CellEvent[]>([]);
  const [spaceWarning, setSpaceWarning] = useState<string | null>(null);
  const [backups, setBackups] = useState<BackupHealth | null>(null);

  const load = useCallback(async () => {
    const current = await api.GET("/api/services");
    const body = current.data as { generation: number | null; services: Record<string, unknown> } | undefined;
    setGeneration(body?.generation ?? null);
    setServices(Object.keys(body?.services ?? {}));
    const list = await api.GET("/api/containers");
    setContainers(list.response.ok ? (list.data as Container[]) : "containers are not available");
    const status = await api.GET("/api/setup/status");
    setSpaceWarning((status.data as { device?: { space_warning?: string | null } } | undefined)?.device?.space_warning ?? null);
    const [made, schedule] = await Promise.all([api.GET("/api/backups"), api.GET("/api/backups/schedule")]);
    const newest = ((made.data as { header?: { created?: string } | null }[] | undefined) ?? [])[0]?.header?.created ?? null;
    const plan = schedule.data as { next_run?: string | null; status?: { problem?: string | null } } | undefined;
    setBackups(backupHealth(newest, plan?.next_run ?? null, plan?.status?.problem ?? null));
    const p = await api.GET("/api/peers");
    const devices = (p.data as { status?: { last_handshake?: string | null } | null }[] | undefined) ?? [];
    setPeers({ total: devices.length, online: devices.filter((x) => online(x.status?.last_handshake)).length });
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  const onEvent = useCallback(
    (event: CellEvent) => {
      // Only what can be said in words: progress ticks and unnamed steps are left out.
      if (event.step !== "progress" && describeEvent(event)) setRecent((r) => [event, ...r].slice(0, 8));
      if (changesState(event) || event.step === "disk_nearly_full" || event.step === "scheduled_backup") void load();
    },
    [load],
  );
  useEvents(onEvent);

  return (
    <>
      <h1>Dashboard</h1>
      {spaceWarning && (
        <p role="alert" className="error">
          <span aria-hidden="true">! </span>
          {spaceWarning}
        </p>
      )}
      <section aria-label="summary" className="cards">
        <div className="card">
          <h2>Generation</h2>
          <p className="big" data-testid="current-generation">{generation ?? "none"}</p>
        </div>
        <div className="card">
          <h2>Peers online</h2>
          <p className="big">
            {peers.online} / {peers.total}
          </p>
        </div>
        {backups && (
          <div className="card">
            <h2>Backups</h2>
            <p>
              <Badge tone={backups.tone}>{backups.text}</Badge>
            </p>
            <p>{backups.next}</p>
            <Link to="/backups">See the backups</Link>
          </div>
        )}
        <div className="card">
          <h2>Services</h2>
          <p>{services.join(", ") || "none"}</p>
        </div>
      </section>
      <h2>Containers</h2>
      {typeof containers === "string" ? (
        <p>{containers}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Service</th>
              <th>State</th>
              <th>Health</th>
              <th>Restarts</th>
            </tr>
          </thead>
          <tbody>
            {containers.map((c) => (
              <tr key={c.service}>
                <td>{c.service}</td>
                <td>
                  {c.stopped ? <Badge tone="warn">{stoppedText(c.stopped)}</Badge> : <Badge tone={toneOf(c.state)}>{c.state}</Badge>}
                </td>
                <td>{c.stopped || !c.health ? "—" : <Badge tone={toneOf(c.health)}>{c.health}</Badge>}</td>
                <td>{c.restarts}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>What just happened</h2>
      {recent.length === 0 ? (
        <p>Nothing since this page opened.</p>
      ) : (
        <ul className="events">
          {recent.map((e, i) => (
            <li key={i}>
              {typeof e.time === "string" && <time dateTime={e.time}>{new Date(e.time).toLocaleTimeString()}</time>}{" "}
              {describeEvent(e)?.text}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

/** WireGuard renews a session every two minutes: a handshake within three means connected. */
export function online(lastHandshake: string | null | undefined, now: number = Date.now()): boolean {
  return Boolean(lastHandshake) && now - Date.parse(lastHandshake as string) < 3 * 60 * 1000;
}

export type BackupHealth = { tone: Tone; text: string; next: string };

/** Whether the cell is backed up, in words: the newest archive's age, the schedule's next run
 *  and its last problem. No backup, or none for more than eight days, is a warning. */
export function backupHealth(newest: string | null, nextRun: string | null, problem: string | null, now: number = Date.now()): BackupHealth {
  const next = nextRun ? `Next: ${new Date(nextRun).toLocaleString()}` : "No schedule: backups are made by hand.";
  if (problem) return { tone: "bad", text: `The last scheduled backup failed: ${problem}`, next };
  if (!newest) return { tone: "warn", text: "No backup yet", next };
  const days = Math.floor((now - Date.parse(newest)) / (24 * 3600 * 1000));
  const age = days < 1 ? "today" : days === 1 ? "yesterday" : `${days} days ago`;
  return { tone: days > 8 ? "warn" : "ok", text: `Last backup ${age}`, next };
}
