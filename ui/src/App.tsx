import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { HashRouter, NavLink, Route, Routes, useNavigate } from "react-router-dom";
import { QueryClientProvider } from "@tanstack/react-query";
import { Api, ApiError } from "./api/client";
import { makeQueryClient, useGpus, useMe, useStatus } from "./api/queries";
import { LiveProvider, useLive } from "./live";
import { Dashboard } from "./views/Dashboard";
import { ExperimentRuns, Experiments } from "./views/experiments/Experiments";
import { RunDetail } from "./views/experiments/RunDetail";
import { Gpus } from "./views/Gpus";
import { JobDetail } from "./views/JobDetail";
import { Jobs } from "./views/Jobs";
import { ModelPage } from "./views/models/ModelPage";
import { Models } from "./views/models/Models";
import { Notebooks } from "./views/Notebooks";
import { DeploymentPage } from "./views/serving/Deployment";
import { Serving } from "./views/serving/Serving";
import { PipelineEditor } from "./views/pipelines/Editor";
import { Pipelines } from "./views/pipelines/Pipelines";
import { RunView } from "./views/pipelines/RunView";
import { Settings } from "./views/Settings";
import { Submit } from "./views/Submit";
import { Team } from "./views/Team";
import { Clusters } from "./views/Clusters";
import { ErrorNote } from "./components/ui";
import { ErrorBoundary } from "./components/ErrorBoundary";

const TOKEN_KEY = "petri.token";
const THEME_KEY = "petri.theme";

/** The desktop shell may hand the token over in the address (`#token=...`); it is taken out at once. */
function tokenFromLocation(): string | null {
  const m = window.location.hash.match(/[#&]token=([A-Za-z0-9_-]+)/);
  if (!m) return null;
  history.replaceState(null, "", window.location.pathname + window.location.search + "#/");
  return m[1];
}

function useTheme(): [string, (t: string) => void] {
  const [theme, setTheme] = useState(() => localStorage.getItem(THEME_KEY) ?? "system");
  useEffect(() => {
    const apply = () => {
      const dark = theme === "dark" || (theme === "system" && window.matchMedia("(prefers-color-scheme: dark)").matches);
      document.documentElement.dataset.theme = dark ? "dark" : "light";
    };
    apply();
    localStorage.setItem(THEME_KEY, theme);
    const mq = window.matchMedia("(prefers-color-scheme: dark)");
    mq.addEventListener("change", apply);
    return () => mq.removeEventListener("change", apply);
  }, [theme]);
  return [theme, setTheme];
}

export function App() {
  const [token, setToken] = useState<string | null>(() => {
    const given = tokenFromLocation();
    if (given) localStorage.setItem(TOKEN_KEY, given);
    return given ?? localStorage.getItem(TOKEN_KEY);
  });
  const [theme, setTheme] = useTheme();
  const [rejected, setRejected] = useState(false);
  const api = useMemo(() => (token ? new Api("", token) : null), [token]);
  const signOut = useCallback(() => {
    localStorage.removeItem(TOKEN_KEY);
    setToken(null);
  }, []);
  const onUnauthorized = useCallback(() => {
    localStorage.removeItem(TOKEN_KEY);
    setRejected(true);
    setToken(null);
  }, []);
  // One cache per token: another sign-in starts from nothing.
  const queryClient = useMemo(() => (api ? makeQueryClient(onUnauthorized) : null), [api, onUnauthorized]);

  if (!api || !queryClient) {
    return (
      <SignIn
        rejected={rejected}
        onToken={(t) => {
          localStorage.setItem(TOKEN_KEY, t);
          setRejected(false);
          setToken(t);
        }}
      />
    );
  }
  return (
    <QueryClientProvider client={queryClient}>
      <HashRouter>
        <LiveProvider api={api} signOut={signOut}>
          <Shell theme={theme} setTheme={setTheme} />
        </LiveProvider>
      </HashRouter>
    </QueryClientProvider>
  );
}

function SignIn(props: { rejected: boolean; onToken: (t: string) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState<unknown>(
    props.rejected ? new ApiError("UNAUTHORIZED", "that token was not accepted; check it and sign in again", 401) : undefined,
  );
  const [busy, setBusy] = useState(false);
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await new Api("", value.trim()).status();
      props.onToken(value.trim());
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="signin">
      <form onSubmit={submit} className="card">
        <h1><span className="logo" /> Petri</h1>
        <p>Sign in with a token. Your own: run <code>petri token create browser</code> on the machine (on a shared machine it is yours, with your role). The owner's is in the file <code>token</code> in the Petri home (<code>~/.local/share/petri/token</code>).</p>
        <ErrorNote error={error} />
        <input type="password" name="token" autoFocus placeholder="token" value={value} onChange={(e) => setValue(e.target.value)} />
        <button className="primary" type="submit" disabled={busy || !value.trim()}>Sign in</button>
      </form>
    </div>
  );
}

function Shell(props: { theme: string; setTheme: (t: string) => void }) {
  const { connected } = useLive();
  const status = useStatus().data;
  const gpus = useGpus().data;
  const me = useMe().data;
  const navigate = useNavigate();
  const pendingG = useRef(false);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement;
      if (e.ctrlKey || e.metaKey || e.altKey || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName)) return;
      if (pendingG.current) {
        pendingG.current = false;
        const to = { d: "/", j: "/jobs", g: "/gpus", n: "/notebooks", p: "/pipelines", e: "/experiments", m: "/models", v: "/serving", t: "/team", s: "/settings" }[e.key];
        if (to) navigate(to);
        return;
      }
      if (e.key === "g") pendingG.current = true;
      else if (e.key === "n") navigate("/jobs/new");
      else if (e.key === "t") props.setTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark");
      else if (e.key === "/") {
        e.preventDefault();
        navigate("/jobs");
        setTimeout(() => document.getElementById("job-search")?.focus(), 50);
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [navigate, props]);

  const running = status?.counts?.running ?? 0;
  const queued = status?.counts?.queued ?? 0;
  return (
    <div className="shell">
      <nav className="nav">
        <div className="brand"><span className="logo" /> Petri</div>
        <NavLink to="/" end>Dashboard</NavLink>
        <NavLink to="/jobs">Jobs</NavLink>
        <NavLink to="/gpus">GPUs</NavLink>
        <NavLink to="/notebooks">Notebooks</NavLink>
        <NavLink to="/pipelines">Pipelines</NavLink>
        <NavLink to="/experiments">Experiments</NavLink>
        <NavLink to="/models">Models</NavLink>
        <NavLink to="/serving">Serving</NavLink>
        <NavLink to="/clusters">Clusters</NavLink>
        <NavLink to="/team">Team</NavLink>
        <NavLink to="/settings">Settings</NavLink>
        <div className="nav-foot">
          {me && <div data-testid="signed-in-as">{me.name} · {me.role}</div>}
          <div>{running} running · {queued} queued</div>
          <div>{gpus?.available ? `${gpus.gpus.length} GPU${gpus.gpus.length === 1 ? "" : "s"}` : "CPU only"}</div>
          <div className="muted">v{status?.version ?? "…"}</div>
        </div>
      </nav>
      <main>
        {!connected && (
          <div className="banner" role="status" data-testid="disconnected">
            The daemon does not answer. Reconnecting… (start it with <code>petri serve</code>)
          </div>
        )}
        <ErrorBoundary>
        <Routes>
          <Route path="/" element={<Dashboard />} />
          <Route path="/jobs" element={<Jobs />} />
          <Route path="/jobs/new" element={<Submit />} />
          <Route path="/jobs/:id" element={<JobDetail />} />
          <Route path="/gpus" element={<Gpus />} />
          <Route path="/notebooks" element={<Notebooks />} />
          <Route path="/pipelines" element={<Pipelines />} />
          <Route path="/pipelines/new" element={<PipelineEditor />} />
          <Route path="/pipelines/:name" element={<PipelineEditor />} />
          <Route path="/pipeline-runs/:id" element={<RunView />} />
          <Route path="/experiments" element={<Experiments />} />
          <Route path="/experiments/:id" element={<ExperimentRuns />} />
          <Route path="/runs/:id" element={<RunDetail />} />
          <Route path="/models" element={<Models />} />
          <Route path="/models/:name" element={<ModelPage />} />
          <Route path="/serving" element={<Serving />} />
          <Route path="/serving/:name" element={<DeploymentPage />} />
          <Route path="/clusters" element={<Clusters />} />
          <Route path="/team" element={<Team />} />
          <Route path="/settings" element={<Settings theme={props.theme} setTheme={props.setTheme} />} />
          <Route path="*" element={<div className="page"><h1>Not found</h1><p>There is no such view. <NavLink to="/">Go to the dashboard</NavLink>.</p></div>} />
        </Routes>
        </ErrorBoundary>
      </main>
    </div>
  );
}
