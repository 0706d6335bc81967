// A table of the items of a config list, each with a Remove button (after a confirmation).
export function ListTable<T>(props: {
  columns: [heading: string, cell: (row: T) => React.ReactNode][];
  rows: T[];
  rowKey: (row: T) => string;
  /** What removing a row does, asked before it is done. */
  question: (row: T) => string;
  onRemove: (row: T) => void;
}) {
  return (
    <table>
      <thead>
        <tr>
          {props.columns.map(([heading]) => (
            <th key={heading}>{heading}</th>
          ))}
          <th>
            <span className="visually-hidden">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map((row) => (
          <tr key={props.rowKey(row)}>
            {props.columns.map(([heading, cell]) => (
              <td key={heading}>{cell(row)}</td>
            ))}
            <td>
              <button
                type="button"
                aria-label={`Remove ${props.rowKey(row)}`}
                onClick={() => window.confirm(props.question(row)) && props.onRemove(row)}
              >
                Remove
              </button>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
