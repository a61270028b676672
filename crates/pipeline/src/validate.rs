//! One validation pass over a pipeline text: YAML shape, names, references, types of `when`,
//! components and their inputs, cycles. Every problem is reported with its line and column and
//! nothing is queued; what passes becomes a [`Plan`] the engine runs.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;
use petri_domain::JobSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::component::Components;
use crate::expr::{self, Template, Ty};
use crate::locate::Positions;
use crate::spec::{OutputKind, OutputSpec, PipelineSpec, Scalar, StepSpec, ValueType};

/// One problem, where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Diagnostic {
    pub message: String,
    /// 1-based; absent when the text has no such place (a default of a component).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The dotted path in the document, e.g. `steps.train.needs.0`.
    pub path: String,
    /// The step it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The edge it is about (`needs`): from, to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<(String, String)>,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// What a saved pipeline offers when used as a step.
#[derive(Clone, Debug, Default)]
pub struct PipelineSig {
    pub params: IndexMap<String, (ValueType, bool)>,
    pub outputs: BTreeSet<String>,
}

/// What validation checks `uses:` against.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub components: Components,
    pub pipelines: BTreeMap<String, PipelineSig>,
}

/// How a step runs.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    Command,
    Component {
        name: String,
        dir: std::path::PathBuf,
        digest: String,
        inputs: IndexMap<String, crate::component::InputSpec>,
    },
    Pipeline {
        name: String,
    },
}

/// A `for_each`: a literal list or an expression.
#[derive(Clone, Debug, PartialEq)]
pub enum ForEach {
    List(Vec<Value>),
    Expr(Template),
}

/// A step, checked and ready to render.
#[derive(Clone, Debug, PartialEq)]
pub struct StepPlan {
    pub name: String,
    /// Explicit and implied (by references), sorted.
    pub needs: Vec<String>,
    pub kind: StepKind,
    /// The job fields (a component's command and image merged under the step's own).
    pub job: serde_yaml_ng::Mapping,
    pub when: Option<Template>,
    pub for_each: Option<ForEach>,
    pub with: IndexMap<String, Template>,
    pub outputs: IndexMap<String, OutputSpec>,
    pub cache: bool,
}

/// A validated pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub spec: PipelineSpec,
    /// In topological order.
    pub steps: IndexMap<String, StepPlan>,
    pub outputs: IndexMap<String, Template>,
}

impl Plan {
    pub fn name(&self) -> Option<&str> {
        self.spec.name.as_deref()
    }
}

/// Letters, digits, `_` and `-`, starting with a letter or `_`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether a value fits a declared type (text that reads as one counts: YAML and the CLI give
/// text).
pub fn check_type(kind: ValueType, v: &Value) -> Result<(), String> {
    let ok = match kind {
        ValueType::String | ValueType::File | ValueType::Dir => {
            matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
        }
        ValueType::Number => {
            matches!(v, Value::Number(_))
                || v.as_str().is_some_and(|s| s.trim().parse::<f64>().is_ok())
        }
        ValueType::Boolean => {
            matches!(v, Value::Bool(_)) || matches!(v.as_str(), Some("true" | "false"))
        }
        ValueType::List => {
            matches!(v, Value::Array(_))
                || v.as_str()
                    .is_some_and(|s| serde_json::from_str::<Vec<Value>>(s).is_ok())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}, got {v}", type_name(kind)))
    }
}

fn type_name(k: ValueType) -> &'static str {
    match k {
        ValueType::String => "a string",
        ValueType::Number => "a number",
        ValueType::Boolean => "true or false",
        ValueType::List => "a list",
        ValueType::File => "a file path",
        ValueType::Dir => "a folder path",
    }
}

fn ty_of(k: ValueType) -> Ty {
    match k {
        ValueType::Number => Ty::Num,
        ValueType::Boolean => Ty::Bool,
        ValueType::List => Ty::List,
        _ => Ty::Str,
    }
}

/// Fields of a job spec that may hold expressions.
const TEMPLATED: &[&str] = &["command", "run", "env", "image", "workdir", "name"];

struct Checker<'a> {
    pos: Positions,
    out: Vec<Diagnostic>,
    catalog: &'a Catalog,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, step: Option<&str>, message: impl Into<String>) {
        let p = self.pos.nearest(path);
        self.out.push(Diagnostic {
            message: message.into(),
            line: p.map(|p| p.line),
            column: p.map(|p| p.column),
            path: path.to_string(),
            step: step.map(str::to_string),
            edge: None,
        });
    }
}

/// Reads and checks a pipeline text.
pub fn validate(text: &str, catalog: &Catalog) -> Result<Plan, Vec<Diagnostic>> {
    let spec: PipelineSpec = match serde_yaml_ng::from_str(text) {
        Ok(s) => s,
        Err(e) => {
            let loc = e.location();
            return Err(vec![Diagnostic {
                message: friendly_serde(&e.to_string()),
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                path: String::new(),
                step: None,
                edge: None,
            }]);
        }
    };
    let mut c = Checker {
        pos: Positions::of(text),
        out: Vec::new(),
        catalog,
    };
    let plan = check(spec, &mut c);
    if c.out.is_empty() {
        Ok(plan)
    } else {
        Err(c.out)
    }
}

/// serde's message without its own " at line X column Y" (the diagnostic has them).
fn friendly_serde(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn check(spec: PipelineSpec, c: &mut Checker) -> Plan {
    if let Some(n) = &spec.name
        && !is_name(n)
    {
        c.report(
            "name",
            None,
            format!("`{n}` is not a pipeline name (letters, digits, _ and -)"),
        );
    }
    if spec.steps.is_empty() {
        c.report("steps", None, "the pipeline has no steps");
    }
    for (k, p) in &spec.params {
        if !is_name(k) {
            c.report(
                &format!("params.{k}"),
                None,
                format!("`{k}` is not a param name"),
            );
        }
        if let Some(d) = p.default_value()
            && let Err(m) = check_type(p.kind(), d)
        {
            c.report(
                &format!("params.{k}"),
                None,
                format!("the default of `{k}`: {m}"),
            );
        }
    }
    for (i, t) in spec.triggers.iter().enumerate() {
        if let Err(m) = crate::triggers::check(t) {
            c.report(&format!("triggers.{i}"), None, m);
        }
    }

    let mut steps: IndexMap<String, StepPlan> = IndexMap::new();
    for (name, step) in &spec.steps {
        if let Some(plan) = check_step(&spec, name, step, c) {
            steps.insert(name.clone(), plan);
        }
    }
    // References between steps: they must name steps and their outputs.
    let declared: BTreeMap<String, (bool, IndexMap<String, OutputSpec>)> = steps
        .iter()
        .map(|(n, s)| (n.clone(), (s.for_each.is_some(), outputs_of(s, c.catalog))))
        .collect();
    let names: Vec<String> = steps.keys().cloned().collect();
    for name in &names {
        let step = steps.get_mut(name).expect("listed");
        let mut implied = BTreeSet::new();
        let for_each = step.for_each.is_some();
        let component = matches!(step.kind, StepKind::Component { .. });
        let mut problems = Vec::new();
        for (field, t) in step_templates(step) {
            for e in t.exprs() {
                let mut refs = Vec::new();
                expr::refs(e, &mut refs);
                for r in refs {
                    if let Err(m) = check_ref(
                        &r,
                        &spec,
                        &declared,
                        for_each,
                        component && field.starts_with("job."),
                        &mut implied,
                    ) {
                        problems.push((field.clone(), m));
                    }
                }
            }
        }
        // `when` must be a condition, with types that fit.
        if let Some(w) = &step.when {
            let mut tyref = |p: &[String]| Ok(ref_type(p, &spec, &declared));
            match w.single() {
                Some(e) => match expr::type_of(e, &mut tyref) {
                    Ok(Ty::Bool | Ty::Any) => {}
                    Ok(other) => problems.push((
                        "when".into(),
                        format!("`when` must be a condition (true or false), not {other:?}")
                            .to_lowercase(),
                    )),
                    Err(m) => problems.push(("when".into(), m.0)),
                },
                None => problems.push((
                    "when".into(),
                    "`when` is one expression, like ${{ steps.a.outputs.ok == 'yes' }}".into(),
                )),
            }
        }
        for (field, m) in problems {
            let path = format!("steps.{name}.{}", field.trim_start_matches("job."));
            c.report(&path, Some(name), m);
        }
        for n in &step.needs {
            if !spec.steps.contains_key(n) {
                let idx = step.needs.iter().position(|x| x == n).unwrap_or(0);
                let p = format!("steps.{name}.needs.{idx}");
                let hint = petri_domain::suggest(n, spec.steps.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                c.report(&p, Some(name), format!("`needs: {n}` names no step{hint}"));
                if let Some(d) = c.out.last_mut() {
                    d.edge = Some((n.clone(), name.clone()));
                }
            }
        }
        implied.remove(name);
        step.needs.extend(implied);
        step.needs.retain(|n| spec.steps.contains_key(n));
        step.needs.sort();
        step.needs.dedup();
    }
    // Cycles.
    let order = match topo(&steps) {
        Ok(order) => order,
        Err(cycle) => {
            let first = cycle[0].clone();
            let path = format!("steps.{first}.needs");
            c.report(
                &path,
                Some(&first),
                format!(
                    "the steps need each other in a circle: {}",
                    cycle.join(" → ")
                ),
            );
            if let Some(d) = c.out.last_mut() {
                d.edge = Some((cycle[cycle.len() - 2].clone(), first));
            }
            steps.keys().cloned().collect()
        }
    };
    let mut outputs = IndexMap::new();
    for (k, text) in &spec.outputs {
        match Template::parse(text) {
            Ok(t) => {
                let mut implied = BTreeSet::new();
                for e in t.exprs() {
                    let mut refs = Vec::new();
                    expr::refs(e, &mut refs);
                    for r in refs {
                        if let Err(m) = check_ref(&r, &spec, &declared, false, false, &mut implied)
                        {
                            c.report(&format!("outputs.{k}"), None, m);
                        }
                    }
                }
                outputs.insert(k.clone(), t);
            }
            Err(e) => c.report(&format!("outputs.{k}"), None, e.0),
        }
    }
    let mut ordered = IndexMap::new();
    for n in order {
        if let Some(s) = steps.swap_remove(&n) {
            ordered.insert(n, s);
        }
    }
    Plan {
        spec,
        steps: ordered,
        outputs,
    }
}

/// A step's declared outputs (its own, or its component's, or its pipeline's as values).
fn outputs_of(s: &StepPlan, catalog: &Catalog) -> IndexMap<String, OutputSpec> {
    match &s.kind {
        StepKind::Pipeline { name } => catalog
            .pipelines
            .get(name)
            .map(|p| {
                p.outputs
                    .iter()
                    .map(|k| {
                        (
                            k.clone(),
                            OutputSpec {
                                kind: OutputKind::Value,
                                path: None,
                                description: None,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => s.outputs.clone(),
    }
}

fn step_templates(s: &StepPlan) -> Vec<(String, Template)> {
    let mut v = Vec::new();
    for key in TEMPLATED {
        if let Some(val) = s.job.get(*key) {
            for (sub, text) in strings(val, key) {
                if let Ok(t) = Template::parse(&text) {
                    v.push((format!("job.{sub}"), t));
                }
            }
        }
    }
    for (k, t) in &s.with {
        v.push((format!("with.{k}"), t.clone()));
    }
    if let Some(ForEach::Expr(t)) = &s.for_each {
        v.push(("for_each".into(), t.clone()));
    }
    if let Some(t) = &s.when {
        v.push(("when".into(), t.clone()));
    }
    v
}

fn ref_type(
    r: &[String],
    spec: &PipelineSpec,
    declared: &BTreeMap<String, (bool, IndexMap<String, OutputSpec>)>,
) -> Ty {
    match r.first().map(String::as_str) {
        Some("params") => r
            .get(1)
            .and_then(|k| spec.params.get(k))
            .map(|p| ty_of(p.kind()))
            .unwrap_or(Ty::Any),
        Some("steps") if r.get(2).map(String::as_str) == Some("state") => Ty::Str,
        Some("steps") => match (r.get(1).and_then(|s| declared.get(s)), r.get(3)) {
            (Some((true, _)), _) => Ty::List,
            (Some((false, outs)), Some(k)) => match outs.get(k) {
                Some(o) if o.kind.is_file() => Ty::Str,
                _ => Ty::Any,
            },
            _ => Ty::Any,
        },
        Some("item_index") | Some("run") => Ty::Any,
        _ => Ty::Any,
    }
}

/// Checks one reference; adds the step it names to `implied`.
fn check_ref(
    r: &[String],
    spec: &PipelineSpec,
    declared: &BTreeMap<String, (bool, IndexMap<String, OutputSpec>)>,
    for_each: bool,
    in_component: bool,
    implied: &mut BTreeSet<String>,
) -> Result<(), String> {
    let head = r.first().map(String::as_str).unwrap_or("");
    match head {
        "params" => {
            let Some(k) = r.get(1) else {
                return Err("`params` needs a name: params.KEY".into());
            };
            if spec.params.contains_key(k) {
                Ok(())
            } else {
                let hint = petri_domain::suggest(k, spec.params.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(format!(
                    "`params.{k}` is not a param of this pipeline{hint}"
                ))
            }
        }
        "steps" => {
            let Some(step) = r.get(1) else {
                return Err("`steps` needs a step: steps.NAME.outputs.KEY".into());
            };
            let Some((_, outs)) = declared.get(step) else {
                let hint = petri_domain::suggest(step, spec.steps.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(format!("`steps.{step}` names no step{hint}"));
            };
            implied.insert(step.clone());
            match r.get(2).map(String::as_str) {
                Some("state") if r.len() == 3 => Ok(()),
                Some("outputs") => match r.get(3) {
                    Some(k) if outs.contains_key(k) => Ok(()),
                    Some(k) => Err(format!(
                        "step `{step}` declares no output `{k}`{}",
                        if outs.is_empty() {
                            " (it declares none: add `outputs:` to it)".to_string()
                        } else {
                            format!(
                                "; it has {}",
                                outs.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        }
                    )),
                    None => Err(format!("write steps.{step}.outputs.KEY")),
                },
                _ => Err(format!(
                    "write steps.{step}.outputs.KEY or steps.{step}.state"
                )),
            }
        }
        "item" | "item_index" if for_each => Ok(()),
        "item" | "item_index" => Err(format!("`{head}` is only known in a step with `for_each`")),
        "run" => match r.get(1).map(String::as_str) {
            Some("id" | "number") => Ok(()),
            _ => Err("`run` has `run.id` and `run.number`".into()),
        },
        "inputs" | "component" if in_component => Ok(()),
        "inputs" | "component" => Err(format!(
            "`{head}` is known inside a component's `component.yaml` only; in a pipeline, give \
             values with `with:`"
        )),
        other => Err(format!(
            "`{other}` is not something an expression can name: use params., steps., item, run."
        )),
    }
}

fn check_step(
    spec: &PipelineSpec,
    name: &str,
    step: &StepSpec,
    c: &mut Checker,
) -> Option<StepPlan> {
    let at = |f: &str| format!("steps.{name}.{f}");
    if !is_name(name) {
        c.report(
            &format!("steps.{name}"),
            Some(name),
            format!("`{name}` is not a step name (letters, digits, _ and -)"),
        );
    }
    let mut job = step.job.clone();
    // The pipeline's secrets go to every step (after the step's own).
    if !spec.secrets.is_empty() {
        let key = serde_yaml_ng::Value::from("secrets");
        let mut all = match job.get(&key) {
            Some(serde_yaml_ng::Value::Sequence(s)) => s.clone(),
            _ => Vec::new(),
        };
        for s in &spec.secrets {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        job.insert(key, serde_yaml_ng::Value::Sequence(all));
    }
    let has_cmd = job.contains_key("command") || job.contains_key("run");
    let mut outputs = step.outputs.clone();
    let kind = match step.uses.as_deref() {
        None => {
            if !has_cmd {
                c.report(
                    &format!("steps.{name}"),
                    Some(name),
                    "the step has nothing to run: give `command`, `run` or `uses`",
                );
            }
            StepKind::Command
        }
        Some(u) if u.starts_with("pipeline:") => {
            let p = &u["pipeline:".len()..];
            if has_cmd {
                c.report(
                    &at("uses"),
                    Some(name),
                    "a step that uses a pipeline has no `command` or `run` of its own",
                );
            }
            match c.catalog.pipelines.get(p) {
                None => {
                    let hint =
                        petri_domain::suggest(p, c.catalog.pipelines.keys().map(String::as_str))
                            .map(|s| format!("; did you mean `pipeline:{s}`?"))
                            .unwrap_or_else(|| "; save it first with `petri pipeline save`".into());
                    c.report(
                        &at("uses"),
                        Some(name),
                        format!("no saved pipeline `{p}`{hint}"),
                    );
                }
                Some(sig) => {
                    for k in step.with.keys() {
                        if !sig.params.contains_key(k) {
                            c.report(
                                &at(&format!("with.{k}")),
                                Some(name),
                                format!("pipeline `{p}` has no param `{k}`"),
                            );
                        }
                    }
                    for (k, (_, required)) in &sig.params {
                        if *required && !step.with.contains_key(k) {
                            c.report(
                                &at("with"),
                                Some(name),
                                format!("pipeline `{p}` needs the param `{k}`"),
                            );
                        }
                    }
                }
            }
            StepKind::Pipeline {
                name: p.to_string(),
            }
        }
        Some(u) => match c.catalog.components.get(u) {
            None => {
                let hint = petri_domain::suggest(
                    u,
                    c.catalog.components.by_name.keys().map(String::as_str),
                )
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
                c.report(
                    &at("uses"),
                    Some(name),
                    format!("no component `{u}`{hint} (see `petri pipeline components`)"),
                );
                StepKind::Command
            }
            Some(Err(e)) => {
                c.report(
                    &at("uses"),
                    Some(name),
                    format!("component `{u}` is broken: {e}"),
                );
                StepKind::Command
            }
            Some(Ok(comp)) => {
                if has_cmd {
                    c.report(&at("uses"), Some(name), "a step that uses a component takes its command from it: remove `command`/`run`");
                }
                for (k, v) in &step.with {
                    match comp.spec.inputs.get(k) {
                        None => {
                            let hint = petri_domain::suggest(
                                k,
                                comp.spec.inputs.keys().map(String::as_str),
                            )
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default();
                            c.report(
                                &at(&format!("with.{k}")),
                                Some(name),
                                format!("component `{u}` has no input `{k}`{hint}"),
                            );
                        }
                        Some(input) => {
                            let literal = !matches!(v, Scalar::Text(t) if t.contains("${{"));
                            if literal && let Err(m) = check_type(input.kind, &v.to_json()) {
                                c.report(
                                    &at(&format!("with.{k}")),
                                    Some(name),
                                    format!("input `{k}`: {m}"),
                                );
                            }
                        }
                    }
                }
                for (k, input) in &comp.spec.inputs {
                    if input.default.is_none() && !step.with.contains_key(k) {
                        c.report(
                            &at("with"),
                            Some(name),
                            format!("component `{u}` needs the input `{k}`"),
                        );
                    }
                }
                // The component's command, image, env and resources, under the step's own.
                let mut base = serde_yaml_ng::Mapping::new();
                if let Some(cmd) = &comp.spec.command {
                    base.insert(
                        "command".into(),
                        serde_yaml_ng::to_value(cmd).unwrap_or_default(),
                    );
                }
                if let Some(run) = &comp.spec.run {
                    base.insert("run".into(), run.clone().into());
                }
                if let Some(img) = &comp.spec.image {
                    base.insert("image".into(), img.clone().into());
                }
                if !comp.spec.env.is_empty() {
                    base.insert(
                        "env".into(),
                        serde_yaml_ng::to_value(&comp.spec.env).unwrap_or_default(),
                    );
                }
                if let Some(r) = &comp.spec.resources {
                    base.insert(
                        "resources".into(),
                        serde_yaml_ng::to_value(r).unwrap_or_default(),
                    );
                }
                for (k, v) in job {
                    base.insert(k, v);
                }
                job = base;
                for (k, o) in &comp.spec.outputs {
                    outputs.entry(k.clone()).or_insert_with(|| o.clone());
                }
                StepKind::Component {
                    name: u.to_string(),
                    dir: comp.dir.clone(),
                    digest: comp.digest.clone(),
                    inputs: comp.spec.inputs.clone(),
                }
            }
        },
    };
    // The job fields must read as a job spec (unknown fields are errors), with every template
    // parsed.
    let mut probe = job.clone();
    probe.remove("secrets");
    match serde_yaml_ng::from_value::<JobSpec>(serde_yaml_ng::Value::Mapping(probe)) {
        Err(e) => {
            let msg = friendly_serde(&e.to_string());
            let field = msg
                .split('`')
                .nth(1)
                .filter(|f| job.contains_key(*f))
                .map(str::to_string);
            let path = field
                .map(|f| at(&f))
                .unwrap_or_else(|| format!("steps.{name}"));
            let msg = if msg.starts_with("unknown field") {
                format!(
                    "{msg} (a step takes {} and the job spec's fields)",
                    crate::spec::STEP_KEYS.join(", ")
                )
            } else {
                msg
            };
            c.report(&path, Some(name), msg);
        }
        Ok(js) => {
            if !js.after.is_empty() {
                c.report(
                    &at("after"),
                    Some(name),
                    "steps order themselves with `needs`, not `after`",
                );
            }
            if !js.array.is_empty() {
                c.report(&at("array"), Some(name), "use `for_each` to fan a step out");
            }
            if matches!(kind, StepKind::Command)
                && has_cmd
                && let Err(e) = js.validate()
            {
                c.report(&at(e.field()), Some(name), e.to_string());
            }
        }
    }
    for key in TEMPLATED {
        if let Some(v) = job.get(*key) {
            for (sub, s) in strings(v, key) {
                if let Err(e) = Template::parse(&s) {
                    c.report(&at(&sub), Some(name), e.0);
                }
            }
        }
    }
    let mut with = IndexMap::new();
    for (k, v) in &step.with {
        match Template::parse(&v.as_text()) {
            Ok(t) => {
                with.insert(k.clone(), t);
            }
            Err(e) => c.report(&at(&format!("with.{k}")), Some(name), e.0),
        }
    }
    let when = match &step.when {
        None => None,
        Some(Scalar::Bool(b)) => Some(Template {
            parts: vec![crate::expr::Part::Expr(crate::expr::Expr::Lit(
                Value::Bool(*b),
            ))],
        }),
        Some(s) => {
            let text = s.as_text();
            let text = if text.contains("${{") {
                text
            } else {
                format!("${{{{ {text} }}}}")
            };
            match Template::parse(&text) {
                Ok(t) => Some(t),
                Err(e) => {
                    c.report(&at("when"), Some(name), e.0);
                    None
                }
            }
        }
    };
    let for_each = match &step.for_each {
        None => None,
        Some(Value::Array(items)) => Some(ForEach::List(items.clone())),
        Some(Value::String(s)) => match Template::parse(s) {
            Ok(t) if t.single().is_some() => Some(ForEach::Expr(t)),
            Ok(_) => {
                c.report(
                    &at("for_each"),
                    Some(name),
                    "`for_each` is a list, or one expression that gives a list",
                );
                None
            }
            Err(e) => {
                c.report(&at("for_each"), Some(name), e.0);
                None
            }
        },
        Some(_) => {
            c.report(
                &at("for_each"),
                Some(name),
                "`for_each` is a list, or one expression that gives a list",
            );
            None
        }
    };
    for (k, o) in &outputs {
        if !is_name(k) {
            c.report(
                &at(&format!("outputs.{k}")),
                Some(name),
                format!("`{k}` is not an output name"),
            );
        }
        match (&o.kind, &o.path) {
            (OutputKind::Value, Some(_)) => c.report(
                &at(&format!("outputs.{k}")),
                Some(name),
                "a value has no `path`; give `type: file` or `type: dir`",
            ),
            (k2, None) if k2.is_file() => c.report(
                &at(&format!("outputs.{k}")),
                Some(name),
                "a file or folder output needs a `path`",
            ),
            (_, Some(p)) if p.starts_with('/') || p.split('/').any(|s| s == "..") => c.report(
                &at(&format!("outputs.{k}.path")),
                Some(name),
                "an output path is relative to the step's output folder and stays inside it",
            ),
            _ => {}
        }
    }
    Some(StepPlan {
        name: name.to_string(),
        needs: step.needs.clone(),
        kind,
        job,
        when,
        for_each,
        with,
        outputs,
        cache: step.cache.unwrap_or(true),
    })
}

/// Every string in a YAML value, with its path below `key`.
pub(crate) fn strings(v: &serde_yaml_ng::Value, key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match v {
        serde_yaml_ng::Value::String(s) => out.push((key.to_string(), s.clone())),
        serde_yaml_ng::Value::Sequence(items) => {
            for (i, it) in items.iter().enumerate() {
                out.extend(strings(it, &format!("{key}.{i}")));
            }
        }
        serde_yaml_ng::Value::Mapping(m) => {
            for (k, it) in m {
                let k = k.as_str().unwrap_or("?");
                out.extend(strings(it, &format!("{key}.{k}")));
            }
        }
        _ => {}
    }
    out
}

/// Topological order (the file's order among equals), or a cycle as names (first = last).
fn topo(steps: &IndexMap<String, StepPlan>) -> Result<Vec<String>, Vec<String>> {
    let mut done: Vec<String> = Vec::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 1 visiting, 2 done
    fn visit<'a>(
        n: &'a str,
        steps: &'a IndexMap<String, StepPlan>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        done: &mut Vec<String>,
    ) -> Result<(), Vec<String>> {
        match state.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                let from = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Err(cycle);
            }
            _ => {}
        }
        state.insert(n, 1);
        stack.push(n);
        if let Some(s) = steps.get(n) {
            for d in &s.needs {
                if steps.contains_key(d) {
                    visit(d, steps, state, stack, done)?;
                }
            }
        }
        stack.pop();
        state.insert(n, 2);
        done.push(n.to_string());
        Ok(())
    }
    for n in steps.keys() {
        visit(n, steps, &mut state, &mut Vec::new(), &mut done)?;
    }
    Ok(done)
}
