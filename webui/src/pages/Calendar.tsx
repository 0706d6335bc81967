// Calendar and contacts: whether they run, who may use them, and how to connect a phone or a
// computer (CalDAV and CardDAV).
import { useConfigEditor } from "../config";
import { ServiceSwitch, cellDomain } from "../components/ServiceSwitch";
import { UsersOf } from "../components/UsersOf";

export function CalendarPage() {
  const { config, message, save } = useConfigEditor();
  if (!config) return <p>Loading…</p>;
  const calendar = config.services?.calendar ?? {};
  const host = `calendar.${cellDomain(config)}`;
  return (
    <>
      <h1>Calendar and contacts</h1>
      <p role="status">{message}</p>
      <ServiceSwitch
        name="Calendar"
        enabled={Boolean(calendar.enabled)}
        stops="Phones and computers stop syncing calendars and contacts; what they hold stays on the cell."
        onChange={(on) => save((c) => (c.services.calendar.enabled = on), on ? "Calendar is on." : "Calendar is off.")}
      />
      <UsersOf config={config} service="calendar" save={save} />
      <h2>Connect your devices</h2>
      <dl className="review">
        <dt>Server (CalDAV and CardDAV)</dt>
        <dd>
          <code>https://{host}/</code>
        </dd>
        <dt>iPhone, iPad, macOS</dt>
        <dd>Settings → Calendar → Accounts → Add Account → Other → Add CalDAV Account (and a CardDAV one for contacts), server {host}.</dd>
        <dt>Android</dt>
        <dd>DAVx⁵ (from F-Droid or Google Play): log in with URL and user name, URL https://{host}/.</dd>
        <dt>Thunderbird</dt>
        <dd>New calendar → On the network → the server above; it finds the calendars itself.</dd>
        <dt>User name and password</dt>
        <dd>the person's user name on the cell and their password</dd>
      </dl>
    </>
  );
}
