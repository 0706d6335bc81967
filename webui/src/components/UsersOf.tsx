// Who may use a per-user service (calendar, files): one checkbox per user of the cell.
import type { CellConfig } from "../config";

export function UsersOf(props: {
  config: CellConfig;
  service: "calendar" | "files";
  save: (change: (c: CellConfig) => void, done: string) => Promise<boolean>;
}) {
  const users: string[] = (props.config.users ?? []).map((u: { name: string }) => u.name);
  const members: string[] = props.config.services?.[props.service]?.users ?? [];
  const toggle = (user: string) =>
    props.save((c) => {
      const list: string[] = c.services[props.service].users ?? [];
      c.services[props.service].users = list.includes(user) ? list.filter((u) => u !== user) : [...list, user];
    }, `${user} ${members.includes(user) ? "may no longer use" : "may use"} ${props.service}.`);
  return (
    <fieldset>
      <legend>Who may use it</legend>
      {users.length === 0 && <p>No user yet: add users in Settings.</p>}
      {users.map((u) => (
        <label key={u} className="check">
          <input type="checkbox" checked={members.includes(u)} onChange={() => void toggle(u)} /> {u}
        </label>
      ))}
    </fieldset>
  );
}
