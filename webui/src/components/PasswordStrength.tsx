// A password's strength while it is typed, as the cell rates it (`/api/setup/password-strength`):
// a meter, a verdict in words, and what would make it stronger.
import { useEffect, useState } from "react";
import { api } from "../api/client";

export type Strength = { score: number; verdict: string; guess_time: string; warning?: string | null; suggestions: string[] };

/** Asks the cell how strong `password` is. */
export async function rate(password: string, context: string[]): Promise<Strength | null> {
  const { data } = await api.POST("/api/setup/password-strength", { body: { password, context } });
  return (data as Strength | undefined) ?? null;
}

/** The strength of `password`, asked a moment after typing stops; null while empty. */
export function useStrength(password: string, context: string[]): Strength | null {
  const [strength, setStrength] = useState<Strength | null>(null);
  const words = context.join("\n");
  useEffect(() => {
    if (!password) {
      setStrength(null);
      return;
    }
    let current = true;
    const timer = setTimeout(async () => {
      const rated = await rate(password, words.split("\n"));
      if (current && rated) setStrength(rated);
    }, 250);
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [password, words]);
  return strength;
}

const TONE = ["bad", "bad", "warn", "ok", "ok"];

export function PasswordStrength({ strength }: { strength: Strength | null }) {
  return (
    <div className="strength" aria-live="polite">
      {strength && (
        <>
          <meter min={0} max={4} low={2} high={3} optimum={4} value={strength.score} aria-label="Password strength" />
          <p className={`badge ${TONE[strength.score] ?? "bad"}`}>
            Strength: {strength.verdict} (guessed in {strength.guess_time} by someone who stole the cell's password hashes)
          </p>
          {strength.warning && <p className="hint">{strength.warning}</p>}
          {strength.suggestions.length > 0 && (
            <ul className="hint">
              {strength.suggestions.map((s) => (
                <li key={s}>{s}</li>
              ))}
            </ul>
          )}
        </>
      )}
    </div>
  );
}
