// Models: the registry's list (latest version, aliases, last update), filtered by name or by a
// filter in MLflow's grammar.
import { useEffect, useState } from "react";
import { Link } from "react-router-dom";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { Empty, ErrorNote } from "../../components/ui";
import { useLive } from "../../live";
import { ago } from "../../lib/format";
import { models } from "./api";
import { aliasChips, filterOf, nameMatches, v } from "./model";
import "../experiments/experiments.css";
import "./models.css";

export function Models() {
  const { api } = useLive();
  const [text, setText] = useState("");
  const [filter, setFilter] = useState("");

  // The box filters as one types, a moment after the last key.
  useEffect(() => {
    const t = window.setTimeout(() => setFilter(text), 250);
    return () => window.clearTimeout(t);
  }, [text]);

  const { server, local } = filterOf(filter);
  // A refused filter keeps the last list on screen under its error.
  const query = useQuery({
    queryKey: keys.modelList(server ?? ""),
    queryFn: ({ signal }) => models.list(api, server, signal),
    placeholderData: keepPreviousData,
    retry: false,
  });
  const list = query.data ?? (query.error ? [] : undefined);
  const error = query.error;

  const shown = (list ?? []).filter((m) => nameMatches(m.name, local));
  return (
    <div className="page">
      <h1>Models</h1>
      <form className="filters run-filter" onSubmit={(e) => {
        e.preventDefault();
        setFilter(text);
      }}>
        <input
          type="search"
          name="model-filter"
          placeholder="a name, or name LIKE 'iris%' and tags.team = 'vision'"
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
      </form>
      {error ? (
        <div data-testid="filter-error">
          <ErrorNote error={error} />
        </div>
      ) : null}
      {list && shown.length === 0 && !error && (
        <Empty title={filter.trim() ? "No model matches" : "No models yet"}>
          {filter.trim() ? (
            "Change or clear the filter."
          ) : (
            <>Register a version with <code>petri model register NAME DIR</code>, or from a run: <code>--source runs:/RUN/model</code>.</>
          )}
        </Empty>
      )}
      {shown.length > 0 && (
        <table className="table" data-testid="models-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Latest</th>
              <th>Aliases</th>
              <th>Updated</th>
              <th>Description</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((m) => (
              <tr key={m.name} data-model={m.name}>
                <td><Link to={`/models/${encodeURIComponent(m.name)}`}>{m.name}</Link></td>
                <td>{v(m.latest_versions?.[0]?.version)}</td>
                <td>
                  <span className="alias-chips">
                    {aliasChips(m.aliases).map((a) => (
                      <span key={a.alias} className="badge tone-busy alias-chip" data-alias={a.alias} title={`${a.alias} → ${v(a.version)}`}>
                        {a.alias} <span className="alias-to">{v(a.version)}</span>
                      </span>
                    ))}
                    {!m.aliases?.length && <span className="muted">–</span>}
                  </span>
                </td>
                <td title={new Date(m.last_updated_timestamp).toLocaleString()}>{ago(m.last_updated_timestamp)}</td>
                <td className="model-description">{m.description || <span className="muted">–</span>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {!list && !error && <p className="muted">Loading…</p>}
    </div>
  );
}
