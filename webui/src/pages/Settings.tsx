// Settings: the cell's identity, its domain (how it is reached from the internet), the device's
// updates, and your password (an admin also sets other users').
import { useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { changeConfig, loadConfig } from "../config";
import { useSession } from "../session";
import { DomainSection } from "./Domain";
import { Field } from "../components/Field";
import { UpdatesSection } from "./Updates";
import { PasswordStrength, useStrength } from "../components/PasswordStrength";
import { useTimezones } from "../components/Timezones";

export function SettingsPage() {
  const { session } = useSession();
  const [identity, setIdentity] = useState<{ name?: string; timezone?: string } | null>(null);
  const [user, setUser] = useState(session?.user ?? "");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [message, setMessage] = useState("");
  const [identityErrors, setIdentityErrors] = useState<Record<string, string>>({});
  const [identityMessage, setIdentityMessage] = useState("");
  const strength = useStrength(password, [user, identity?.name ?? ""]);
  const zones = useTimezones();
  useEffect(() => {
    if (session?.role === "admin") void loadConfig().then(({ config }) => setIdentity(config.cell));
  }, [session]);

  const saveIdentity = async (event: React.FormEvent) => {
    event.preventDefault();
    setIdentityMessage("Saving…");
    const result = await changeConfig((c) => {
      c.cell.name = identity?.name;
      c.cell.timezone = identity?.timezone;
    });
    if (!result.ok) {
      setIdentityErrors(result.fields);
      setIdentityMessage(result.message);
      return;
    }
    setIdentityErrors({});
    setIdentityMessage(`Saved. Generation ${result.generation ?? "?"} is current.`);
  };

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const { response, error: body } = await api.POST("/api/users/{name}/password", {
      params: { path: { name: user } },
      body: { password } as never,
    });
    if (!response.ok) {
      setError(errorMessage(body));
      setMessage("");
      return;
    }
    setError("");
    setPassword("");
    setMessage(`The password of ${user} is set; mail, calendar and files use it at once.`);
  };

  return (
    <>
      <h1>Settings</h1>
      {identity && (
        <form onSubmit={saveIdentity} className="narrow">
          <h2>The cell</h2>
          <Field id="identity_name" label="Cell name (renames every service's host name)" error={identityErrors["cell.name"]}>
            <input id="identity_name" value={identity.name ?? ""} onChange={(e) => setIdentity({ ...identity, name: e.target.value })} />
          </Field>
          <Field id="identity_timezone" label="Time zone" error={identityErrors["cell.timezone"]}>
            <input
              id="identity_timezone"
              list="timezones"
              autoComplete="off"
              value={identity.timezone ?? ""}
              onChange={(e) => setIdentity({ ...identity, timezone: e.target.value })}
            />
          </Field>
          {zones}
          <button type="submit">Save</button>
          <p role="status">{identityMessage}</p>
        </form>
      )}
      {session?.role === "admin" && <DomainSection />}
      {session?.role === "admin" && <UpdatesSection />}
      <form onSubmit={submit} className="narrow">
        <h2>Password</h2>
        {session?.role === "admin" && (
          <Field id="password_user" label="User">
            <input id="password_user" value={user} onChange={(e) => setUser(e.target.value)} />
          </Field>
        )}
        <Field id="new_password" label="New password" error={error}>
          <input id="new_password" type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} />
        </Field>
        <PasswordStrength strength={password ? strength : null} />
        <button type="submit">Set password</button>
        <p role="status">{message}</p>
      </form>
    </>
  );
}
