// Settings → Domain: how the cell is reached from the internet. The mode and its name; in ddns
// mode the provider's settings, its credential (kept by the cell, never shown again) with a
// button that sends an update at once, and what the client last did; the certificates, where
// they come from, and (when the cell gets them itself, by DNS-01) the last order and a renewal.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage, errorsByField } from "../api/client";
import { changeConfig, loadConfig } from "../config";
import { Field } from "../components/Field";

type Domain = {
  mode: "local" | "public" | "ddns";
  name?: string;
  acme_email?: string;
  provider?: string;
  server?: string;
  username?: string;
  zone?: string;
  ipv6?: boolean;
  [other: string]: unknown;
};

type Status = {
  mode: string;
  name: string;
  provider?: string;
  credential_set?: boolean;
  certificates?: { names: string[]; issuer: string; not_after: string }[];
  certificates_by?: "cell_ca" | "caddy" | "pic";
  acme?: {
    last_attempt: string | null;
    last_success: string | null;
    last_error: { at: string; message: string } | null;
    retry_after: string | null;
  };
  ddns?: {
    published: { ipv4: string | null; ipv6: string | null };
    last_check: string | null;
    last_update: string | null;
    last_error: { at: string; message: string } | null;
    stopped: string | null;
    retry_after: string | null;
  };
};

const PROVIDERS: [string, string][] = [
  ["duckdns", "DuckDNS (a name under duckdns.org)"],
  ["cloudflare", "Cloudflare (a zone of your account)"],
  ["noip", "No-IP"],
  ["freedns", "FreeDNS (afraid.org)"],
  ["dyndns2", "Another dyndns2 provider"],
  ["pic_ngo", "pic.ngo"],
];

const CREDENTIAL_LABEL: Record<string, string> = {
  duckdns: "DuckDNS token",
  cloudflare: "Cloudflare API token (Zone:Read, DNS:Edit)",
  noip: "DDNS key password",
  freedns: "The record's v2 token",
  dyndns2: "Password",
  pic_ngo: "pic.ngo token",
};

export function DomainSection() {
  const [domain, setDomain] = useState<Domain | null>(null);
  const [status, setStatus] = useState<Status | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState("");
  const [credential, setCredential] = useState("");
  const [credentialError, setCredentialError] = useState("");
  const [testMessage, setTestMessage] = useState("");
  const [renewMessage, setRenewMessage] = useState("");
  const [renewing, setRenewing] = useState(false);

  const load = useCallback(async () => {
    const { config } = await loadConfig();
    setDomain({ ...(config.cell.domain as Domain) });
    const { data } = await api.GET("/api/domain");
    setStatus(data as Status);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  if (!domain) return null;
  const set = (change: Partial<Domain>) => setDomain({ ...domain, ...change });
  const error = (field: string) => errors[`cell.domain.${field}`];

  const save = async (event: React.FormEvent) => {
    event.preventDefault();
    setMessage("Saving…");
    const next: Domain = { mode: domain.mode };
    if (domain.mode !== "local") Object.assign(next, { name: domain.name ?? "", acme_email: domain.acme_email ?? "" });
    if (domain.mode === "ddns") {
      next.provider = domain.provider ?? "duckdns";
      for (const key of ["server", "username", "zone"] as const) if (domain[key]) next[key] = domain[key];
      next.ipv6 = Boolean(domain.ipv6);
      if (domain.address) next.address = domain.address;
      if (domain.interval_seconds) next.interval_seconds = domain.interval_seconds;
    }
    const result = await changeConfig((c) => {
      c.cell.domain = next;
    });
    if (!result.ok) {
      setErrors(result.fields);
      setMessage(result.message);
      return;
    }
    setErrors({});
    setMessage(`Saved. Generation ${result.generation ?? "?"} is current.`);
    await load();
  };

  const test = async (event: React.FormEvent) => {
    event.preventDefault();
    setTestMessage("Sending an update…");
    if (credential) {
      const { response, error: body } = await api.PUT("/api/domain/credential", { body: { credential } });
      if (!response.ok) {
        setCredentialError(errorsByField(body).credential ?? errorMessage(body));
        setTestMessage("");
        return;
      }
      setCredential("");
      setCredentialError("");
    }
    const { data, error: body, response } = await api.POST("/api/domain/update");
    const result = data as { result: string; reason?: string; addresses?: { ipv4?: string; ipv6?: string } } | undefined;
    if (!response.ok || !result) setTestMessage(errorMessage(body));
    else if (result.result === "published")
      setTestMessage(`The provider took it: ${domain.name} → ${[result.addresses?.ipv4, result.addresses?.ipv6].filter(Boolean).join(", ")}.`);
    else setTestMessage(`Not published: ${result.reason ?? result.result}.`);
    await load();
  };

  const renew = async () => {
    setRenewing(true);
    setRenewMessage("");
    const { data, error: body, response } = await api.POST("/api/domain/certificate");
    const result = data as { result: string; reason?: string; names?: string[]; not_after?: string } | undefined;
    setRenewing(false);
    if (!response.ok || !result) setRenewMessage(errorMessage(body));
    else if (result.result === "issued")
      setRenewMessage(`A new certificate for ${result.names?.join(", ")}, valid until ${new Date(result.not_after ?? "").toLocaleDateString()}.`);
    else setRenewMessage(`No new certificate: ${result.reason ?? result.result}.`);
    await load();
  };

  const provider = domain.provider ?? "duckdns";
  const ddns = status?.ddns;
  return (
    <>
      <form onSubmit={save} className="narrow">
        <h2>Domain</h2>
        <Field id="domain_mode" label="How the cell is reached" error={error("mode")}>
          <select id="domain_mode" value={domain.mode} onChange={(e) => set({ mode: e.target.value as Domain["mode"] })}>
            <option value="local">Only at home and over the VPN (names under .cell)</option>
            <option value="public">A domain of mine that points at my public address</option>
            <option value="ddns">A name kept up to date by a dynamic DNS provider</option>
          </select>
        </Field>
        {domain.mode === "ddns" && (
          <Field id="domain_provider" label="Provider" error={error("provider")}>
            <select id="domain_provider" value={provider} onChange={(e) => set({ provider: e.target.value })}>
              {PROVIDERS.map(([value, label]) => (
                <option key={value} value={value}>
                  {label}
                </option>
              ))}
            </select>
          </Field>
        )}
        {domain.mode !== "local" && (
          <>
            <Field id="domain_name" label="Name" error={error("name")}>
              <input id="domain_name" value={domain.name ?? ""} onChange={(e) => set({ name: e.target.value })} />
            </Field>
            <Field id="domain_email" label="Your mail address (for the certificate authority)" error={error("acme_email")}>
              <input id="domain_email" type="email" value={domain.acme_email ?? ""} onChange={(e) => set({ acme_email: e.target.value })} />
            </Field>
          </>
        )}
        {domain.mode === "ddns" && (provider === "noip" || provider === "dyndns2") && (
          <Field id="domain_username" label={provider === "noip" ? "DDNS key name" : "User name"} error={error("username")}>
            <input id="domain_username" value={domain.username ?? ""} onChange={(e) => set({ username: e.target.value })} />
          </Field>
        )}
        {domain.mode === "ddns" && (provider === "dyndns2" || provider === "pic_ngo") && (
          <Field id="domain_server" label={provider === "dyndns2" ? "Server" : "Server (only if pic.ngo moved)"} error={error("server")}>
            <input id="domain_server" type="url" value={domain.server ?? ""} onChange={(e) => set({ server: e.target.value })} />
          </Field>
        )}
        {domain.mode === "ddns" && provider === "cloudflare" && (
          <Field id="domain_zone" label="Zone (empty: found from the name)" error={error("zone")}>
            <input id="domain_zone" value={domain.zone ?? ""} onChange={(e) => set({ zone: e.target.value })} />
          </Field>
        )}
        {domain.mode === "ddns" && (
          <div className="field">
            <label>
              <input type="checkbox" checked={Boolean(domain.ipv6)} onChange={(e) => set({ ipv6: e.target.checked })} /> Also publish the
              IPv6 address
            </label>
          </div>
        )}
        <button type="submit">Save</button>
        <p role="status">{message}</p>
      </form>
      {status && (
        <section className="narrow" aria-labelledby="certificates-heading">
          <h3 id="certificates-heading">Certificates</h3>
          {status.certificates?.length ? (
            <ul>
              {status.certificates.map((c) => (
                <li key={c.names.join(",")}>
                  {c.names.join(", ")} — from {c.issuer}, valid until {new Date(c.not_after).toLocaleDateString()}
                </li>
              ))}
            </ul>
          ) : (
            <p>None yet{status.mode === "local" ? "." : ": the certificate authority is asked once the name reaches the cell."}</p>
          )}
          {status.certificates_by === "caddy" && (
            <p>The web server asks the certificate authority for each name, which checks it over port 80 of your public address.</p>
          )}
          {status.certificates_by === "pic" && (
            <>
              <p>
                The cell asks for one certificate covering the name and every name under it, proven through your provider&apos;s DNS records,
                and renews it 30 days before it expires.
              </p>
              {status.acme?.last_error && (
                <p className="error">
                  The last request failed ({new Date(status.acme.last_error.at).toLocaleString()}): {status.acme.last_error.message}. The
                  certificate the cell has is kept.
                </p>
              )}
              <button type="button" onClick={renew} disabled={renewing}>
                {renewing ? "Asking the certificate authority…" : "Renew now"}
              </button>
              <p role="status">{renewMessage}</p>
            </>
          )}
        </section>
      )}
      {status?.mode === "ddns" && (
        <form onSubmit={test} className="narrow">
          <h3>{CREDENTIAL_LABEL[status.provider ?? ""] ?? "Credential"}</h3>
          <p>{status.credential_set ? "The cell keeps one; enter a new one to replace it." : "None yet: the name is not published."}</p>
          <Field id="domain_credential" label={CREDENTIAL_LABEL[status.provider ?? ""] ?? "Credential"} error={credentialError}>
            <input id="domain_credential" type="password" autoComplete="off" value={credential} onChange={(e) => setCredential(e.target.value)} />
          </Field>
          <button type="submit">{credential ? "Save and test" : "Test now"}</button>
          <p role="status">{testMessage}</p>
          {ddns && (
            <dl>
              <dt>Published</dt>
              <dd>{[ddns.published.ipv4, ddns.published.ipv6].filter(Boolean).join(", ") || "nothing yet"}</dd>
              <dt>Last update</dt>
              <dd>{ddns.last_update ? new Date(ddns.last_update).toLocaleString() : "never"}</dd>
              <dt>Last check</dt>
              <dd>{ddns.last_check ? new Date(ddns.last_check).toLocaleString() : "never"}</dd>
              {ddns.stopped && (
                <>
                  <dt>Stopped</dt>
                  <dd>{ddns.stopped}: enter a new credential or change the settings.</dd>
                </>
              )}
              {ddns.last_error && (
                <>
                  <dt>Last error</dt>
                  <dd>{ddns.last_error.message}</dd>
                </>
              )}
            </dl>
          )}
        </form>
      )}
    </>
  );
}
