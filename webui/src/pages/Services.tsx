// Email, calendar and files: the mail domains and mailboxes, and who may use calendar and files.
import { useState } from "react";
import { useConfigEditor } from "../config";
import { ListEditor } from "./Network";
import { Field } from "../components/Field";

type Mailbox = { address: string; user: string };

export function ServicesPage() {
  const { config, errors, message, save } = useConfigEditor();
  const [mailbox, setMailbox] = useState<Mailbox>({ address: "", user: "" });

  if (!config) return <p>Loading…</p>;
  const mail = config.services?.mail ?? {};
  const users: string[] = (config.users ?? []).map((u: { name: string }) => u.name);
  const mailboxes: Mailbox[] = mail.mailboxes ?? [];
  const toggleMember = (service: "calendar" | "files", user: string) =>
    save((c) => {
      const list: string[] = c.services[service].users ?? [];
      c.services[service].users = list.includes(user) ? list.filter((u) => u !== user) : [...list, user];
    }, `${service} updated.`);

  return (
    <>
      <h1>Email, calendar and files</h1>
      <p role="status">{message}</p>
      <section aria-label="Email">
        <h2>Email {mail.enabled ? "" : "(off)"}</h2>
        <ListEditor
          id="mail_domains"
          label="Mail domains (comma separated)"
          value={mail.domains ?? []}
          error={Object.entries(errors).find(([k]) => k.startsWith("services.mail.domains"))?.[1]}
          onSave={(list) => save((c) => (c.services.mail.domains = list), "Mail domains saved.")}
        />
        <ul>
          {mailboxes.map((m) => (
            <li key={m.address}>
              {m.address} → {m.user}{" "}
              <button
                type="button"
                aria-label={`Remove mailbox ${m.address}`}
                onClick={() =>
                  save((c) => {
                    c.services.mail.mailboxes = c.services.mail.mailboxes.filter((x: Mailbox) => x.address !== m.address);
                  }, `Removed ${m.address}.`)
                }
              >
                Remove
              </button>
            </li>
          ))}
        </ul>
        <form
          className="inline"
          onSubmit={async (e) => {
            e.preventDefault();
            if (await save((c) => (c.services.mail.mailboxes = [...(c.services.mail.mailboxes ?? []), mailbox]), `Added ${mailbox.address}.`))
              setMailbox({ address: "", user: "" });
          }}
        >
          <Field id="mailbox_address" label="Address" error={errors[`services.mail.mailboxes[${mailboxes.length}].address`]}>
            <input id="mailbox_address" value={mailbox.address} onChange={(e) => setMailbox({ ...mailbox, address: e.target.value })} />
          </Field>
          <Field id="mailbox_user" label="Owner" error={errors[`services.mail.mailboxes[${mailboxes.length}].user`]}>
            <select id="mailbox_user" value={mailbox.user} onChange={(e) => setMailbox({ ...mailbox, user: e.target.value })}>
              <option value="">choose…</option>
              {users.map((u) => (
                <option key={u}>{u}</option>
              ))}
            </select>
          </Field>
          <button type="submit">Add mailbox</button>
        </form>
      </section>
      {(["calendar", "files"] as const).map((service) => (
        <section key={service} aria-label={service}>
          <h2>
            {service === "calendar" ? "Calendar and contacts" : "Files"} {config.services?.[service]?.enabled ? "" : "(off)"}
          </h2>
          {users.map((u) => (
            <label key={u} className="check">
              <input
                type="checkbox"
                checked={(config.services?.[service]?.users ?? []).includes(u)}
                onChange={() => toggleMember(service, u)}
              />{" "}
              {u}
            </label>
          ))}
        </section>
      ))}
    </>
  );
}
