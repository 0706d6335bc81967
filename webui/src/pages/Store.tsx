// Service store: the apps of the cell's index (each signature checked by the cell) and the apps
// installed from it. Installing asks for the app's settings (a form made from its manifest),
// then follows the job: the image is built, the new generation is switched to and started. An
// installed app can be opened, updated to the index's version, or removed — keeping its data, or
// deleting it after it is saved under backups/ (asked twice).
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage, errorsByField } from "../api/client";
import { type CellEvent, useEvents } from "../events";
import { Field } from "../components/Field";

type SettingKind = "string" | "integer" | "boolean" | "secret";
type Setting = { type: SettingKind; description: string; default?: unknown };
type StoreApp = {
  name: string;
  version: string;
  description: string;
  icon?: string;
  site: { host: string };
  access: { peers: boolean; lan: boolean; public: boolean };
  data: string[];
  settings: Record<string, Setting>;
  installed: string | null;
};
type Installed = {
  name: string;
  version: string;
  description: string;
  url: string;
  settings: Record<string, unknown>;
  secrets: string[];
  healthy: boolean | null;
  health_detail: string | null;
};
type Job = { action: string; version: string; state: "building" | "activating" | "failed"; error: string | null };

const JOB_WORDS: Record<Job["state"], string> = {
  building: "Building its image from Debian packages (a minute or two)…",
  activating: "Starting it…",
  failed: "Failed",
};

const reachedBy = (a: StoreApp["access"]) =>
  [a.peers && "your VPN devices", a.lan && "the local network", a.public && "the internet"].filter(Boolean).join(", ") ||
  "nobody";

export function StorePage() {
  const [catalog, setCatalog] = useState<StoreApp[]>([]);
  const [catalogError, setCatalogError] = useState("");
  const [installed, setInstalled] = useState<Installed[]>([]);
  const [jobs, setJobs] = useState<Record<string, Job>>({});
  const [installing, setInstalling] = useState<StoreApp | null>(null);
  const [message, setMessage] = useState("");

  const loadInstalled = useCallback(async () => {
    const { data } = await api.GET("/api/apps");
    const body = data as { apps: Installed[]; jobs: Record<string, Job> } | undefined;
    setInstalled(body?.apps ?? []);
    setJobs(body?.jobs ?? {});
  }, []);
  const load = useCallback(async () => {
    const { data, error } = await api.GET("/api/store");
    if (error) {
      setCatalog([]);
      setCatalogError(errorMessage(error));
    } else {
      setCatalog((data as { apps: StoreApp[] }).apps);
      setCatalogError("");
    }
    await loadInstalled();
  }, [loadInstalled]);
  useEffect(() => {
    void load();
  }, [load]);
  useEvents(
    useCallback(
      (e: CellEvent) => {
        if (e.step === "app" || e.step === "done" || e.step === "rolled_back") void load();
      },
      [load],
    ),
  );
  // While a job runs or an app's first health check is to come, look again every few seconds
  // (the health monitor sends no event; an event can be missed on a reconnect).
  const running =
    Object.values(jobs).some((j) => j.state !== "failed") || installed.some((a) => a.healthy === null);
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => void loadInstalled(), 3000);
    return () => window.clearInterval(timer);
  }, [running, loadInstalled]);

  const update = async (name: string) => {
    setMessage("");
    const { error } = await api.PUT("/api/apps/{name}", { params: { path: { name } }, body: {} });
    if (error) setMessage(errorMessage(error));
    await loadInstalled();
  };
  const remove = async (name: string, purge: boolean) => {
    const question = purge
      ? `Remove ${name} and delete its data? The data is first saved under backups/ on the cell.`
      : `Remove ${name}? Its data is kept: installing it again brings it back.`;
    if (!window.confirm(question)) return;
    setMessage("");
    const { data, error } = await api.DELETE("/api/apps/{name}", {
      params: { path: { name }, query: { purge } },
    });
    if (error) setMessage(errorMessage(error));
    else {
      const saved = (data as { data_saved?: string | null }).data_saved;
      setMessage(saved ? `Removed ${name}; its data was saved in ${saved}.` : `Removed ${name}.`);
    }
    await load();
  };

  return (
    <section aria-labelledby="store-title">
      <h1 id="store-title">Service store</h1>
      {message && <p role="status">{message}</p>}

      <h2>Installed</h2>
      {installed.length === 0 && Object.keys(jobs).length === 0 && <p>No app is installed yet.</p>}
      <ul className="cards" aria-label="installed apps">
        {installed.map((app) => {
          const offered = catalog.find((c) => c.name === app.name);
          const job = jobs[app.name];
          return (
            <li className="card" key={app.name} aria-label={app.name}>
              <h3>{app.name}</h3>
              <p>{app.description}</p>
              <p>
                Version {app.version} ·{" "}
                {app.healthy === null ? "not checked yet" : app.healthy ? "running" : `not healthy: ${app.health_detail}`}
              </p>
              {job && <JobStatus name={app.name} job={job} />}
              <p className="inline">
                <a href={app.url} target="_blank" rel="noreferrer">
                  Open {app.name}
                </a>
                {offered && offered.version !== app.version && (
                  <button type="button" onClick={() => update(app.name)} disabled={Boolean(job && job.state !== "failed")}>
                    Update to {offered.version}
                  </button>
                )}
                <button type="button" onClick={() => remove(app.name, false)}>
                  Remove
                </button>
                <button type="button" onClick={() => remove(app.name, true)}>
                  Remove and delete its data
                </button>
              </p>
            </li>
          );
        })}
        {Object.entries(jobs)
          .filter(([name]) => !installed.some((i) => i.name === name))
          .map(([name, job]) => (
            <li className="card" key={name} aria-label={name}>
              <h3>{name}</h3>
              <JobStatus name={name} job={job} />
            </li>
          ))}
      </ul>

      <h2>Available</h2>
      {catalogError && (
        <p className="error" role="alert">
          The store cannot be opened: {catalogError}
        </p>
      )}
      <ul className="cards" aria-label="available apps">
        {catalog.map((app) => (
          <li className="card" key={app.name} aria-label={`${app.name} in the store`}>
            {app.icon && <img src={`/api/store/${app.name}/icon`} alt="" width={48} height={48} />}
            <h3>{app.name}</h3>
            <p>{app.description}</p>
            <p>
              Version {app.version}; at {app.site.host}.&lt;your cell&gt;; for {reachedBy(app.access)}.
            </p>
            {app.installed ? (
              <p>Installed ({app.installed})</p>
            ) : (
              <button type="button" onClick={() => setInstalling(app)} disabled={Boolean(jobs[app.name])}>
                Install {app.name}
              </button>
            )}
          </li>
        ))}
      </ul>
      {installing && (
        <InstallForm
          app={installing}
          onClose={() => setInstalling(null)}
          onStarted={async () => {
            setInstalling(null);
            await loadInstalled();
          }}
        />
      )}
    </section>
  );
}

function JobStatus({ name, job }: { name: string; job: Job }) {
  return (
    <p role="status" aria-label={`${name} progress`}>
      {job.action === "update" ? "Updating" : "Installing"} {name} {job.version}: {JOB_WORDS[job.state]}
      {job.error && <span className="error"> {job.error}</span>}
    </p>
  );
}

/** The install form: one field per setting of the manifest, typed as it says. */
function InstallForm(props: { app: StoreApp; onClose: () => void; onStarted: () => Promise<void> }) {
  const { app } = props;
  const initial = Object.fromEntries(
    Object.entries(app.settings).map(([name, s]) => [name, s.default ?? (s.type === "boolean" ? false : "")]),
  );
  const [values, setValues] = useState<Record<string, unknown>>(initial);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const settings: Record<string, unknown> = {};
    for (const [name, s] of Object.entries(app.settings)) {
      const value = values[name];
      // An empty secret is made by the cell; an empty optional value takes the default.
      if (value === "" || value === undefined) continue;
      settings[name] = s.type === "integer" ? Number(value) : value;
    }
    const { error } = await api.POST("/api/apps", { body: { name: app.name, settings } });
    setBusy(false);
    if (error) {
      const byField = errorsByField(error);
      const mapped: Record<string, string> = {};
      for (const [path, text] of Object.entries(byField)) {
        const setting = path.match(/settings\.([a-z0-9_]+)$/)?.[1];
        mapped[setting ?? "_"] = text;
      }
      setErrors(mapped);
      setMessage(errorMessage(error));
      return;
    }
    await props.onStarted();
  };

  return (
    <form onSubmit={submit} aria-label={`install ${app.name}`} className="card">
      <h2>Install {app.name}</h2>
      {Object.entries(app.settings).map(([name, s]) => {
        const id = `setting-${name}`;
        if (s.type === "boolean") {
          return (
            <label className="check" key={name}>
              <input
                type="checkbox"
                checked={Boolean(values[name])}
                onChange={(e) => setValues({ ...values, [name]: e.target.checked })}
              />
              {s.description}
            </label>
          );
        }
        return (
          <Field
            key={name}
            id={id}
            label={s.type === "secret" ? `${s.description} (leave empty: the cell makes one)` : s.description}
            error={errors[name]}
          >
            <input
              id={id}
              type={s.type === "secret" ? "password" : s.type === "integer" ? "number" : "text"}
              autoComplete={s.type === "secret" ? "new-password" : "off"}
              value={String(values[name] ?? "")}
              aria-invalid={Boolean(errors[name])}
              aria-describedby={errors[name] ? `${id}-error` : undefined}
              onChange={(e) => setValues({ ...values, [name]: e.target.value })}
            />
          </Field>
        );
      })}
      {Object.keys(app.settings).length === 0 && <p>{app.name} needs no settings.</p>}
      <p>Its data is kept in its own folder on the cell, also when it is removed.</p>
      {message && (
        <p className="error" role="alert">
          {message}
        </p>
      )}
      <p className="inline">
        <button type="submit" disabled={busy}>
          Install
        </button>
        <button type="button" onClick={props.onClose}>
          Cancel
        </button>
      </p>
    </form>
  );
}
