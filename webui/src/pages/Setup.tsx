// The first-run wizard: the cell's name, its domain mode, time zone, the admin's password and
// the services to start with. Every error the API names appears next to its field.
import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { api, errorMessage, errorsByField } from "../api/client";

const SERVICES = ["proxy", "dns", "dhcp", "ntp", "mail", "calendar", "files", "webmail"];

/** The form field of each config path the API may name. */
const FIELD_OF: Record<string, string> = {
  "cell.name": "cell_name",
  "cell.timezone": "timezone",
  "cell.domain.name": "domain_name",
  "cell.domain.acme_email": "acme_email",
};

export function SetupPage({ onDone }: { onDone: () => Promise<void> }) {
  const navigate = useNavigate();
  const [cellName, setCellName] = useState("home");
  const [timezone, setTimezone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const [password, setPassword] = useState("");
  const [mode, setMode] = useState("local");
  const [domainName, setDomainName] = useState("");
  const [acmeEmail, setAcmeEmail] = useState("");
  const [services, setServices] = useState<string[]>(["proxy", "dns", "calendar", "files"]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);
  const [starting, setStarting] = useState(false);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const domain = mode === "local" ? { mode } : { mode, name: domainName, acme_email: acmeEmail };
    const body = { cell_name: cellName, domain, timezone, admin_password: password, services };
    const { response, error } = await api.POST("/api/setup", { body: body as never });
    if (!response.ok) {
      setBusy(false);
      const byPath = errorsByField(error);
      setErrors(Object.fromEntries(Object.entries(byPath).map(([path, text]) => [FIELD_OF[path] ?? path, text])));
      setMessage(errorMessage(error));
      return;
    }
    setStarting(true);
    await waitUntilReady();
    setBusy(false);
    await onDone();
    navigate("/login");
  };

  const toggle = (service: string) =>
    setServices((s) => (s.includes(service) ? s.filter((x) => x !== service) : [...s, service]));

  return (
    <main className="narrow">
      <h1>Set up your cell</h1>
      <form onSubmit={submit} noValidate>
        <Field id="cell_name" label="Cell name" error={errors.cell_name}>
          <input id="cell_name" value={cellName} onChange={(e) => setCellName(e.target.value)} required />
        </Field>
        <Field id="domain_mode" label="Domain">
          <select id="domain_mode" value={mode} onChange={(e) => setMode(e.target.value)}>
            <option value="local">local: names under {cellName || "name"}.cell, certificates from the cell's CA</option>
            <option value="public">public: a domain you own, certificates from Let's Encrypt</option>
          </select>
        </Field>
        {mode !== "local" && (
          <>
            <Field id="domain_name" label="Domain name" error={errors.domain_name}>
              <input id="domain_name" value={domainName} onChange={(e) => setDomainName(e.target.value)} />
            </Field>
            <Field id="acme_email" label="Email for the certificate authority" error={errors.acme_email}>
              <input id="acme_email" type="email" value={acmeEmail} onChange={(e) => setAcmeEmail(e.target.value)} />
            </Field>
          </>
        )}
        <Field id="timezone" label="Time zone" error={errors.timezone}>
          <input id="timezone" value={timezone} onChange={(e) => setTimezone(e.target.value)} />
        </Field>
        <Field id="admin_password" label="Admin password (the user is named admin)" error={errors.admin_password}>
          <input
            id="admin_password"
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        <fieldset>
          <legend>Services to start with</legend>
          {SERVICES.map((s) => (
            <label key={s} className="check">
              <input type="checkbox" checked={services.includes(s)} onChange={() => toggle(s)} /> {s}
            </label>
          ))}
        </fieldset>
        {message && <p role="alert" className="error">{message}</p>}
        <button type="submit" disabled={busy}>
          {starting ? "Starting the cell's services…" : busy ? "Building generation 1…" : "Create the cell"}
        </button>
      </form>
    </main>
  );
}

/** Waits (up to ten minutes) until the cell's services run for generation 1. Meanwhile the
 * cell's own proxy takes over from the one the wizard came through, so a request may fail. */
async function waitUntilReady() {
  const deadline = Date.now() + 10 * 60 * 1000;
  while (Date.now() < deadline) {
    try {
      const status = await api.GET("/api/setup/status");
      if ((status.data as { ready?: boolean } | undefined)?.ready) return;
    } catch {
      // The proxy is changing over; ask again.
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

export function Field(props: { id: string; label: string; error?: string; children: React.ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      {props.children}
      {props.error && (
        <p className="error" id={`${props.id}-error`}>
          {props.error}
        </p>
      )}
    </div>
  );
}
