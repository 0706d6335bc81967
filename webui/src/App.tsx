// The pages and the frame around them: setup first, then login, then the cell.
import { useCallback, useEffect, useState } from "react";
import { Navigate, Route, Routes } from "react-router-dom";
import { Frame } from "./Frame";
import { api } from "./api/client";
import { type Session, SessionContext } from "./session";
import { SetupPage } from "./pages/Setup";
import { LoginPage } from "./pages/Login";
import { DashboardPage } from "./pages/Dashboard";
import { PeersPage } from "./pages/Peers";
import { GenerationsPage } from "./pages/Generations";
import { NetworkPage } from "./pages/Network";
import { ContainersPage } from "./pages/Containers";
import { LogsPage } from "./pages/Logs";
import { EmailPage } from "./pages/Email";
import { CalendarPage } from "./pages/Calendar";
import { WireGuardPage } from "./pages/WireGuard";
import { CertificatesPage } from "./pages/Certificates";
import { SettingsPage } from "./pages/Settings";
import { BackupsPage } from "./pages/Backups";
import { StorePage } from "./pages/Store";
import { FilesPage } from "./pages/Files";
import { CellsPage } from "./pages/Cells";
import { ConnectivityPage } from "./pages/Connectivity";
import { RoutingPage } from "./pages/Routing";

export function App() {
  const [setupDone, setSetupDone] = useState<boolean | null>(null);
  const [session, setSession] = useState<Session | null | undefined>(undefined);

  const refresh = useCallback(async () => {
    const status = await api.GET("/api/setup/status");
    setSetupDone(Boolean((status.data as { complete?: boolean } | undefined)?.complete));
    const me = await api.GET("/api/auth/me");
    setSession(me.response.ok ? (me.data as Session) : null);
  }, []);
  useEffect(() => {
    void refresh();
  }, [refresh]);

  if (setupDone === null || session === undefined) return <p className="loading">Loading…</p>;
  if (!setupDone) {
    return (
      <Routes>
        <Route path="/setup" element={<SetupPage onDone={refresh} />} />
        <Route path="*" element={<Navigate to="/setup" replace />} />
      </Routes>
    );
  }
  if (!session) {
    return (
      <Routes>
        <Route path="/login" element={<LoginPage onLogin={refresh} />} />
        <Route path="*" element={<Navigate to="/login" replace />} />
      </Routes>
    );
  }
  return (
    <SessionContext.Provider value={{ session, refresh }}>
      <Frame>
        {session.role === "admin" ? (
          <Routes>
            <Route path="/" element={<DashboardPage />} />
            <Route path="/peers" element={<PeersPage />} />
            <Route path="/network" element={<NetworkPage />} />
            <Route path="/cells" element={<CellsPage />} />
            <Route path="/connectivity" element={<ConnectivityPage />} />
            <Route path="/routing" element={<RoutingPage />} />
            <Route path="/generations" element={<GenerationsPage />} />
            <Route path="/containers" element={<ContainersPage />} />
            <Route path="/logs" element={<LogsPage />} />
            <Route path="/wireguard" element={<WireGuardPage />} />
            <Route path="/email" element={<EmailPage />} />
            <Route path="/calendar" element={<CalendarPage />} />
            <Route path="/services" element={<Navigate to="/email" replace />} />
            <Route path="/certificates" element={<CertificatesPage />} />
            <Route path="/store" element={<StorePage />} />
            <Route path="/files" element={<FilesPage />} />
            <Route path="/backups" element={<BackupsPage />} />
            <Route path="/settings" element={<SettingsPage />} />
            <Route path="*" element={<Navigate to="/" replace />} />
          </Routes>
        ) : (
          // A peer sees only their own devices (the API gives them nothing else).
          <Routes>
            <Route path="/peers" element={<PeersPage />} />
            <Route path="/files" element={<FilesPage />} />
            <Route path="/settings" element={<SettingsPage />} />
            <Route path="*" element={<Navigate to="/peers" replace />} />
          </Routes>
        )}
      </Frame>
    </SessionContext.Provider>
  );
}
