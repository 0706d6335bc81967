// Who is logged in, as `GET /api/auth/me` says; `null` before login.
import { createContext, useContext } from "react";

export type Session = { user: string; role: "admin" | "peer"; csrf_token: string };

export const SessionContext = createContext<{
  session: Session | null;
  refresh: () => Promise<void>;
}>({ session: null, refresh: async () => {} });

export const useSession = () => useContext(SessionContext);
