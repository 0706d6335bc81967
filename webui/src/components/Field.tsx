// A labelled form field with its explanation and the API's error for it, both tied to the input
// so that a screen reader reads them with it.
import { Children, cloneElement, isValidElement } from "react";

export function Field(props: { id: string; label: string; hint?: React.ReactNode; error?: string; children: React.ReactNode }) {
  const described = [props.hint && `${props.id}-hint`, props.error && `${props.id}-error`].filter(Boolean).join(" ");
  const child = Children.count(props.children) === 1 ? Children.toArray(props.children)[0] : props.children;
  const input = isValidElement<Record<string, unknown>>(child)
    ? cloneElement(child, { "aria-describedby": described || undefined, "aria-invalid": props.error ? true : undefined })
    : child;
  return (
    <div className="field">
      <label htmlFor={props.id}>{props.label}</label>
      {input}
      {props.hint && (
        <p className="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
      {props.error && (
        <p className="error" id={`${props.id}-error`}>
          {props.error}
        </p>
      )}
    </div>
  );
}
