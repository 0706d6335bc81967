// The cell's certificate authority (the original's Vault): its certificate with the fingerprint to
// check before trusting it, how to trust it on each kind of device, what it issued, and
// revocation (a replacement is issued at once).
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { Badge } from "../components/Badge";

type Cert = { serial: string; name: string; subject_alt_names: string[]; not_after: string; revoked?: string | null };
type Identity = { subject: string; fingerprint_sha256: string; not_after: string };

/** Each kind of device, and how a person makes it trust the downloaded `cell-ca.crt`. */
const TRUST: [device: string, steps: string[]][] = [
  [
    "Windows",
    [
      "Open the downloaded cell-ca.crt and choose Install Certificate.",
      "Choose Local Machine, then “Place all certificates in the following store”: Trusted Root Certification Authorities.",
      "Finish, and restart the browser.",
    ],
  ],
  [
    "macOS",
    [
      "Open cell-ca.crt: Keychain Access adds it to the login keychain.",
      "Double-click “PIC cell CA”, open Trust and set “When using this certificate” to Always Trust.",
    ],
  ],
  [
    "iPhone and iPad",
    [
      "Open this page in Safari and download the certificate; allow the profile to be downloaded.",
      "Settings → General → VPN & Device Management: install the “PIC cell CA” profile.",
      "Settings → General → About → Certificate Trust Settings: turn on full trust for PIC cell CA.",
    ],
  ],
  [
    "Android",
    [
      "Download cell-ca.crt.",
      "Settings → Security → More security settings → Encryption & credentials → Install a certificate → CA certificate (the words vary a little between makers).",
    ],
  ],
  [
    "Linux (Debian, Ubuntu)",
    ["sudo cp cell-ca.crt /usr/local/share/ca-certificates/", "sudo update-ca-certificates"],
  ],
  [
    "Firefox (on any system)",
    ["Settings → Privacy & Security → Certificates → View Certificates → Authorities → Import: choose cell-ca.crt and tick “Trust this CA to identify websites”."],
  ],
];

/** What a certificate is for, in words. */
function purpose(cert: Cert): string {
  if (cert.name === "lan") return "The web UI at the device's network address";
  return cert.subject_alt_names.join(", ");
}

export function CertificatesPage() {
  const [certs, setCerts] = useState<Cert[]>([]);
  const [identity, setIdentity] = useState<Identity | null>(null);
  const [message, setMessage] = useState("");
  const load = useCallback(async () => {
    const { data } = await api.GET("/api/certs");
    setCerts(((data as Cert[] | undefined) ?? []).sort((a, b) => Number(Boolean(a.revoked)) - Number(Boolean(b.revoked))));
    const ca = await api.GET("/api/ca");
    setIdentity((ca.data as Identity | undefined) ?? null);
  }, []);
  useEffect(() => {
    void load();
  }, [load]);

  const revoke = async (cert: Cert) => {
    if (!window.confirm(`Revoke the certificate of ${cert.name}? Devices stop trusting it; a new one is issued at once.`)) return;
    const { response, error } = await api.POST("/api/certs/{serial}/revoke", { params: { path: { serial: cert.serial } } });
    await load();
    setMessage(response.ok ? `Revoked ${cert.serial}; ${cert.name} has a new certificate.` : errorMessage(error));
  };

  return (
    <>
      <h1>Certificates</h1>
      <section aria-labelledby="ca-heading">
        <h2 id="ca-heading">The cell's certificate authority</h2>
        <p>
          The cell signs the certificates of its own sites. Once a device trusts the cell's authority, its browser opens the
          cell's pages without warnings, by name and by the cell's network address.
        </p>
        {identity && (
          <dl className="review">
            <dt>Fingerprint (SHA-256)</dt>
            <dd>
              <code data-testid="ca-fingerprint">{identity.fingerprint_sha256}</code>
            </dd>
            <dt>Valid until</dt>
            <dd>{identity.not_after.slice(0, 10)}</dd>
          </dl>
        )}
        <p>
          <a href="/api/ca.crt" download="cell-ca.crt">
            Download the cell's CA certificate
          </a>
        </p>
        <p className="hint">
          Before trusting it, check that the fingerprint your device shows for it is the one above (or the one on the
          cell's console).
        </p>
      </section>
      <section aria-labelledby="trust-heading">
        <h2 id="trust-heading">Trust it on your devices</h2>
        {TRUST.map(([device, steps]) => (
          <details key={device}>
            <summary>{device}</summary>
            <ol>
              {steps.map((step) => (
                <li key={step}>{step}</li>
              ))}
            </ol>
          </details>
        ))}
      </section>
      <h2>Issued certificates</h2>
      <p role="status">{message}</p>
      <table>
        <thead>
          <tr>
            <th>For</th>
            <th>Serial</th>
            <th>Expires</th>
            <th>State</th>
            <th>
              <span className="visually-hidden">Actions</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {certs.map((c) => (
            <tr key={c.serial}>
              <td>{purpose(c)}</td>
              <td>
                <code>{c.serial.slice(0, 12)}…</code>
              </td>
              <td>{c.not_after.slice(0, 10)}</td>
              <td>{c.revoked ? <Badge tone="bad">revoked {c.revoked.slice(0, 10)}</Badge> : <Badge tone="ok">valid</Badge>}</td>
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
