// Whether a service runs, and the button that turns it on or off (off after a confirmation that
// says what stops).
import { Badge } from "./Badge";

export function ServiceSwitch(props: {
  name: string;
  enabled: boolean;
  stops: string;
  onChange: (enabled: boolean) => void;
}) {
  const change = () => {
    if (props.enabled && !window.confirm(`Turn ${props.name} off? ${props.stops}`)) return;
    props.onChange(!props.enabled);
  };
  return (
    <p className="inline">
      {props.enabled ? <Badge tone="ok">{props.name} is on</Badge> : <Badge tone="neutral">{props.name} is off</Badge>}
      <button type="button" className={props.enabled ? "secondary" : undefined} onClick={change}>
        {props.enabled ? `Turn ${props.name} off` : `Turn ${props.name} on`}
      </button>
    </p>
  );
}

/** The cell's domain as its services are named under it. */
export function cellDomain(config: Record<string, any>): string { // eslint-disable-line @typescript-eslint/no-explicit-any
  const domain = config.cell?.domain;
  if (domain && typeof domain === "object" && domain.mode !== "local" && domain.name) return domain.name;
  return `${config.cell?.name ?? "cell"}.cell`;
}
