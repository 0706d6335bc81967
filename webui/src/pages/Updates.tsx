// Settings → Updates: which version runs, what each of the device's two slots holds (good, on
// trial, or rejected with why), an update file uploaded and written into the other slot, and the
// restart into it. A new version is kept only once it comes up healthy; otherwise the device
// comes back on this one by itself.
import { useCallback, useEffect, useState } from "react";
import { api, cookie, errorMessage } from "../api/client";
import { type CellEvent, useEvents } from "../events";

type Slot = {
  name: string;
  booted: boolean;
  version: string | null;
  state: "good" | "trying" | "bad" | "empty";
  tries_left: number | null;
};
type Rejection = { version: string; reason: string; at: string };
type UpdateStatus = {
  supported: boolean;
  reason?: string;
  version?: string | null;
  booted_slot?: string | null;
  boot?: "good" | "trying";
  slots?: Slot[];
  rejected?: Rejection[];
  ready?: boolean;
  not_ready_reason?: string | null;
};

const slotState = (slot: Slot) => {
  switch (slot.state) {
    case "good":
      return "Good";
    case "trying":
      return slot.booted ? "On trial" : `Ready, ${slot.tries_left ?? 0} tries`;
    case "bad":
      return "Rejected";
    default:
      return "Empty";
  }
};

/** Uploads with the browser's upload progress (fetch has none). */
function send(file: File, onProgress: (percent: number) => void): Promise<{ ok: boolean; body: unknown }> {
  return new Promise((resolve) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/updates");
    request.setRequestHeader("content-type", "application/octet-stream");
    request.setRequestHeader("x-csrf-token", cookie("csrf_token") ?? "");
    request.upload.onprogress = (e) => e.lengthComputable && onProgress(Math.round((e.loaded * 100) / e.total));
    request.onload = () => {
      let body: unknown = null;
      try {
        body = JSON.parse(request.responseText);
      } catch {
        body = { message: request.statusText };
      }
      resolve({ ok: request.status >= 200 && request.status < 300, body });
    };
    request.onerror = () => resolve({ ok: false, body: { message: "the upload was interrupted" } });
    request.send(file);
  });
}

export function UpdatesSection() {
  const [status, setStatus] = useState<UpdateStatus | null>(null);
  const [progress, setProgress] = useState<{ what: string; percent: number } | null>(null);
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    const { data } = await api.GET("/api/updates");
    setStatus((data as UpdateStatus | undefined) ?? null);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(
    useCallback((e: CellEvent) => {
      if (e.step !== "progress" || e.operation !== "update") return;
      const total = Number(e.total_bytes) || 1;
      setProgress({ what: "Writing", percent: Math.round((Number(e.done_bytes) * 100) / total) });
    }, []),
  );

  const upload = async (event: React.ChangeEvent<HTMLInputElement>) => {
    const file = event.target.files?.[0];
    event.target.value = "";
    if (!file) return;
    setBusy(true);
    setMessage("");
    setProgress({ what: "Uploading", percent: 0 });
    const { ok, body } = await send(file, (percent) => setProgress({ what: "Uploading", percent }));
    setBusy(false);
    setProgress(null);
    if (ok) {
      const written = body as { version: string; slot: string };
      setMessage(`Version ${written.version} is ready in slot ${written.slot.toUpperCase()}. Restart the device to start it.`);
    } else {
      setMessage(`Not installed: ${errorMessage(body)}`);
    }
    await load();
  };

  const restart = async () => {
    setBusy(true);
    const { error } = await api.POST("/api/updates/reboot");
    if (error) {
      setBusy(false);
      return setMessage(errorMessage(error));
    }
    setMessage("Restarting… this page comes back when the device answers again (a few minutes).");
    // The device goes away, then answers again on the new version (or, if it was not healthy,
    // on this one).
    const started = Date.now();
    const poll = async () => {
      try {
        const response = await fetch("/health", { cache: "no-store" });
        if (response.ok && Date.now() - started > 10_000) {
          setBusy(false);
          setMessage("The device is back.");
          return void load();
        }
      } catch {
        // Not answering yet.
      }
      setTimeout(() => void poll(), 3000);
    };
    setTimeout(() => void poll(), 5000);
  };

  if (!status) return null;
  const waiting = status.slots?.find((s) => !s.booted && s.state === "trying");
  return (
    <section className="card" aria-labelledby="updates_heading">
      <h2 id="updates_heading">Updates</h2>
      {!status.supported ? (
        <p>{status.reason}</p>
      ) : (
        <>
          <p>
            This device runs PIC <strong>{status.version ?? "of unknown version"}</strong>
            {status.boot === "trying" ? ", on trial: it is kept once it has come up healthy." : "."}
          </p>
          <table>
            <caption>The device's two system slots</caption>
            <thead>
              <tr>
                <th scope="col">Slot</th>
                <th scope="col">Version</th>
                <th scope="col">State</th>
              </tr>
            </thead>
            <tbody>
              {status.slots?.map((slot) => (
                <tr key={slot.name}>
                  <td>
                    {slot.name.toUpperCase()}
                    {slot.booted ? " (running)" : ""}
                  </td>
                  <td>{slot.version ?? "—"}</td>
                  <td>{slotState(slot)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {status.rejected && status.rejected.length > 0 && (
            <>
              <h3>Updates the device came back from</h3>
              <ul>
                {status.rejected.map((r) => (
                  <li key={r.version}>
                    {r.version} ({new Date(r.at).toLocaleString()}): {r.reason}
                  </li>
                ))}
              </ul>
            </>
          )}
          {waiting && (
            <p>
              Version {waiting.version} is ready.{" "}
              <button type="button" onClick={restart} disabled={busy}>
                Restart now to start it
              </button>
            </p>
          )}
          {status.ready ? (
            <label>
              Install an update file (.picupd)
              <input type="file" accept=".picupd" onChange={upload} disabled={busy} />
            </label>
          ) : (
            <p>No update can be installed now: {status.not_ready_reason}</p>
          )}
          {progress && (
            <p>
              {progress.what}: <progress max={100} value={progress.percent} aria-label={`${progress.what} the update`} />{" "}
              {progress.percent}%
            </p>
          )}
          <p role="status">{message}</p>
        </>
      )}
    </section>
  );
}
