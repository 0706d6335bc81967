// A state shown three ways at once, so that no one depends on colour alone: a colour, an icon
// and words.
const ICON = { ok: "✓", bad: "✕", warn: "!", neutral: "○" } as const;

export type Tone = keyof typeof ICON;

export function Badge({ tone, children }: { tone: Tone; children: React.ReactNode }) {
  return (
    <span className={`badge ${tone}`}>
      <span aria-hidden="true">{ICON[tone]}</span>
      <span>{children}</span>
    </span>
  );
}

/** The tone of a container's state or health as Docker words it. */
export function toneOf(state: string | null | undefined): Tone {
  if (!state) return "neutral";
  if (["running", "healthy", "current", "good"].includes(state) || state.startsWith("Up")) return "ok";
  if (["starting", "restarting", "trying", "created", "paused"].includes(state)) return "warn";
  return "bad";
}
