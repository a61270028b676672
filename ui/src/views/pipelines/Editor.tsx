// The pipeline canvas: a palette to drag steps from, the graph, the YAML beside it, and the
// selected step's properties. The YAML text is the one state; the graph is read from it and every
// canvas gesture is an edit of its Document (see doc.ts).
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { DragEvent } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { Background, Controls, MarkerType, ReactFlow, ReactFlowProvider, applyNodeChanges, useReactFlow } from "@xyflow/react";
import type { Connection, Edge, EdgeChange, NodeChange, OnBeforeDelete } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import type { Document } from "yaml";
import { useQueryClient } from "@tanstack/react-query";
import { keys } from "../../api/keys";
import { useLive } from "../../live";
import { ErrorNote } from "../../components/ui";
import { PipelineError, layoutNodes, pipelines } from "./api";
import type { Component, JsonSchema, PipelineProblem, PipelineSummary, Validation } from "./api";
import {
  EditRefused, addNeed, addStep, componentStep, edit, findCycle, newPipelineText, parse, readGraph, readParams, removeNeed,
  removeStep, topValue,
} from "./doc";
import type { PipelineGraph } from "./doc";
import { NODE_H, NODE_W, autoLayout, edgeSides, placeNew } from "./layout";
import type { Pos, Positions } from "./layout";
import { FALLBACK_FIELDS, stepFields } from "./schema";
import { StepPanel } from "./StepPanel";
import { nodeTypes } from "./StepNode";
import type { StepFlowNode, StepNodeData } from "./StepNode";
import { RunDialog } from "./RunDialog";
import "./pipelines.css";

const DND = "application/x-petri-step";

type PaletteItem = { kind: "component" | "pipeline" | "command"; name: string };

type Problem = PipelineProblem & { from: "yaml" | "daemon" | "canvas" };

export function PipelineEditor() {
  return (
    <ReactFlowProvider>
      <Editor />
    </ReactFlowProvider>
  );
}

function Editor() {
  const { name: routeName } = useParams();
  const { api } = useLive();
  const client = useQueryClient();
  const navigate = useNavigate();
  const flow = useReactFlow();

  const [text, setTextState] = useState<string>();
  const textRef = useRef<string | undefined>(undefined);
  const setText = useCallback((t: string) => {
    textRef.current = t;
    setTextState(t);
  }, []);
  const [savedText, setSavedText] = useState<string>();
  const [baseDir, setBaseDir] = useState<string>();
  const [layoutDirty, setLayoutDirty] = useState(false);
  const [loadError, setLoadError] = useState<unknown>();
  const [error, setError] = useState<unknown>();
  const [notice, setNotice] = useState<string>();
  const [components, setComponents] = useState<Component[]>([]);
  const [paletteError, setPaletteError] = useState<unknown>();
  const [savedPipelines, setSavedPipelines] = useState<PipelineSummary[]>([]);
  const [schema, setSchema] = useState<JsonSchema>();
  const [validation, setValidation] = useState<{ text: string; result: Validation }>();
  const [validationError, setValidationError] = useState<string>();
  const [selected, setSelected] = useState<string>();
  const [selectedEdge, setSelectedEdge] = useState<string>();
  const [view, setView] = useState<"canvas" | "yaml" | "both">("canvas");
  const [nodes, setNodes] = useState<StepFlowNode[]>([]);
  const [busy, setBusy] = useState(false);
  const [laying, setLaying] = useState(false);
  /** Which engine made the last automatic layout: "elk", or "rank" when elk could not load. */
  const [layoutBy, setLayoutBy] = useState<string>();
  const [runOpen, setRunOpen] = useState(false);
  const [overwrite, setOverwrite] = useState<string>();
  /** Counts the pipelines opened here, so that the nodes take the positions of each. */
  const [opened, setOpened] = useState(0);
  const pendingPos = useRef<Positions>({});
  const fitted = useRef(false);
  const autoPending = useRef(false);
  const canvasRef = useRef<HTMLDivElement>(null);
  const yamlArea = useRef<HTMLTextAreaElement>(null);

  // Open: the saved YAML and positions; YAML without positions is laid out by elk.
  useEffect(() => {
    let gone = false;
    setLoadError(undefined);
    setSelected(undefined);
    fitted.current = false;
    (async () => {
      if (!routeName) {
        fitted.current = true; // nothing to fit; the first drop stays where it fell
        setBaseDir(undefined);
        const t = newPipelineText("untitled");
        pendingPos.current = {};
        setText(t);
        setSavedText(undefined);
        setOpened((n) => n + 1);
        return;
      }
      const p = await pipelines.get(api, routeName);
      if (gone) return;
      const g = readGraph(parse(p.yaml));
      const stored = layoutNodes(p.layout);
      // Written by hand (no positions): laid out by elk once the canvas is there to measure.
      autoPending.current = g.steps.length > 0 && g.steps.every((s) => !stored[s.name]);
      if (autoPending.current) setLaying(true);
      pendingPos.current = { ...stored };
      setBaseDir(p.base_dir ?? undefined);
      setText(p.yaml);
      setSavedText(p.yaml);
      setLayoutDirty(false);
      setOpened((n) => n + 1);
    })().catch((e) => !gone && setLoadError(e));
    return () => {
      gone = true;
    };
  }, [api, routeName, setText]);

  // The palette and the schema; each may be missing on an older daemon.
  useEffect(() => {
    pipelines.components(api).then(setComponents, setPaletteError);
    pipelines.list(api).then(setSavedPipelines, () => {});
    pipelines.schema(api).then(setSchema, () => {});
  }, [api]);

  const parsed = useMemo(() => (text === undefined ? undefined : parse(text)), [text]);
  const lastGood = useRef<PipelineGraph>({ steps: [], edges: [] });
  const graph = useMemo(() => {
    if (parsed && parsed.problems.length === 0) lastGood.current = readGraph(parsed);
    return lastGood.current;
  }, [parsed]);
  const yamlBroken = (parsed?.problems.length ?? 0) > 0;
  const fields = useMemo(() => {
    const f = stepFields(schema);
    return f.length ? f : FALLBACK_FIELDS;
  }, [schema]);
  const params = useMemo(() => (parsed && !yamlBroken ? readParams(parsed.doc) : []), [parsed, yamlBroken]);

  // Live validation by the daemon, a moment after the last change.
  useEffect(() => {
    if (text === undefined) return;
    let gone = false;
    const t = window.setTimeout(() => {
      pipelines.validate(api, text).then(
        (result) => {
          if (gone) return;
          setValidation({ text, result });
          setValidationError(undefined);
        },
        (e) => !gone && setValidationError((e as Error).message),
      );
    }, 400);
    return () => {
      gone = true;
      window.clearTimeout(t);
    };
  }, [api, text]);

  const problems: Problem[] = useMemo(() => {
    const out: Problem[] = (parsed?.problems ?? []).map((p) => ({ ...p, from: "yaml" as const }));
    if (!yamlBroken) {
      out.push(...(validation?.result.errors ?? []).map((p) => ({ ...p, from: "daemon" as const })));
      // Without the daemon's word, a loop is still worth saying.
      const loop = validationError ? findCycle(graph.edges) : undefined;
      if (loop) out.push({ message: `the steps need each other in a loop: ${loop.join(" → ")}`, from: "canvas", step: loop[0] });
    }
    return out;
  }, [parsed, yamlBroken, validation, validationError, graph]);

  const stepProblems = useMemo(() => {
    const m = new Map<string, string[]>();
    for (const p of problems) {
      const step = p.step ?? p.edge?.[1];
      if (step) m.set(step, [...(m.get(step) ?? []), p.message]);
    }
    return m;
  }, [problems]);
  const edgeProblems = useMemo(() => {
    const m = new Map<string, string[]>();
    for (const p of problems) if (p.edge) m.set(`${p.edge[0]}->${p.edge[1]}`, [...(m.get(`${p.edge[0]}->${p.edge[1]}`) ?? []), p.message]);
    return m;
  }, [problems]);

  // Nodes follow the graph; positions stay with the nodes (dragged, dropped, or laid out).
  useEffect(() => {
    const pending = pendingPos.current;
    setNodes((prev) => {
      const byId = new Map(prev.map((n) => [n.id, n]));
      const known: Positions = Object.fromEntries(prev.filter((n) => graph.steps.some((s) => s.name === n.id)).map((n) => [n.id, n.position]));
      for (const [k, v] of Object.entries(pending)) if (graph.steps.some((s) => s.name === k)) known[k] = v;
      return graph.steps.map((s) => {
        const old = byId.get(s.name);
        const position: Pos = pending[s.name] ?? old?.position ?? placeNew(known, [...s.needs, ...s.refs.map((r) => r.step)]);
        known[s.name] = position;
        const data: StepNodeData = { name: s.name, kind: s.kind, uses: s.uses, forEach: s.forEach, errors: stepProblems.get(s.name) ?? [] };
        const isSelected = s.name === selected;
        if (old && old.position === position && old.selected === isSelected && JSON.stringify(old.data) === JSON.stringify(data)) return old;
        return { ...old, id: s.name, type: "step" as const, position, data, width: NODE_W, height: NODE_H, selected: isSelected };
      });
    });
  }, [graph, stepProblems, selected, opened]);
  useEffect(() => {
    // Positions handed over are used once the nodes exist.
    for (const n of nodes) delete pendingPos.current[n.id];
    if (autoPending.current && nodes.length > 0) {
      autoPending.current = false;
      fitted.current = true;
      void relayoutRef.current(false);
    }
    // A pipeline that opens with steps is shown whole, once (not at every drop).
    if (!fitted.current && nodes.length > 0) {
      fitted.current = true;
      window.requestAnimationFrame(() => void flow.fitView({ padding: 0.2, maxZoom: 1 }));
    }
  }, [nodes, flow]);

  const edges: Edge[] = useMemo(() => {
    const at = new Map(nodes.map((n) => [n.id, n.position]));
    return graph.edges.map((e) => {
      const id = `${e.from}->${e.to}`;
      const errs = edgeProblems.get(id);
      const from = at.get(e.from);
      const to = at.get(e.to);
      return {
        id,
        source: e.from,
        target: e.to,
        ...(from && to ? edgeSides(from, to) : {}),
        selected: id === selectedEdge,
        className: `${e.explicit ? "edge-needs" : "edge-ref"}${errs ? " edge-error" : ""}`,
        markerEnd: { type: MarkerType.ArrowClosed, width: 12, height: 12, color: "var(--muted)" },
        label: errs ? `! ${errs[0]}` : undefined,
        data: { explicit: e.explicit, implied: e.implied },
        ariaLabel: `${e.from} to ${e.to}`,
      };
    });
  }, [graph, edgeProblems, selectedEdge, nodes]);

  /** Edits the YAML's Document; a refusal is said on the spot. */
  const apply = useCallback(
    (change: (doc: Document) => void): boolean => {
      const current = textRef.current;
      if (current === undefined) return false;
      try {
        setText(edit(current, change));
        setNotice(undefined);
        return true;
      } catch (e) {
        if (e instanceof EditRefused) {
          setNotice(e.message);
          return false;
        }
        throw e;
      }
    },
    [setText],
  );

  const onNodesChange = useCallback((changes: NodeChange<StepFlowNode>[]) => {
    // Removal goes through onBeforeDelete (an edit of the YAML); everything else is the canvas's.
    const kept = changes.filter((c) => c.type !== "remove");
    if (kept.some((c) => c.type === "position" && !c.dragging)) setLayoutDirty(true);
    setNodes((ns) => applyNodeChanges(kept, ns));
  }, []);
  const onEdgesChange = useCallback((changes: EdgeChange[]) => {
    for (const c of changes) {
      if (c.type === "select") setSelectedEdge((cur) => (c.selected ? c.id : cur === c.id ? undefined : cur));
    }
  }, []);
  const onConnect = useCallback(
    (c: Connection) => {
      if (c.source && c.target) apply((doc) => addNeed(doc, c.source, c.target));
    },
    [apply],
  );
  const onBeforeDelete: OnBeforeDelete<StepFlowNode, Edge> = useCallback(
    async ({ nodes: gone, edges: cut }) => {
      const names = new Set(gone.map((n) => n.id));
      apply((doc) => {
        for (const n of gone) removeStep(doc, n.id);
        for (const e of cut) if (!names.has(e.source) && !names.has(e.target)) removeNeed(doc, e.source, e.target);
      });
      if (selected && names.has(selected)) setSelected(undefined);
      return false;
    },
    [apply, selected],
  );

  const addFromPalette = useCallback(
    async (item: PaletteItem, at?: Pos) => {
      let base = item.name;
      let body: Record<string, unknown>;
      if (item.kind === "component") {
        const c = components.find((x) => x.name === item.name);
        body = componentStep(item.name, c?.inputs ?? {});
      } else if (item.kind === "pipeline") {
        let withs: Record<string, unknown> = {};
        try {
          const p = await pipelines.get(api, item.name);
          withs = Object.fromEntries(readParams(parse(p.yaml).doc).map((x) => [x.name, x.default ?? null]));
        } catch {
          /* its params can be filled in by hand */
        }
        body = Object.keys(withs).length ? { uses: `pipeline:${item.name}`, with: withs } : { uses: `pipeline:${item.name}` };
      } else {
        base = "command";
        body = { run: null };
      }
      // Pressing + puts the step in the middle of what the canvas shows, below any step there.
      if (!at) {
        const box = canvasRef.current?.getBoundingClientRect();
        if (box && box.width > 0) {
          const c = flow.screenToFlowPosition({ x: box.x + box.width / 2, y: box.y + box.height / 2 });
          at = { x: Math.round(c.x - NODE_W / 2), y: Math.round(c.y - NODE_H / 2) };
          const taken = flow.getNodes();
          const clash = (p: Pos) => taken.some((n) => Math.abs(n.position.x - p.x) < NODE_W && Math.abs(n.position.y - p.y) < NODE_H + 10);
          for (let i = 0; i < 50 && clash(at); i++) at = { x: at.x + 24, y: at.y + NODE_H / 2 };
        }
      }
      let added = "";
      if (apply((doc) => void (added = addStep(doc, base, body)))) {
        if (at) pendingPos.current[added] = at;
        setSelected(added);
      }
    },
    [api, apply, components, flow],
  );

  const onDrop = useCallback(
    (e: DragEvent) => {
      e.preventDefault();
      const raw = e.dataTransfer.getData(DND);
      if (!raw) return;
      const at = flow.screenToFlowPosition({ x: e.clientX, y: e.clientY });
      void addFromPalette(JSON.parse(raw) as PaletteItem, { x: Math.round(at.x - NODE_W / 2), y: Math.round(at.y - NODE_H / 2) });
    },
    [addFromPalette, flow],
  );

  /** Lays the whole graph out with elk, in the canvas's proportions. */
  const relayout = async (byUser = true) => {
    setLaying(true);
    const box = canvasRef.current?.getBoundingClientRect();
    const aspect = box && box.height > 0 ? box.width / box.height : undefined;
    const { pos, by } = await autoLayout(graph.steps.map((s) => s.name), graph.edges, aspect);
    setLayoutBy(by);
    setNodes((ns) => ns.map((n) => (pos[n.id] ? { ...n, position: pos[n.id] } : n)));
    if (byUser) setLayoutDirty(true);
    window.setTimeout(() => {
      void flow.fitView({ padding: 0.15, maxZoom: 1 });
      setLaying(false);
    }, 30);
  };
  const relayoutRef = useRef(relayout);
  relayoutRef.current = relayout;

  const name = parsed && !yamlBroken ? (topValue(parsed.doc, "name") as string | undefined) : undefined;
  const dirty = text !== savedText || layoutDirty;

  const save = useCallback(async () => {
    const current = textRef.current;
    if (current === undefined) return;
    const target = (name ?? routeName ?? "").toString().trim();
    setError(undefined);
    if (!target) {
      setError(new Error("give the pipeline a name on its `name:` line first"));
      return;
    }
    if (target !== routeName && savedPipelines.some((p) => p.name === target) && overwrite !== target) {
      setOverwrite(target);
      setNotice(`there is a saved pipeline named ${target} already: Save again replaces it`);
      return;
    }
    setBusy(true);
    try {
      const layout = { nodes: Object.fromEntries(nodes.map((n) => [n.id, { x: Math.round(n.position.x), y: Math.round(n.position.y) }])) };
      // A pipeline saved from a file keeps the folder its relative paths are read from.
      await pipelines.save(api, target, current, layout, baseDir);
      // No event announces a save: the list and this pipeline's document are read again.
      void client.invalidateQueries({ queryKey: keys.pipelines });
      setSavedText(current);
      setLayoutDirty(false);
      setNotice(undefined);
      if (target !== routeName) navigate(`/pipelines/${encodeURIComponent(target)}`, { replace: true });
    } catch (e) {
      if (e instanceof PipelineError && e.problems.length) setValidation({ text: current, result: { valid: false, errors: e.problems } });
      setError(e);
    } finally {
      setBusy(false);
    }
  }, [api, baseDir, client, name, navigate, nodes, overwrite, routeName, savedPipelines]);

  // Ctrl+S saves; leaving with unsaved changes asks.
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if ((e.ctrlKey || e.metaKey) && e.key === "s") {
        e.preventDefault();
        void save();
      }
    };
    const onUnload = (e: BeforeUnloadEvent) => {
      if (dirty) e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    window.addEventListener("beforeunload", onUnload);
    return () => {
      window.removeEventListener("keydown", onKey);
      window.removeEventListener("beforeunload", onUnload);
    };
  }, [save, dirty]);

  const goToLine = (line?: number | null) => {
    if (!line || text === undefined) return;
    if (view === "canvas") setView("both");
    window.setTimeout(() => {
      const ta = yamlArea.current;
      if (!ta) return;
      const lines = text.split("\n");
      const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
      ta.focus();
      ta.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
      ta.scrollTop = Math.max(0, (line - 3) * 18);
    }, 30);
  };

  if (loadError) {
    return (
      <div className="page">
        <h1><Link to="/pipelines" className="muted">Pipelines</Link> / {routeName}</h1>
        <ErrorNote error={loadError} />
      </div>
    );
  }
  if (text === undefined || !parsed) return <div className="page"><p className="muted">Loading…</p></div>;

  const selectedStep = graph.steps.find((s) => s.name === selected);
  const others = savedPipelines.filter((p) => p.name !== (routeName ?? name));

  return (
    <div className="editor-page">
      <div className="editor-head">
        <h1>
          <Link to="/pipelines" className="muted">Pipelines</Link> / {name ?? routeName ?? "new"}
          {dirty ? <span className="badge tone-idle" data-testid="dirty">unsaved</span> : <span className="badge tone-ok" data-testid="saved">saved</span>}
        </h1>
        <div className="actions">
          <div className="seg-buttons" role="tablist">
            {(["canvas", "both", "yaml"] as const).map((v) => (
              <button key={v} role="tab" aria-selected={view === v} className={view === v ? "chip on" : "chip"} onClick={() => setView(v)}>
                {v === "canvas" ? "Canvas" : v === "yaml" ? "YAML" : "Side by side"}
              </button>
            ))}
          </div>
          <button onClick={() => void relayout()} disabled={laying || yamlBroken}>{laying ? "Laying out…" : "Auto layout"}</button>
          <button className="primary" onClick={save} disabled={busy || (!dirty && !!routeName)} title="Save (Ctrl+S)">{busy ? "Saving…" : "Save"}</button>
          <button onClick={() => setRunOpen(true)} disabled={dirty || !routeName} title={dirty ? "save first" : undefined}>Run</button>
        </div>
      </div>
      <ErrorNote error={error} onDismiss={() => setError(undefined)} />
      {notice && (
        <div className="notice" role="status" data-testid="notice">
          {notice}
          <button className="link" aria-label="dismiss" onClick={() => setNotice(undefined)}>×</button>
        </div>
      )}
      <div className={`editor view-${view}`}>
        <Palette components={components} pipelines={others} error={paletteError} onAdd={(item) => void addFromPalette(item)} />
        <div className="editor-center">
          <div className="editor-main">
            {/* Kept mounted in the YAML view, so the canvas keeps its zoom and scroll. */}
            <div
              ref={canvasRef}
              className={`canvas${view === "yaml" ? " hidden" : ""}${laying ? " laying" : ""}`}
              onDragOver={(e) => {
                e.preventDefault();
                e.dataTransfer.dropEffect = "copy";
              }}
              onDrop={onDrop}
              data-testid="canvas"
              data-layout={layoutBy}
            >
              <ReactFlow<StepFlowNode, Edge>
                nodes={nodes}
                edges={edges}
                nodeTypes={nodeTypes}
                onNodesChange={onNodesChange}
                onEdgesChange={onEdgesChange}
                onConnect={onConnect}
                onBeforeDelete={onBeforeDelete}
                onNodeClick={(_, n) => setSelected(n.id)}
                onPaneClick={() => setSelected(undefined)}
                deleteKeyCode={["Backspace", "Delete"]}
                nodesConnectable={!yamlBroken}
                nodesDraggable
                minZoom={0.2}
                proOptions={{ hideAttribution: true }}
              >
                <Background gap={20} />
                <Controls showInteractive={false} />
              </ReactFlow>
              {graph.steps.length === 0 && (
                <div className="canvas-empty">Drag a component from the left onto the canvas, or write the steps in the YAML.</div>
              )}
              {yamlBroken && <div className="canvas-broken">The YAML does not parse: the canvas shows it as it last did, read-only until it is fixed.</div>}
            </div>
            {view !== "canvas" && (
              <textarea
                ref={yamlArea}
                className="yaml-text"
                name="yaml"
                data-testid="yaml"
                value={text}
                spellCheck={false}
                onChange={(e) => setText(e.target.value)}
              />
            )}
          </div>
          <Problems problems={problems} validationError={validationError} checked={validation?.text === text} onPick={(p) => {
            if (p.step && graph.steps.some((s) => s.name === p.step)) setSelected(p.step);
            if (p.from === "yaml" || !p.step) goToLine(p.line);
          }} />
        </div>
        <aside className="editor-side">
          {selectedStep && !yamlBroken ? (
            <StepPanel
              key={selectedStep.name}
              doc={parsed.doc}
              graph={graph}
              step={selectedStep}
              components={components}
              fields={fields}
              params={params}
              problems={stepProblems.get(selectedStep.name) ?? []}
              apply={apply}
              onRenamed={(from, to) => {
                const n = nodes.find((x) => x.id === from);
                if (n) pendingPos.current[to] = n.position;
                setSelected(to);
              }}
              onDeleted={() => setSelected(undefined)}
            />
          ) : (
            <PipelineFacts parsed={parsed} />
          )}
        </aside>
      </div>
      {runOpen && routeName && (
        <RunDialog api={api} pipeline={routeName} yaml={text} onClose={() => setRunOpen(false)} onStarted={(run) => navigate(`/pipeline-runs/${run.id}`)} />
      )}
    </div>
  );
}

function Palette(props: { components: Component[]; pipelines: PipelineSummary[]; error: unknown; onAdd: (item: PaletteItem) => void }) {
  const [filter, setFilter] = useState("");
  const q = filter.trim().toLowerCase();
  const match = (s: string, d?: string | null) => !q || s.toLowerCase().includes(q) || (d ?? "").toLowerCase().includes(q);
  const item = (it: PaletteItem, title: string | undefined, broken?: string | null) => (
    <div
      key={`${it.kind}:${it.name}`}
      className={`palette-item kind-${it.kind}${broken ? " broken" : ""}`}
      draggable={!broken}
      onDragStart={(e) => {
        e.dataTransfer.setData(DND, JSON.stringify(it));
        e.dataTransfer.effectAllowed = "copy";
      }}
      title={broken ?? title}
      data-testid={`palette-${it.kind}-${it.name}`}
    >
      <span className="palette-name">{it.kind === "command" ? "Command" : it.name}</span>
      <button className="link" disabled={!!broken} aria-label={`add ${it.name}`} onClick={() => props.onAdd(it)}>+</button>
    </div>
  );
  const builtin = props.components.filter((c) => c.source !== "user" && match(c.name, c.description));
  const user = props.components.filter((c) => c.source === "user" && match(c.name, c.description));
  const pipes = props.pipelines.filter((p) => match(p.name, p.description));
  return (
    <aside className="palette" data-testid="palette">
      <input type="search" placeholder="Filter" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="filter the palette" />
      <h3>Steps</h3>
      {item({ kind: "command", name: "command" }, "A step that runs a command or a shell script")}
      {props.error ? <ErrorNote error={props.error} /> : null}
      {builtin.length > 0 && <h3>Built-in components</h3>}
      {builtin.map((c) => item({ kind: "component", name: c.name }, c.description ?? undefined, c.error))}
      {user.length > 0 && <h3>Your components</h3>}
      {user.map((c) => item({ kind: "component", name: c.name }, c.description ?? undefined, c.error))}
      {pipes.length > 0 && <h3>Saved pipelines</h3>}
      {pipes.map((p) => item({ kind: "pipeline", name: p.name }, p.description ?? undefined))}
      <p className="muted small">Drag onto the canvas, or press +. Drag from a step's right or bottom dot to another step to make that one wait for it.</p>
    </aside>
  );
}

function Problems(props: { problems: Problem[]; validationError?: string; checked: boolean; onPick: (p: Problem) => void }) {
  const { problems } = props;
  return (
    <div className="problems" data-testid="problems" data-count={problems.length}>
      <div className="problems-head">
        {problems.length === 0 ? (
          props.validationError ? (
            <span className="muted">Not checked by the daemon: {props.validationError}</span>
          ) : props.checked ? (
            <span className="ok-text" data-testid="valid">✓ The daemon accepts this pipeline.</span>
          ) : (
            <span className="muted">Checking…</span>
          )
        ) : (
          <strong>{problems.length} problem{problems.length === 1 ? "" : "s"}</strong>
        )}
      </div>
      {problems.length > 0 && (
        <ul>
          {problems.map((p, i) => (
            <li key={i}>
              <button className="link problem" onClick={() => props.onPick(p)}>
                {p.line ? <span className="muted">{p.line}:{p.column ?? 1}</span> : null} {p.step ? <code>{p.step}</code> : null}
                {p.edge ? <code>{p.edge[0]} → {p.edge[1]}</code> : null} {p.message}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function PipelineFacts(props: { parsed: ReturnType<typeof parse> }) {
  const { parsed } = props;
  if (parsed.problems.length) return <div className="step-panel"><p className="muted">Fix the YAML to edit the steps.</p></div>;
  const g = readGraph(parsed);
  const params = readParams(parsed.doc);
  const description = topValue(parsed.doc, "description");
  return (
    <div className="step-panel">
      <h2 className="panel-title">Pipeline</h2>
      {typeof description === "string" && description && <p>{description}</p>}
      <p className="muted">{g.steps.length} step{g.steps.length === 1 ? "" : "s"}. Select a step to edit it.</p>
      {params.length > 0 && (
        <>
          <h3>Params</h3>
          <ul className="plain">
            {params.map((p) => <li key={p.name}><code>{p.name}</code> {p.default !== undefined && <span className="muted">= {JSON.stringify(p.default)}</span>}</li>)}
          </ul>
        </>
      )}
      <p className="muted small">The name, description, params and triggers are edited in the YAML.</p>
    </div>
  );
}

