// The frame around every page once logged in: a sidebar at desktop widths, a menu button at phone
// widths, what the cell is doing right now (from the events), and the page itself.
import { useCallback, useEffect, useRef, useState } from "react";
import { NavLink, useLocation, useNavigate } from "react-router-dom";
import { api } from "./api/client";
import { type Activity, type CellEvent, describeEvent, useEvents } from "./events";
import { useSession } from "./session";
import { labelTableCells } from "./tables";

type Section = { title: string; links: [to: string, label: string][] };

/** The admin's pages, grouped the way a person looks for them. */
const ADMIN: Section[] = [
  { title: "Cell", links: [["/", "Dashboard"], ["/generations", "Generations"], ["/backups", "Backups"]] },
  { title: "People", links: [["/peers", "Peers"], ["/routing", "Routing"]] },
  {
    title: "Network",
    links: [["/network", "Network"], ["/wireguard", "WireGuard"], ["/cells", "Cell Network"], ["/connectivity", "Connectivity"]],
  },
  {
    title: "Services",
    links: [["/email", "Email"], ["/calendar", "Calendar"], ["/files", "Files"], ["/store", "Store"], ["/certificates", "Certificates"]],
  },
  { title: "System", links: [["/containers", "Containers"], ["/logs", "Logs"], ["/settings", "Settings"]] },
];
/** A peer's pages: only their own devices and files. */
const PEER: Section[] = [
  { title: "You", links: [["/peers", "My devices"], ["/files", "My files"], ["/settings", "Settings"]] },
];

export function Frame({ children }: { children: React.ReactNode }) {
  const navigate = useNavigate();
  const location = useLocation();
  const { session } = useSession();
  const [menuOpen, setMenuOpen] = useState(false);
  const main = useRef<HTMLElement>(null);
  // The last event that says something to a person stays until the next one does.
  const [activity, setActivity] = useState<Activity | null>(null);
  useEvents(useCallback((event: CellEvent) => setActivity((a) => describeEvent(event) ?? a), []));

  // A link chosen in the phone menu closes it.
  useEffect(() => setMenuOpen(false), [location.pathname]);
  // Tables become cards on a phone: each cell carries its column's name (see tables.ts).
  useEffect(() => {
    if (!main.current) return;
    const observer = new MutationObserver(() => labelTableCells(main.current!));
    observer.observe(main.current, { childList: true, subtree: true, characterData: true });
    labelTableCells(main.current);
    return () => observer.disconnect();
  }, []);

  const logout = async () => {
    await api.POST("/api/auth/logout");
    navigate("/login");
    window.location.reload();
  };
  const sections = session?.role === "admin" ? ADMIN : PEER;

  return (
    <div className="frame">
      <a className="skip" href="#content">
        Skip to the page
      </a>
      <header className="bar">
        <strong className="brand">PIC</strong>
        <button
          type="button"
          className="menu-button"
          aria-expanded={menuOpen}
          aria-controls="main-nav"
          onClick={() => setMenuOpen((open) => !open)}
        >
          <span aria-hidden="true">☰</span> Menu
        </button>
      </header>
      <nav id="main-nav" aria-label="main" className={menuOpen ? "sidebar open" : "sidebar"}>
        {sections.map((section) => (
          <div key={section.title} className="nav-section">
            <h2 className="nav-title">{section.title}</h2>
            <ul>
              {section.links.map(([to, label]) => (
                <li key={to}>
                  <NavLink to={to} end>
                    {label}
                  </NavLink>
                </li>
              ))}
            </ul>
          </div>
        ))}
        <p className="nav-user">
          {session?.user}{" "}
          <button type="button" className="secondary" onClick={logout}>
            Log out
          </button>
        </p>
      </nav>
      <main id="content" ref={main} tabIndex={-1}>
        <p className={`activity ${activity?.tone ?? "idle"}`} role="status" aria-live="polite">
          {activity && (
            <>
              <span aria-hidden="true">{activity.busy ? "⏳" : activity.tone === "bad" ? "✕" : "✓"}</span> {activity.text}
              {activity.busy && <progress aria-label="progress" {...(activity.fraction === undefined ? {} : { value: activity.fraction })} />}
            </>
          )}
        </p>
        {children}
      </main>
    </div>
  );
}
