// WireGuard: the VPN server every device connects to — its key, its address, the port it
// listens on, the address devices dial, and the subnet their addresses come from. A change here
// changes every device's config, and the page says so before saving.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, errorMessage } from "../api/client";
import { useConfigEditor } from "../config";
import { Field } from "../components/Field";

type Server = { public_key: string; address: string; subnet: string; listen_port: number; endpoint?: string | null; peers: number };

export function WireGuardPage() {
  const { config, errors, message, save } = useConfigEditor();
  const [server, setServer] = useState<Server | null>(null);
  const [form, setFormState] = useState({ listen_port: "", endpoint: "", subnet: "" });
  // What the admin is typing is kept when the page reloads for a change made elsewhere.
  const edited = useRef(false);
  const setForm = (next: typeof form) => {
    edited.current = true;
    setFormState(next);
  };
  const [keyMessage, setKeyMessage] = useState("");
  const load = useCallback(async () => {
    const { data } = await api.GET("/api/wireguard");
    const s = data as Server | undefined;
    if (!s) return;
    setServer(s);
    if (!edited.current) setFormState({ listen_port: String(s.listen_port), endpoint: s.endpoint ?? "", subnet: s.subnet });
  }, []);
  useEffect(() => {
    void load();
  }, [load, config]);

  if (!config || !server) return <p>Loading…</p>;
  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    const renumbers = form.subnet !== server.subnet;
    const question = renumbers
      ? `Every device gets a new address in ${form.subnet}: each one needs its new config (QR code) before it connects again. Save?`
      : `Devices dial the new port or address only once they have their new config (QR code). Save?`;
    if (!window.confirm(question)) return;
    const saved = await save((c) => {
      c.wireguard.listen_port = Number(form.listen_port);
      c.wireguard.endpoint = form.endpoint.trim() || undefined;
      c.wireguard.subnet = form.subnet.trim();
    }, "WireGuard settings saved.");
    if (saved) {
      edited.current = false;
      await load();
    }
  };

  const rotate = async () => {
    const question =
      "Make a new server key? Every device stops connecting until it gets its config again (its QR code on the Peers page). " +
      "Do it when the key may have leaked, e.g. after a backup with the secrets was lost.";
    if (!window.confirm(question)) return;
    setKeyMessage("Making a new key…");
    const { data, error, response } = await api.POST("/api/wireguard/rotate-key", {});
    if (!response.ok) {
      setKeyMessage(errorMessage(error));
      return;
    }
    const generation = (data as { generation?: number } | undefined)?.generation;
    setKeyMessage(`The server has a new key (generation ${generation}). Give each device its new config from the Peers page.`);
    await load();
  };

  return (
    <>
      <h1>WireGuard</h1>
      <p>
        The cell's VPN: each device in <a href="/peers">Peers</a> connects to this server with its own key, and reaches
        the cell's services (and, if its routing says so, the internet) through it.
      </p>
      <dl className="review">
        <dt>Server key (public)</dt>
        <dd>
          <code>{server.public_key}</code>
        </dd>
        <dt>Server address in the VPN</dt>
        <dd>{server.address}</dd>
        <dt>Devices</dt>
        <dd>{server.peers}</dd>
      </dl>
      <h2>Settings</h2>
      <form onSubmit={submit} className="narrow" noValidate>
        <Field
          id="wg_endpoint"
          label="Address devices dial (host:port)"
          error={errors["wireguard.endpoint"]}
          hint="Your public name or address and the port your router forwards to the cell, e.g. vpn.example.org:51820. Empty: devices get no address to dial and must be told one."
        >
          <input id="wg_endpoint" value={form.endpoint} onChange={(e) => setForm({ ...form, endpoint: e.target.value })} />
        </Field>
        <Field
          id="wg_port"
          label="Port the cell listens on (UDP)"
          error={errors["wireguard.listen_port"]}
          hint="Forward this UDP port from your router to the cell."
        >
          <input id="wg_port" inputMode="numeric" value={form.listen_port} onChange={(e) => setForm({ ...form, listen_port: e.target.value })} />
        </Field>
        <Field
          id="wg_subnet"
          label="Addresses of the devices (subnet)"
          error={errors["wireguard.subnet"]}
          hint="A private range not used by your home network, e.g. 10.8.0.0/24. Changing it gives every device a new address."
        >
          <input id="wg_subnet" value={form.subnet} onChange={(e) => setForm({ ...form, subnet: e.target.value })} />
        </Field>
        <button type="submit">Save</button>
        <p role="status">{message}</p>
      </form>
      <h2>A new server key</h2>
      <p>
        Devices trust the server by its key. If it may have leaked, make a new one: every device then needs its config
        again (its QR code) before it connects, and linked cells must be linked again, so the cell refuses while any is
        linked. Going back to an earlier generation keeps the new key.
      </p>
      <button type="button" onClick={rotate}>
        Make a new server key
      </button>
      <p role="status">{keyMessage}</p>
    </>
  );
}
