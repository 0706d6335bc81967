// Settings: the cell's identity, and your password (an admin also sets other users').
import { useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { loadConfig } from "../config";
import { useSession } from "../session";
import { Field } from "./Setup";

export function SettingsPage() {
  const { session } = useSession();
  const [identity, setIdentity] = useState<{ name?: string; timezone?: string } | null>(null);
  const [user, setUser] = useState(session?.user ?? "");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [message, setMessage] = useState("");
  useEffect(() => {
    if (session?.role === "admin") void loadConfig().then(({ config }) => setIdentity(config.cell));
  }, [session]);

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
        <p>
          Cell <strong>{identity.name}</strong>, time zone {identity.timezone}.
        </p>
      )}
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
        <button type="submit">Set password</button>
        <p role="status">{message}</p>
      </form>
    </>
  );
}
