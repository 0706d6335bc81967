// The first-run wizard, one question at a time: the cell's name and how it is reached, its time
// zone (picked from the zones the cell knows), the administrator's password (with its strength
// while it is typed), the services (in plain words), then a last look before it is created.
// An error the API names takes the wizard back to the step of its field.
import { useEffect, useRef, useState } from "react";
import { useNavigate } from "react-router-dom";
import { api, errorMessage, errorsByField } from "../api/client";
import { Field } from "../components/Field";
import { PasswordStrength, rate, useStrength } from "../components/PasswordStrength";
import { useTimezoneNames } from "../components/Timezones";

/** The services a cell may start with, as a person would describe them. */
const SERVICES: [name: string, label: string, what: string][] = [
  ["proxy", "Web front door", "Serves the cell's pages over HTTPS (calendar, files and mail in the browser need it)."],
  ["dns", "Names", "Your devices and services by name (nas.home.cell) for every device of the cell."],
  ["calendar", "Calendar and contacts", "Kept on the cell and synced to your phone and computer."],
  ["files", "Files", "Your own storage, reachable from your devices and the browser."],
  ["mail", "Email", "Mailboxes at your own domain (needs a public domain to receive mail from others)."],
  ["webmail", "Email in the browser", "Read and write mail from any browser (needs Email)."],
  ["ntp", "Time", "The right time for the devices on your network."],
  ["dhcp", "Addresses", "Hands out addresses on your home network: only when your router no longer does."],
];

const STEPS = ["Your cell", "Time zone", "Administrator", "Services", "Create"] as const;

/** The step and form field of each config path the API may name. */
const FIELD_OF: Record<string, [step: number, field: string]> = {
  "cell.name": [0, "cell_name"],
  "cell.domain.name": [0, "domain_name"],
  "cell.domain.acme_email": [0, "acme_email"],
  "cell.domain": [0, "domain_mode"],
  "cell.timezone": [1, "timezone"],
  admin_password: [2, "admin_password"],
};

export function SetupPage({ onDone }: { onDone: () => Promise<void> }) {
  const navigate = useNavigate();
  const [step, setStep] = useState(0);
  const [cellName, setCellName] = useState("home");
  const [mode, setMode] = useState("local");
  const [domainName, setDomainName] = useState("");
  const [acmeEmail, setAcmeEmail] = useState("");
  const [timezone, setTimezone] = useState(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const strength = useStrength(password, [cellName, "admin"]);
  const [services, setServices] = useState<string[]>(["proxy", "dns", "calendar", "files"]);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState(false);
  const [starting, setStarting] = useState(false);
  const heading = useRef<HTMLHeadingElement>(null);

  const [zones, zoneList] = useTimezoneNames();
  // Each step starts at its heading, for a screen reader and for the keyboard.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    heading.current?.focus();
  }, [step]);

  /** What keeps the current step from being left, by field. */
  const problems = async (): Promise<Record<string, string>> => {
    const found: Record<string, string> = {};
    if (step === 0 && !cellName.trim()) found.cell_name = "give the cell a name";
    if (step === 0 && mode !== "local" && !domainName.trim()) found.domain_name = "the domain you own, e.g. example.org";
    if (step === 1 && zones.length > 0 && !zones.includes(timezone))
      found.timezone = `"${timezone}" is not a time zone the cell knows: pick one from the list (e.g. Europe/Berlin)`;
    if (step === 2) {
      if (password.length < 8) found.admin_password = "at least 8 characters";
      // Rated again here: the one shown may be of what was typed a moment ago.
      else if (((await rate(password, [cellName, "admin"]))?.score ?? 4) < 2) found.admin_password = "too easy to guess: see the advice below";
      else if (repeat !== password) found.repeat_password = "the two passwords differ";
    }
    return found;
  };

  const next = async (event: React.FormEvent) => {
    event.preventDefault();
    const found = await problems();
    setErrors(found);
    setMessage("");
    if (Object.keys(found).length === 0) setStep((s) => s + 1);
  };

  const create = async (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    const domain = mode === "local" ? { mode } : { mode, name: domainName, acme_email: acmeEmail };
    const body = { cell_name: cellName, domain, timezone, admin_password: password, services };
    const { response, error } = await api.POST("/api/setup", { body: body as never });
    if (!response.ok) {
      setBusy(false);
      const byField: Record<string, string> = {};
      let back = STEPS.length - 1;
      for (const [path, text] of Object.entries(errorsByField(error))) {
        const [at, field] = FIELD_OF[path] ?? [back, path];
        byField[field] = text;
        back = Math.min(back, at);
      }
      setErrors(byField);
      setMessage(errorMessage(error));
      setStep(back);
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
  const back = (
    <button type="button" className="secondary" onClick={() => setStep((s) => s - 1)} disabled={busy}>
      Back
    </button>
  );

  return (
    <main className="narrow">
      <h1>Set up your cell</h1>
      <ol className="steps" aria-label="Steps">
        {STEPS.map((name, i) => (
          <li key={name} aria-current={i === step ? "step" : undefined}>
            {i < step ? "✓ " : `${i + 1}. `}
            {name}
          </li>
        ))}
      </ol>
      <h2 ref={heading} tabIndex={-1}>
        {STEPS[step]}
      </h2>
      {message && (
        <p role="alert" className="error">
          {message}
        </p>
      )}
      {step === 0 && (
        <form onSubmit={next} noValidate>
          <Field
            id="cell_name"
            label="Cell name"
            error={errors.cell_name}
            hint={`Lower-case letters, digits and dashes. Your devices find the cell's services as ${cellName || "name"}.cell.`}
          >
            <input id="cell_name" value={cellName} onChange={(e) => setCellName(e.target.value)} required />
          </Field>
          <Field id="domain_mode" label="How the cell is reached" error={errors.domain_mode}>
            <select id="domain_mode" value={mode} onChange={(e) => setMode(e.target.value)}>
              <option value="local">From your devices only (names under .cell, certificates from the cell)</option>
              <option value="public">By a domain you own (certificates from Let's Encrypt)</option>
            </select>
          </Field>
          {mode !== "local" && (
            <>
              <Field id="domain_name" label="Domain name" error={errors.domain_name}>
                <input id="domain_name" value={domainName} onChange={(e) => setDomainName(e.target.value)} />
              </Field>
              <Field
                id="acme_email"
                label="Your mail address"
                error={errors.acme_email}
                hint="Let's Encrypt writes to it when a certificate is about to expire."
              >
                <input id="acme_email" type="email" value={acmeEmail} onChange={(e) => setAcmeEmail(e.target.value)} />
              </Field>
            </>
          )}
          <p className="hint">A dynamic DNS name (DuckDNS, pic.ngo…) can be set afterwards in Settings.</p>
          <button type="submit">Next</button>
        </form>
      )}
      {step === 1 && (
        <form onSubmit={next} noValidate>
          <Field
            id="timezone"
            label="Time zone"
            error={errors.timezone}
            hint="Type a city or region to search; the cell's logs, schedules and mail use this time."
          >
            <input id="timezone" list="timezones" autoComplete="off" value={timezone} onChange={(e) => setTimezone(e.target.value)} />
          </Field>
          {zoneList}
          <p className="inline">
            {back}
            <button type="submit">Next</button>
          </p>
        </form>
      )}
      {step === 2 && (
        <form onSubmit={next} noValidate>
          <p>You log in as <strong>admin</strong> with this password; it can do everything, so make it long.</p>
          <Field id="admin_password" label="Administrator password" error={errors.admin_password}>
            <input
              id="admin_password"
              type="password"
              autoComplete="new-password"
              value={password}
              onChange={(e) => setPassword(e.target.value)}
            />
          </Field>
          <PasswordStrength strength={password ? strength : null} />
          <Field id="repeat_password" label="The same password again" error={errors.repeat_password}>
            <input
              id="repeat_password"
              type="password"
              autoComplete="new-password"
              value={repeat}
              onChange={(e) => setRepeat(e.target.value)}
            />
          </Field>
          <p className="inline">
            {back}
            <button type="submit">Next</button>
          </p>
        </form>
      )}
      {step === 3 && (
        <form onSubmit={next} noValidate>
          <fieldset>
            <legend>What the cell does from the start (each can be turned on or off later)</legend>
            {SERVICES.map(([name, label, what]) => (
              <div key={name} className="service-choice">
                <label className="check">
                  <input
                    type="checkbox"
                    checked={services.includes(name)}
                    onChange={() => toggle(name)}
                    aria-describedby={`service_${name}-what`}
                  />{" "}
                  {label}
                </label>
                <p className="hint" id={`service_${name}-what`}>
                  {what}
                </p>
              </div>
            ))}
          </fieldset>
          <p className="hint">The VPN (WireGuard) and the firewall are always on.</p>
          <p className="inline">
            {back}
            <button type="submit">Next</button>
          </p>
        </form>
      )}
      {step === 4 && (
        <form onSubmit={create} noValidate>
          <dl className="review">
            <dt>Cell</dt>
            <dd>
              {cellName} — {mode === "local" ? `reached as ${cellName}.cell from your devices` : `reached as ${domainName}`}
            </dd>
            <dt>Time zone</dt>
            <dd>{timezone}</dd>
            <dt>Administrator</dt>
            <dd>admin{strength ? `, a ${strength.verdict} password` : ""}</dd>
            <dt>Services</dt>
            <dd>{SERVICES.filter(([name]) => services.includes(name)).map(([, label]) => label).join(", ") || "none"}</dd>
          </dl>
          <p className="inline">
            {back}
            <button type="submit" disabled={busy}>
              {starting ? "Starting the cell's services…" : busy ? "Building generation 1…" : "Create the cell"}
            </button>
          </p>
          {busy && <progress aria-label="Creating the cell" />}
        </form>
      )}
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
