// The cell's certificate authority: its certificate for devices to trust, what it issued, and
// revocation (a replacement is issued at once).
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";

type Cert = { serial: string; name: string; not_after: string; revoked?: string | null };

export function CertificatesPage() {
  const [certs, setCerts] = useState<Cert[]>([]);
  const [message, setMessage] = useState("");
  const load = useCallback(async () => {
    const { data } = await api.GET("/api/certs");
    setCerts((data as Cert[] | undefined) ?? []);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const revoke = async (cert: Cert) => {
    if (!window.confirm(`Revoke the certificate of ${cert.name}? A new one is issued at once.`)) return;
    const { response, error } = await api.POST("/api/certs/{serial}/revoke", { params: { path: { serial: cert.serial } } });
    await load();
    setMessage(response.ok ? `Revoked ${cert.serial}; ${cert.name} has a new certificate.` : errorMessage(error));
  };

  return (
    <>
      <h1>Certificates</h1>
      <p>
        <a href="/api/ca.crt" download="cell-ca.crt">
          Download the cell's CA certificate
        </a>{" "}
        — install it on your devices to trust the cell's sites.
      </p>
      <p role="status">{message}</p>
      <table>
        <thead>
          <tr>
            <th>Name</th>
            <th>Serial</th>
            <th>Expires</th>
            <th>State</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {certs.map((c) => (
            <tr key={c.serial}>
              <td>{c.name}</td>
              <td>{c.serial.slice(0, 12)}…</td>
              <td>{c.not_after.slice(0, 10)}</td>
              <td>{c.revoked ? `revoked ${c.revoked.slice(0, 10)}` : "valid"}</td>
              <td>
                {!c.revoked && (
                  <button type="button" onClick={() => revoke(c)} aria-label={`Revoke ${c.name} ${c.serial.slice(0, 8)}`}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
