// Backups: make one (secrets only with a passphrase), download, upload, and restore — checked
// first (a dry run shows what would change), then restored as a new generation.
import { useCallback, useEffect, useState } from "react";
import { api, cookie, errorMessage } from "../api/client";
import { type CellEvent, useEvents } from "../events";
import { BackupSchedule } from "./BackupSchedule";

type Header = {
  cell: string;
  created: string;
  generations: number[];
  current_generation: number | null;
  secrets: "encrypted" | "encrypted_to_key" | "omitted";
  data: boolean;
  scheduled?: boolean;
};
type Backup = { id: string; size: number; header: Header | null; problem: string | null };
type Report = {
  dry_run: boolean;
  restored_generations: number[];
  present_generations: number[];
  kept_local_generations: number[];
  new_generation: number | null;
  previous_generation: number | null;
  changed_services: string[];
  config_diff: string;
  secrets: "restored" | "not_in_archive";
  data: string[];
  safety_backup: string | null;
};

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const list = (numbers: number[]) => (numbers.length ? numbers.join(", ") : "none");

export function BackupsPage() {
  const [backups, setBackups] = useState<Backup[]>([]);
  const [message, setMessage] = useState("");
  const [progress, setProgress] = useState<{ operation: string; percent: number } | null>(null);
  const [passphrase, setPassphrase] = useState("");
  const [includeData, setIncludeData] = useState(false);
  const [chosen, setChosen] = useState<Backup | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/backups");
    setBackups((data as Backup[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(
    useCallback((e: CellEvent) => {
      if (e.step !== "progress") return;
      const total = Number(e.total_bytes) || 1;
      setProgress({ operation: String(e.operation), percent: Math.round((Number(e.done_bytes) * 100) / total) });
    }, []),
  );

  const create = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setMessage("");
    const { data, error } = await api.POST("/api/backups", {
      body: { include_data: includeData, passphrase: passphrase || null },
    });
    setBusy(false);
    setProgress(null);
    if (error) return setMessage(errorMessage(error));
    const made = data as Backup;
    setMessage(`Backed up into ${made.id} (${megabytes(made.size)})${passphrase ? "" : " — without the secrets: no passphrase"}.`);
    setPassphrase("");
    await load();
  };

  const upload = async (event: React.ChangeEvent<HTMLInputElement>) => {
    const file = event.target.files?.[0];
    if (!file) return;
    setBusy(true);
    setMessage("");
    // The archive is the body as it is (it can be large): plain fetch rather than JSON.
    const response = await fetch("/api/backups/upload", {
      method: "POST",
      body: file,
      headers: { "content-type": "application/octet-stream", "x-csrf-token": cookie("csrf_token") ?? "" },
      credentials: "same-origin",
    });
    setBusy(false);
    setProgress(null);
    event.target.value = "";
    const body = await response.json();
    setMessage(response.ok ? `Uploaded and checked: ${(body as Backup).id}.` : errorMessage(body));
    await load();
  };

  return (
    <>
      <h1>Backups</h1>
      <BackupSchedule />
      <form onSubmit={create} className="card">
        <h2>Back up now</h2>
        <label>
          Passphrase (encrypts the keys and passwords into the backup; without one they are left out)
          <input type="password" autoComplete="new-password" value={passphrase} onChange={(e) => setPassphrase(e.target.value)} />
        </label>
        <label className="check">
          <input type="checkbox" checked={includeData} onChange={(e) => setIncludeData(e.target.checked)} /> Include the
          services' data (mail, calendars, files)
        </label>
        <button type="submit" disabled={busy}>
          Back up
        </button>
      </form>
      {progress && (
        <p>
          {progress.operation}: <progress max={100} value={progress.percent} aria-label={`${progress.operation} progress`} />{" "}
          {progress.percent}%
        </p>
      )}
      <p role="status">{message}</p>
      <label>
        Upload a backup (.tar.zst)
        <input type="file" accept=".zst" onChange={upload} disabled={busy} />
      </label>
      <table>
        <thead>
          <tr>
            <th>Created</th>
            <th>Generations</th>
            <th>Contents</th>
            <th>Size</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {backups.map((b) => (
            <tr key={b.id}>
              <td title={b.id}>{b.header ? b.header.created.replace("T", " ").slice(0, 16) : "unreadable"}</td>
              <td>{b.header ? list(b.header.generations) : b.problem}</td>
              <td>
                {b.header &&
                  [
                    b.header.scheduled ? "scheduled" : "by hand",
                    b.header.secrets === "omitted" ? "no secrets" : "secrets",
                    b.header.data ? "data" : "no data",
                  ].join(", ")}
              </td>
              <td>{megabytes(b.size)}</td>
              <td>
                <a href={`/api/backups/${encodeURIComponent(b.id)}`} download={b.id}>
                  Download
                </a>{" "}
                {b.header && (
                  <button type="button" onClick={() => setChosen(b)} aria-label={`Restore ${b.id}`}>
                    Restore…
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {chosen && <Restore key={chosen.id} backup={chosen} onDone={load} onClose={() => setChosen(null)} />}
    </>
  );
}

/** Restoring one backup: check it (a dry run), see what would change, then restore. */
function Restore({ backup, onDone, onClose }: { backup: Backup; onDone: () => Promise<void>; onClose: () => void }) {
  const [passphrase, setPassphrase] = useState("");
  const [includeData, setIncludeData] = useState(false);
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const header = backup.header as Header;

  const run = async (dryRun: boolean) => {
    setBusy(true);
    setError("");
    const { data, error } = await api.POST("/api/backups/{id}/restore", {
      params: { path: { id: backup.id } },
      body: { passphrase: passphrase || null, include_data: includeData, dry_run: dryRun },
    });
    setBusy(false);
    if (error) {
      setReport(null);
      return setError(errorMessage(error));
    }
    setReport(data as Report);
    if (!dryRun) await onDone();
  };

  return (
    <section className="card" aria-label="restore">
      <h2>Restore {backup.id}</h2>
      <p>
        Cell {header.cell}, backed up {header.created}; its current generation ({header.current_generation ?? "none"})
        becomes a new generation here, and a rollback undoes the restore.
      </p>
      {header.secrets !== "omitted" && (
        <label>
          Passphrase of the backup
          <input type="password" autoComplete="off" value={passphrase} onChange={(e) => setPassphrase(e.target.value)} />
        </label>
      )}
      {header.data && (
        <label className="check">
          <input type="checkbox" checked={includeData} onChange={(e) => setIncludeData(e.target.checked)} /> Also replace the
          services' data (the current data is set aside)
        </label>
      )}
      <p role="alert">{error}</p>
      {report && (
        <div>
          <p>
            <strong>{report.dry_run ? "Checked: every member matches. A restore would:" : "Restored:"}</strong>
          </p>
          <ul>
            <li>add generations {list(report.restored_generations)}</li>
            {report.kept_local_generations.length > 0 && <li>keep this cell's own generations {list(report.kept_local_generations)}</li>}
            <li>
              make generation {report.new_generation ?? "none"} current (was {report.previous_generation ?? "none"})
            </li>
            <li>change {report.changed_services.length ? report.changed_services.join(", ") : "no services"}</li>
            <li>{report.secrets === "restored" ? "restore the keys and passwords" : "keep this cell's keys and passwords"}</li>
            {report.data.length > 0 && <li>replace the data of {report.data.join(", ")}</li>}
          </ul>
          {report.config_diff && <pre className="diff">{report.config_diff}</pre>}
        </div>
      )}
      <button type="button" onClick={() => run(true)} disabled={busy}>
        Check
      </button>{" "}
      <button
        type="button"
        disabled={busy || !report?.dry_run}
        onClick={() => window.confirm(`Restore ${backup.id}? This becomes generation ${report?.new_generation}.`) && run(false)}
      >
        Restore
      </button>{" "}
      <button type="button" onClick={onClose}>
        Close
      </button>
    </section>
  );
}
