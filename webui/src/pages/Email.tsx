// Email: whether the cell receives mail, the domains it receives for, the mailboxes and who reads
// each, other addresses for them (aliases), and what to type into a mail app.
import { useState } from "react";
import { useConfigEditor } from "../config";
import { ListEditor } from "./Network";
import { Field } from "../components/Field";
import { ListTable } from "../components/ListTable";
import { ServiceSwitch, cellDomain } from "../components/ServiceSwitch";

type Mailbox = { address: string; user: string };
type Alias = { address: string; to: string };

export function EmailPage() {
  const { config, errors, message, save } = useConfigEditor();
  const [mailbox, setMailbox] = useState<Mailbox>({ address: "", user: "" });
  const [alias, setAlias] = useState<Alias>({ address: "", to: "" });

  if (!config) return <p>Loading…</p>;
  const mail = config.services?.mail ?? {};
  const users: string[] = (config.users ?? []).map((u: { name: string }) => u.name);
  const mailboxes: Mailbox[] = mail.mailboxes ?? [];
  const aliases: Alias[] = mail.aliases ?? [];
  const host = `mail.${cellDomain(config)}`;

  return (
    <>
      <h1>Email</h1>
      <p role="status">{message}</p>
      <ServiceSwitch
        name="Email"
        enabled={Boolean(mail.enabled)}
        stops="Mail for your domains is no longer received, and mail apps cannot connect; the mailboxes stay."
        onChange={(on) => save((c) => (c.services.mail.enabled = on), on ? "Email is on." : "Email is off.")}
      />
      <h2>Domains</h2>
      <p className="hint">The cell receives mail for these domains (their MX records must name {host}).</p>
      <ListEditor
        id="mail_domains"
        label="Mail domains (comma separated)"
        value={mail.domains ?? []}
        error={Object.entries(errors).find(([k]) => k.startsWith("services.mail.domains"))?.[1]}
        onSave={(list) => save((c) => (c.services.mail.domains = list), "Mail domains saved.")}
      />
      <h2>Mailboxes</h2>
      {mailboxes.length === 0 ? (
        <p>No mailbox yet.</p>
      ) : (
        <ListTable
          columns={[
            ["Address", (m: Mailbox) => m.address],
            ["Read by", (m: Mailbox) => m.user],
          ]}
          rows={mailboxes}
          rowKey={(m) => m.address}
          question={(m) => `Remove the mailbox ${m.address}? Mail to it is refused from then on.`}
          onRemove={(m) =>
            save((c) => {
              c.services.mail.mailboxes = c.services.mail.mailboxes.filter((x: Mailbox) => x.address !== m.address);
            }, `Removed ${m.address}.`)
          }
        />
      )}
      <form
        className="inline"
        aria-label="New mailbox"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await save((c) => (c.services.mail.mailboxes = [...(c.services.mail.mailboxes ?? []), mailbox]), `Added ${mailbox.address}.`))
            setMailbox({ address: "", user: "" });
        }}
      >
        <Field id="mailbox_address" label="Address" error={errors[`services.mail.mailboxes[${mailboxes.length}].address`]}>
          <input id="mailbox_address" value={mailbox.address} onChange={(e) => setMailbox({ ...mailbox, address: e.target.value })} />
        </Field>
        <Field id="mailbox_user" label="Read by" error={errors[`services.mail.mailboxes[${mailboxes.length}].user`]}>
          <select id="mailbox_user" value={mailbox.user} onChange={(e) => setMailbox({ ...mailbox, user: e.target.value })}>
            <option value="">choose…</option>
            {users.map((u) => (
              <option key={u}>{u}</option>
            ))}
          </select>
        </Field>
        <button type="submit">Add mailbox</button>
      </form>
      <h2>Other addresses (aliases)</h2>
      <p className="hint">Mail to an alias lands in a mailbox: postmaster@, info@, a name for a shop…</p>
      {aliases.length > 0 && (
        <ListTable
          columns={[
            ["Address", (a: Alias) => a.address],
            ["Delivered to", (a: Alias) => a.to],
          ]}
          rows={aliases}
          rowKey={(a) => a.address}
          question={(a) => `Remove the alias ${a.address}? Mail to it is refused from then on.`}
          onRemove={(a) =>
            save((c) => {
              c.services.mail.aliases = c.services.mail.aliases.filter((x: Alias) => x.address !== a.address);
            }, `Removed ${a.address}.`)
          }
        />
      )}
      <form
        className="inline"
        aria-label="New alias"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await save((c) => (c.services.mail.aliases = [...(c.services.mail.aliases ?? []), alias]), `Added ${alias.address}.`))
            setAlias({ address: "", to: "" });
        }}
      >
        <Field id="alias_address" label="Alias" error={errors[`services.mail.aliases[${aliases.length}].address`]}>
          <input id="alias_address" value={alias.address} onChange={(e) => setAlias({ ...alias, address: e.target.value })} />
        </Field>
        <Field id="alias_to" label="Delivered to" error={errors[`services.mail.aliases[${aliases.length}].to`]}>
          <select id="alias_to" value={alias.to} onChange={(e) => setAlias({ ...alias, to: e.target.value })}>
            <option value="">choose…</option>
            {mailboxes.map((m) => (
              <option key={m.address}>{m.address}</option>
            ))}
          </select>
        </Field>
        <button type="submit">Add alias</button>
      </form>
      <h2>Connect a mail app</h2>
      <dl className="review">
        <dt>Incoming (IMAP)</dt>
        <dd>
          <code>{host}</code>, port 993, SSL/TLS
        </dd>
        <dt>Outgoing (SMTP)</dt>
        <dd>
          <code>{host}</code>, port 587, STARTTLS
        </dd>
        <dt>User name and password</dt>
        <dd>the mailbox reader's user name on the cell and their password</dd>
      </dl>
    </>
  );
}
