// Backups made by themselves: when (in the cell's time zone), how many are kept, where they go —
// part of the config, so a change is a generation — and the backup key, set up once with the
// passphrase, that lets scheduled archives hold the secrets without the passphrase being stored.
import { useCallback, useEffect, useState } from "react";
import { api, errorMessage } from "../api/client";
import { Badge } from "../components/Badge";
import { Field } from "../components/Field";
import { PasswordStrength, useStrength } from "../components/PasswordStrength";
import { useConfigEditor } from "../config";
import { type CellEvent, useEvents } from "../events";

type Schedule = { every: "day" | "week"; at: string; on?: string };
type Settings = {
  schedule?: Schedule;
  keep: { daily: number; weekly: number };
  destination?: string;
  include_data: boolean;
};
type View = {
  settings: Settings;
  next_run: string | null;
  key: boolean;
  destination: string;
  status: {
    last_success: string | null;
    last_attempt: string | null;
    last_archive: string | null;
    problem: string | null;
    secrets_included: boolean | null;
  };
};

const DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];
const when = (time: string | null) => (time ? new Date(time).toLocaleString() : "never");

export function BackupSchedule() {
  const [view, setView] = useState<View | null>(null);
  const { config, errors, message, save } = useConfigEditor();
  const load = useCallback(async () => {
    const { data } = await api.GET("/api/backups/schedule");
    setView((data as View | undefined) ?? null);
  }, []);
  useEffect(() => {
    void load();
  }, [load, config]);
  useEvents(useCallback((e: CellEvent) => e.step === "scheduled_backup" && void load(), [load]));
  if (!view || !config) return <p>Loading the schedule…</p>;
  const settings: Settings = { keep: { daily: 7, weekly: 4 }, include_data: true, ...(config.backups ?? {}) };
  return (
    <section className="card" aria-labelledby="schedule-title">
      <h2 id="schedule-title">Scheduled backups</h2>
      <ScheduleStatus view={view} />
      <ScheduleForm
        key={JSON.stringify(settings)}
        settings={settings}
        errors={errors}
        onSave={(next) =>
          save((c) => {
            c.backups = next;
          }, next.schedule ? "The schedule is saved." : "Scheduled backups are off.")
        }
      />
      <p role="status">{message}</p>
      <BackupKey hasKey={view.key} onDone={load} />
    </section>
  );
}

function ScheduleStatus({ view }: { view: View }) {
  const { status } = view;
  return (
    <ul>
      <li>
        Next: {view.next_run ? when(view.next_run) : "none — no schedule"}
        {view.next_run && ` into ${view.destination}`}
      </li>
      <li>
        Last: {when(status.last_success)}
        {status.last_archive && ` (${status.last_archive})`}
      </li>
      {status.problem && (
        <li>
          <Badge tone="bad">Failed</Badge> {when(status.last_attempt)}: {status.problem}
        </li>
      )}
      {!view.key && view.next_run && (
        <li>
          <Badge tone="warn">No backup key</Badge> Scheduled backups leave the keys and passwords out until a backup key
          is set up below.
        </li>
      )}
    </ul>
  );
}

function ScheduleForm(props: {
  settings: Settings;
  errors: Record<string, string>;
  onSave: (settings: Settings) => Promise<boolean>;
}) {
  const { settings, errors } = props;
  const [on, setOn] = useState(Boolean(settings.schedule));
  const [every, setEvery] = useState(settings.schedule?.every ?? "day");
  const [at, setAt] = useState(settings.schedule?.at ?? "03:30");
  const [day, setDay] = useState(settings.schedule?.on ?? "sunday");
  const [daily, setDaily] = useState(settings.keep.daily);
  const [weekly, setWeekly] = useState(settings.keep.weekly);
  const [destination, setDestination] = useState(settings.destination ?? "");
  const [includeData, setIncludeData] = useState(settings.include_data);

  const submit = (event: React.FormEvent) => {
    event.preventDefault();
    const schedule: Schedule | undefined = on ? { every, at, ...(every === "week" ? { on: day } : {}) } : undefined;
    void props.onSave({
      ...(schedule ? { schedule } : {}),
      keep: { daily, weekly },
      ...(destination.trim() ? { destination: destination.trim() } : {}),
      include_data: includeData,
    });
  };
  return (
    <form onSubmit={submit}>
      <label className="check">
        <input type="checkbox" checked={on} onChange={(e) => setOn(e.target.checked)} /> Back up by itself
      </label>
      {on && (
        <fieldset>
          <legend>When (the cell's time zone)</legend>
          <Field id="backup-every" label="How often">
            <select id="backup-every" value={every} onChange={(e) => setEvery(e.target.value as "day" | "week")}>
              <option value="day">Every day</option>
              <option value="week">Every week</option>
            </select>
          </Field>
          {every === "week" && (
            <Field id="backup-on" label="On" error={errors["backups.schedule.on"]}>
              <select id="backup-on" value={day} onChange={(e) => setDay(e.target.value)}>
                {DAYS.map((d) => (
                  <option key={d} value={d}>
                    {d[0].toUpperCase() + d.slice(1)}
                  </option>
                ))}
              </select>
            </Field>
          )}
          <Field id="backup-at" label="At" hint="A run missed while the cell was off is made when it starts again." error={errors["backups.schedule.at"]}>
            <input id="backup-at" type="time" required value={at} onChange={(e) => setAt(e.target.value)} />
          </Field>
        </fieldset>
      )}
      <fieldset>
        <legend>How many scheduled backups are kept</legend>
        <Field id="keep-daily" label="The newest of each of the last … days" error={errors["backups.keep"]}>
          <input id="keep-daily" type="number" min={0} max={365} value={daily} onChange={(e) => setDaily(Number(e.target.value))} />
        </Field>
        <Field id="keep-weekly" label="The newest of each of the last … weeks">
          <input id="keep-weekly" type="number" min={0} max={520} value={weekly} onChange={(e) => setWeekly(Number(e.target.value))} />
        </Field>
      </fieldset>
      <Field
        id="backup-destination"
        label="Folder (optional)"
        hint="A mounted disk or share, e.g. /mnt/usb/pic-backups; empty: the cell's own backups folder. Backups made by hand are never removed."
        error={errors["backups.destination"]}
      >
        <input id="backup-destination" value={destination} onChange={(e) => setDestination(e.target.value)} />
      </Field>
      <label className="check">
        <input type="checkbox" checked={includeData} onChange={(e) => setIncludeData(e.target.checked)} /> Include the
        services' data (mail, calendars, files)
      </label>
      <button type="submit">Save the schedule</button>
    </form>
  );
}

/** The backup key: made from the passphrase, which is asked twice and never stored. */
function BackupKey({ hasKey, onDone }: { hasKey: boolean; onDone: () => Promise<void> }) {
  const [first, setFirst] = useState("");
  const [again, setAgain] = useState("");
  const [message, setMessage] = useState("");
  const strength = useStrength(first, ["backup", "pic"]);
  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (first !== again) return setMessage("The two passphrases differ.");
    if (hasKey && !window.confirm("Make a new backup key? Older scheduled backups still open with their own passphrase.")) return;
    const { error } = await api.PUT("/api/backups/key", { body: { passphrase: first } });
    if (error) return setMessage(errorMessage(error));
    setFirst("");
    setAgain("");
    setMessage("The backup key is set up: scheduled backups now hold the keys and passwords, opened with this passphrase.");
    await onDone();
  };
  return (
    <form onSubmit={submit} aria-labelledby="backup-key-title">
      <h3 id="backup-key-title">Backup key {hasKey ? <Badge tone="ok">Set up</Badge> : <Badge tone="warn">Not set up</Badge>}</h3>
      <p className="hint">
        Scheduled backups lock the keys and passwords with it. It is not kept on the cell: a restore asks for it, so keep it
        somewhere safe.
      </p>
      <Field id="key-passphrase" label="Backup passphrase (at least 8 characters)">
        <input id="key-passphrase" type="password" autoComplete="new-password" minLength={8} required value={first} onChange={(e) => setFirst(e.target.value)} />
      </Field>
      <PasswordStrength strength={first ? strength : null} />
      <Field id="key-again" label="The same again">
        <input id="key-again" type="password" autoComplete="new-password" required value={again} onChange={(e) => setAgain(e.target.value)} />
      </Field>
      <button type="submit">{hasKey ? "Make a new backup key" : "Set up the backup key"}</button>
      <p role="status">{message}</p>
    </form>
  );
}
