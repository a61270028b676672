// Team: the users of a shared machine, their roles and quotas, what each runs and waits for and
// their recent usage (fair share's measure: among waiting jobs of the same priority, the user who
// used least goes first). Admins change roles and quotas here, and read the audit log.
import { useMemo, useState } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { ok } from "../api/client";
import { keys } from "../api/keys";
import { useAudit, useGpuHistory, useMe, useShares, useUsers } from "../api/queries";
import type { Role } from "../api/types";
import { useLive } from "../live";
import { Empty, ErrorNote, Field } from "../components/ui";
import { quotaFrom, quotaText } from "../lib/team";
import { userGpuSeries } from "../lib/userGpus";
import { Chart } from "../components/Chart";

const ROLES: Role[] = ["admin", "member", "viewer"];

export function Team() {
  const { api } = useLive();
  const client = useQueryClient();
  const me = useMe().data;
  const users = useUsers();
  const shares = useShares().data ?? [];
  const admin = me?.role === "admin";
  const [error, setError] = useState<unknown>();
  const [subject, setSubject] = useState("");
  const [fields, setFields] = useState({ gpus: "", gpuMemory: "", cpus: "", running: "" });
  const [quotaError, setQuotaError] = useState<string>();
  const [auditUser, setAuditUser] = useState("");
  const audit = useAudit(auditUser, admin);
  const history = useGpuHistory().data;
  const perUser = useMemo(() => userGpuSeries(history?.users ?? []), [history]);

  const act = async (f: () => Promise<unknown>) => {
    setError(undefined);
    try {
      await f();
      await client.invalidateQueries({ queryKey: keys.team });
    } catch (e) {
      setError(e);
    }
  };
  const setRole = (name: string, role: Role) =>
    act(() => ok(api.http.PUT("/api/v1/users/{name}", { params: { path: { name } }, body: { role } })));
  const setQuota = (e: React.FormEvent) => {
    e.preventDefault();
    const { quota, error: bad } = quotaFrom(fields);
    setQuotaError(bad);
    if (!quota || !subject.trim()) return;
    void act(() => ok(api.http.PUT("/api/v1/quotas/{subject}", { params: { path: { subject: subject.trim() } }, body: quota })));
  };

  return (
    <div className="page">
      <h1>Team</h1>
      <p className="muted">
        {me ? (
          <>
            You are <strong data-testid="me">{me.name}</strong> ({me.role}).{" "}
          </>
        ) : null}
        On a shared machine each Unix user is a Petri user: the CLI on the machine needs no token; from a browser or
        another machine, sign in with a personal token (<code>petri token create NAME</code>).
      </p>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      <ErrorNote error={users.error} />
      {users.data && users.data.length === 0 ? (
        <Empty title="No users yet">Users join when they first call the daemon over its socket.</Empty>
      ) : (
        <table className="table" data-testid="users-table">
          <thead>
            <tr><th>User</th><th>Role</th><th>Quota</th><th>Running</th><th>Waiting</th><th>Now</th><th>Recent usage</th></tr>
          </thead>
          <tbody>
            {(users.data ?? []).map((u) => {
              const s = shares.find((x) => x.user === u.name);
              return (
                <tr key={u.name}>
                  <td>{u.name}{u.uid != null && <span className="muted small"> uid {u.uid}</span>}</td>
                  <td>
                    {admin ? (
                      <select aria-label={`role of ${u.name}`} value={u.role} onChange={(e) => void setRole(u.name, e.target.value as Role)}>
                        {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
                      </select>
                    ) : (
                      u.role
                    )}
                  </td>
                  <td>{quotaText(u.quota)}</td>
                  <td>{s?.running ?? 0}</td>
                  <td>{s?.waiting ?? 0}</td>
                  <td>{Math.round((s?.share_now ?? 0) * 100)} %</td>
                  <td title="machine-hours, decayed by the fair-share half-life">{(s?.usage_hours ?? 0).toFixed(2)} h</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {perUser.series.length > 0 && (
        <section data-testid="user-gpus">
          <h2>GPUs by user, the last hour</h2>
          <Chart times={perUser.times} series={perUser.series} yLabel="GPUs" steps />
        </section>
      )}
      {admin && (
        <>
          <h2>Quotas</h2>
          <form className="form inline" onSubmit={setQuota} aria-label="quota">
            <Field label="User or group:NAME"><input name="subject" value={subject} onChange={(e) => setSubject(e.target.value)} placeholder="alice" /></Field>
            <Field label="GPUs"><input name="gpus" value={fields.gpus} onChange={(e) => setFields({ ...fields, gpus: e.target.value })} placeholder="no limit" /></Field>
            <Field label="GPU memory"><input name="gpu-memory" value={fields.gpuMemory} onChange={(e) => setFields({ ...fields, gpuMemory: e.target.value })} placeholder="no limit" /></Field>
            <Field label="cpus"><input name="cpus" value={fields.cpus} onChange={(e) => setFields({ ...fields, cpus: e.target.value })} placeholder="no limit" /></Field>
            <Field label="Running jobs" error={quotaError}><input name="running" value={fields.running} onChange={(e) => setFields({ ...fields, running: e.target.value })} placeholder="no limit" /></Field>
            <button className="primary" type="submit" disabled={!subject.trim()}>Set</button>
          </form>
          <p className="muted small">All fields empty removes the quota. A job over its user's quota waits, saying so; one that could never fit is refused.</p>
          <h2>Audit log</h2>
          <div className="filters">
            <select aria-label="audit user" value={auditUser} onChange={(e) => setAuditUser(e.target.value)}>
              <option value="">everyone</option>
              {(users.data ?? []).map((u) => <option key={u.name} value={u.name}>{u.name}</option>)}
            </select>
          </div>
          <ErrorNote error={audit.error} />
          <table className="table" data-testid="audit-table">
            <thead>
              <tr><th>When</th><th>User</th><th>From</th><th>Action</th><th>Target</th><th>Status</th><th>Detail</th></tr>
            </thead>
            <tbody>
              {(audit.data ?? []).map((a) => (
                <tr key={a.id}>
                  <td className="small">{new Date(a.at_ms).toLocaleString()}</td>
                  <td>{a.user}</td>
                  <td className="muted small">{a.origin}</td>
                  <td>{a.action}</td>
                  <td>{a.target}</td>
                  <td className={a.status != null && a.status >= 400 ? "reason" : ""}>{a.status ?? ""}</td>
                  <td className="small">{a.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
