import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { api, errorMessage } from "../api/client";
import { Field } from "../components/Field";

export function LoginPage({ onLogin }: { onLogin: () => Promise<void> }) {
  const navigate = useNavigate();
  const [username, setUsername] = useState("admin");
  const [password, setPassword] = useState("");
  const [message, setMessage] = useState("");

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const { response, error } = await api.POST("/api/auth/login", { body: { username, password } as never });
    if (!response.ok) {
      setMessage(errorMessage(error));
      return;
    }
    await onLogin();
    navigate("/");
  };

  return (
    <main className="narrow">
      <h1>Log in</h1>
      <form onSubmit={submit}>
        <Field id="username" label="User">
          <input id="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} />
        </Field>
        <Field id="password" label="Password">
          <input
            id="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        {message && <p role="alert" className="error">{message}</p>}
        <button type="submit">Log in</button>
      </form>
    </main>
  );
}
