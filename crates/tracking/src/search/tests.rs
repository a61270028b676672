//! Cases from MLflow's own search tests (`tests/utils/test_search_utils.py`, the SQL store's
//! search tests), written as inputs and the results MLflow gives for them.

use super::*;

fn err(filter: &str) -> String {
    match RunFilter::parse(filter) {
        Ok(f) => panic!("{filter:?} parsed as {f:?}"),
        Err(e) => e.message().to_owned(),
    }
}

fn assert_err(filter: &str, expected: &str) {
    let msg = err(filter);
    assert!(
        msg.contains(expected),
        "{filter:?}: expected an error containing {expected:?}, got {msg:?}"
    );
}

fn order_err(order_by: &str) -> String {
    match RunOrder::parse(&[order_by]) {
        Ok(o) => panic!("{order_by:?} parsed as {o:?}"),
        Err(e) => e.message().to_owned(),
    }
}

fn exp_err(filter: &str) -> String {
    match ExperimentFilter::parse(filter) {
        Ok(f) => panic!("{filter:?} parsed as {f:?}"),
        Err(e) => e.message().to_owned(),
    }
}

// ------------------------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------------------------

#[test]
fn parses_the_clauses_mlflow_parses() {
    let cases: &[(&str, Vec<RunClause>)] = &[
        (
            "metric.acc >= 0.94",
            vec![RunClause::Metric {
                key: "acc".into(),
                op: NumOp::Ge,
                value: 0.94,
            }],
        ),
        (
            "metric.acc>=100",
            vec![RunClause::Metric {
                key: "acc".into(),
                op: NumOp::Ge,
                value: 100.0,
            }],
        ),
        (
            "params.m!='tf'",
            vec![RunClause::Param {
                key: "m".into(),
                op: StrOp::Ne("tf".into()),
            }],
        ),
        (
            r#"params."m"!="tf""#,
            vec![RunClause::Param {
                key: "m".into(),
                op: StrOp::Ne("tf".into()),
            }],
        ),
        (
            r#"metric."legit name" >= 0.243"#,
            vec![RunClause::Metric {
                key: "legit name".into(),
                op: NumOp::Ge,
                value: 0.243,
            }],
        ),
        (
            "metrics.XYZ = 3",
            vec![RunClause::Metric {
                key: "XYZ".into(),
                op: NumOp::Eq,
                value: 3.0,
            }],
        ),
        (
            r#"params."cat dog" = "pets""#,
            vec![RunClause::Param {
                key: "cat dog".into(),
                op: StrOp::Eq("pets".into()),
            }],
        ),
        (
            r#"metrics."X-Y-Z" = 3"#,
            vec![RunClause::Metric {
                key: "X-Y-Z".into(),
                op: NumOp::Eq,
                value: 3.0,
            }],
        ),
        (
            r#"metrics."X//Y#$$@&Z" = 3"#,
            vec![RunClause::Metric {
                key: "X//Y#$$@&Z".into(),
                op: NumOp::Eq,
                value: 3.0,
            }],
        ),
        (
            "metrics.rmse < 1 and params.model_class = 'LR'",
            vec![
                RunClause::Metric {
                    key: "rmse".into(),
                    op: NumOp::Lt,
                    value: 1.0,
                },
                RunClause::Param {
                    key: "model_class".into(),
                    op: StrOp::Eq("LR".into()),
                },
            ],
        ),
        ("", vec![]),
        (
            "`metric`.a >= 0.1",
            vec![RunClause::Metric {
                key: "a".into(),
                op: NumOp::Ge,
                value: 0.1,
            }],
        ),
        (
            "`tags`.source_name = 'a notebook'",
            vec![RunClause::Tag {
                key: "source_name".into(),
                op: StrOp::Eq("a notebook".into()),
            }],
        ),
        (
            r#"metrics."accuracy.2.0" > 5"#,
            vec![RunClause::Metric {
                key: "accuracy.2.0".into(),
                op: NumOp::Gt,
                value: 5.0,
            }],
        ),
        (
            "metrics.`spacey name` > 5",
            vec![RunClause::Metric {
                key: "spacey name".into(),
                op: NumOp::Gt,
                value: 5.0,
            }],
        ),
        (
            r#"params."p.a.r.a.m" != "a""#,
            vec![RunClause::Param {
                key: "p.a.r.a.m".into(),
                op: StrOp::Ne("a".into()),
            }],
        ),
        (
            "tags.mlflow.runName = 'x'",
            vec![RunClause::Tag {
                key: "mlflow.runName".into(),
                op: StrOp::Eq("x".into()),
            }],
        ),
        (
            "tags.`mlflow.user` = 'bob'",
            vec![RunClause::Tag {
                key: "mlflow.user".into(),
                op: StrOp::Eq("bob".into()),
            }],
        ),
        (
            "attribute.artifact_uri = '1/23/4'",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::ArtifactUri,
                op: StrOp::Eq("1/23/4".into()),
            }],
        ),
        (
            "attribute.start_time >= 1234",
            vec![RunClause::NumAttr {
                attr: RunNumAttr::StartTime,
                op: NumOp::Ge,
                value: 1234.0,
            }],
        ),
        (
            "run.status = 'RUNNING'",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::Status,
                op: StrOp::Eq("RUNNING".into()),
            }],
        ),
        (
            "status = 'RUNNING'",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::Status,
                op: StrOp::Eq("RUNNING".into()),
            }],
        ),
        (
            "created >= 5 and Created < 9",
            vec![
                RunClause::NumAttr {
                    attr: RunNumAttr::StartTime,
                    op: NumOp::Ge,
                    value: 5.0,
                },
                RunClause::NumAttr {
                    attr: RunNumAttr::StartTime,
                    op: NumOp::Lt,
                    value: 9.0,
                },
            ],
        ),
        (
            "attributes.`Run name` = 'x'",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::RunName,
                op: StrOp::Eq("x".into()),
            }],
        ),
        (
            "dataset.name = 'my_dataset'",
            vec![RunClause::Dataset {
                field: DatasetField::Name,
                op: StrOp::Eq("my_dataset".into()),
            }],
        ),
        (
            "tags.version IS NULL",
            vec![RunClause::Tag {
                key: "version".into(),
                op: StrOp::IsNull,
            }],
        ),
        (
            "tags.version is not null",
            vec![RunClause::Tag {
                key: "version".into(),
                op: StrOp::IsNotNull,
            }],
        ),
        (
            "params.lr IS NULL",
            vec![RunClause::Param {
                key: "lr".into(),
                op: StrOp::IsNull,
            }],
        ),
        (
            "tags.a IS NULL AND params.b = 'val'",
            vec![
                RunClause::Tag {
                    key: "a".into(),
                    op: StrOp::IsNull,
                },
                RunClause::Param {
                    key: "b".into(),
                    op: StrOp::Eq("val".into()),
                },
            ],
        ),
        (
            "run_id IN ('a', \"b\",)",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::RunId,
                op: StrOp::In(vec!["a".into(), "b".into()]),
            }],
        ),
        (
            "run_id not in ('x')",
            vec![RunClause::StrAttr {
                attr: RunStrAttr::RunId,
                op: StrOp::NotIn(vec!["x".into()]),
            }],
        ),
        (
            "metrics.a > -1 and metrics.b < 1e3 and metrics.c > .5 and metrics.d >= 1.0e-3",
            vec![
                RunClause::Metric {
                    key: "a".into(),
                    op: NumOp::Gt,
                    value: -1.0,
                },
                RunClause::Metric {
                    key: "b".into(),
                    op: NumOp::Lt,
                    value: 1000.0,
                },
                RunClause::Metric {
                    key: "c".into(),
                    op: NumOp::Gt,
                    value: 0.5,
                },
                RunClause::Metric {
                    key: "d".into(),
                    op: NumOp::Ge,
                    value: 0.001,
                },
            ],
        ),
        (
            "metrics.1abc > 1",
            vec![RunClause::Metric {
                key: "1abc".into(),
                op: NumOp::Gt,
                value: 1.0,
            }],
        ),
    ];
    for (filter, expected) in cases {
        let parsed = RunFilter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        assert_eq!(&parsed.clauses, expected, "{filter:?}");
    }
}

#[test]
fn quotes_are_trimmed_and_escapes_resolved() {
    let value = |f: &str| match RunFilter::parse(f).unwrap().clauses.remove(0) {
        RunClause::Param {
            op: StrOp::Eq(v), ..
        } => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(value("params.m = 'LR'"), "LR");
    assert_eq!(value(r#"params.m = "LR""#), "LR");
    assert_eq!(value(r#"params.m = "L'Hosp""#), "L'Hosp");
    assert_eq!(value("params.m = 'it''s'"), "it's");
    assert_eq!(value(r"params.m = 'it\'s'"), "it's");
    assert_eq!(value("params.m = ''"), "");
    // LIKE / ILIKE and IN are case-insensitive keywords; AND too.
    assert!(RunFilter::parse("tags.a like 'x' AnD tags.b iLiKe 'y'").is_ok());
}

#[test]
fn refuses_what_mlflow_refuses_with_its_words() {
    let cases = [
        (
            "metric.acc >= 0.94; metrics.rmse < 1",
            "Search filter contained multiple expression",
        ),
        ("m.acc >= 0.94", "Invalid entity type 'm'"),
        ("acc >= 0.94", "Invalid attribute key 'acc'"),
        ("p.model >= 'LR'", "Invalid entity type"),
        ("attri.x != 1", "Invalid entity type"),
        ("Metrics.a > 1", "Invalid entity type 'Metrics'"),
        ("model >= 'LR'", "Invalid attribute key"),
        (
            "metrics.A > 0.1 OR params.B = 'LR'",
            "Invalid clause(s) in filter string: 'OR'",
        ),
        (
            "metrics.A > 0.1 NAND params.B = 'LR'",
            "Invalid clause(s) in filter string",
        ),
        (
            "metrics.A > 0.1 AND (params.B = 'LR')",
            "Invalid clause(s) in filter string",
        ),
        ("`metrics.A > 0.1", "Invalid clause(s) in filter string"),
        ("param`.A > 0.1", "Invalid clause(s) in filter string"),
        ("`dummy.A > 0.1", "Invalid clause(s) in filter string"),
        ("dummy`.A > 0.1", "Invalid clause(s) in filter string"),
        ("attribute.start != 1", "Invalid attribute key"),
        ("attribute.experiment_id != 1", "Invalid attribute key"),
        (
            "attribute.lifecycle_stage = 'ACTIVE'",
            "Invalid attribute key",
        ),
        ("attribute.name != 1", "Invalid attribute key"),
        ("attribute.time != 1", "Invalid attribute key"),
        ("attribute._status != 'RUNNING'", "Invalid attribute key"),
        (
            "attribute.status = true",
            "Invalid clause(s) in filter string",
        ),
        ("dataset.status = 'true'", "Invalid dataset key 'status'"),
        ("dataset.profile = 'num_rows: 10'", "Invalid dataset key"),
        (
            "metrics.acc IS NULL",
            "IS NULL / IS NOT NULL is only supported for tags and params",
        ),
        (
            "attribute.status IS NULL",
            "IS NULL / IS NOT NULL is only supported for tags and params",
        ),
        // Comparison clauses.
        (
            "metric.model = 'LR'",
            "Expected numeric value type for metric",
        ),
        (
            "metric.model = '5'",
            "Expected numeric value type for metric",
        ),
        ("params.acc = 5", "Expected a quoted string value for param"),
        ("tags.acc = 5", "Expected a quoted string value for tag"),
        (
            "metrics.acc != metrics.acc",
            "Expected numeric value type for metric",
        ),
        (
            "metrics.a > nan",
            "Expected numeric value type for metric. Found nan",
        ),
        ("1.0 > metrics.acc", "Expected 'Identifier' found '1.0'"),
        (
            "attribute.status = 1",
            "Expected a quoted string value for attributes",
        ),
        (
            "start_time > '1'",
            "Expected numeric value type for numeric attribute: start_time",
        ),
        // Quotes.
        (
            "params.acc = LR",
            "value is either not quoted or unidentified quote types",
        ),
        (
            "tags.acc = LR",
            "value is either not quoted or unidentified quote types",
        ),
        (
            "params.acc = `LR`",
            "value is either not quoted or unidentified quote types",
        ),
        ("params.'acc = LR", "Invalid clause(s) in filter string"),
        ("params.acc = 'LR", "Invalid clause(s) in filter string"),
        ("params.acc = LR'", "Invalid clause(s) in filter string"),
        ("params.acc = \"LR'", "Invalid clause(s) in filter string"),
        ("tags.acc = \"LR'", "Invalid clause(s) in filter string"),
        ("tags.acc = = 'LR'", "Invalid clause(s) in filter string"),
        (
            "attribute.status IS 'RUNNING'",
            "Invalid clause(s) in filter string",
        ),
        // Incomplete clauses.
        (
            "params.acc LR !=",
            "Invalid clause(s) in filter string: 'params.acc', 'LR', '!='",
        ),
        ("params.acc LR", "Invalid clause(s) in filter string"),
        ("metric.acc !=", "Invalid clause(s) in filter string"),
        (
            "params.a = 'x' AND metrics.b",
            "Invalid clause(s) in filter string: 'metrics.b'",
        ),
        (
            "metrics.my-metric > 1",
            "Invalid clause(s) in filter string",
        ),
        ("metrics.a > +1", "Invalid clause(s) in filter string"),
        ("acc != 1.0", "Invalid attribute key"),
        ("foo is null", "Invalid attribute key 'foo'"),
        ("1=1", "Expected 'Identifier' found '1'"),
        ("1==2", "Expected 'Identifier' found '1'"),
        ("   ", "Invalid filter '   '. Could not be parsed."),
        // Lists.
        (
            "run_id IN ()",
            "expected a non-empty list of string values, but got empty list",
        ),
        (
            "run_id IN ('a', 1)",
            "but got different type in list: ('a', 1)",
        ),
        ("run_id IN ('a' 'b')", "but got ill-formed list"),
        ("run_id IN 'a'", "Invalid clause(s) in filter string"),
        (
            "status IN ('a')",
            "Only ['run_id'] attributes support comparison with a list",
        ),
        (
            "start_time IN ('a')",
            "Expected numeric value type for numeric attribute: start_time",
        ),
        (
            "params.a IN ('a')",
            "Expected a quoted string value for parameter",
        ),
        (
            "tags.a NOT IN ('x')",
            "Expected a quoted string value for tag",
        ),
        (
            "metrics.a IN (1)",
            "Expected numeric value type for metric. Found (1)",
        ),
        (
            "run_id = ('a')",
            "A list of values is compared with IN or NOT IN",
        ),
    ];
    for (filter, expected) in cases {
        assert_err(filter, expected);
    }
}

#[test]
fn refuses_comparators_an_entity_does_not_take() {
    let cases: &[(&str, &[&str], &str, &str)] = &[
        ("metrics", &["~", "~=", "==", "LIKE"], "abc", "1.0"),
        (
            "params",
            &[">", "<", ">=", "<=", "~"],
            "abc",
            "'my-param-value'",
        ),
        (
            "tags",
            &[">", "<", ">=", "<=", "~"],
            "abc",
            "'my-tag-value'",
        ),
        (
            "attributes",
            &[">", "<", ">=", "<=", "~"],
            "status",
            "'my-tag-value'",
        ),
        ("attributes", &["LIKE", "ILIKE"], "start_time", "1234"),
        (
            "datasets",
            &[">", "<", ">=", "<=", "~"],
            "name",
            "'my-dataset-name'",
        ),
    ];
    for (entity, comparators, key, value) in cases {
        for comparator in *comparators {
            let filter = format!("{entity}.{key} {comparator} {value}");
            assert_err(&filter, "Invalid comparator");
        }
    }
}

#[test]
fn every_error_is_invalid_parameter_value() {
    assert_eq!(SearchError::ERROR_CODE, "INVALID_PARAMETER_VALUE");
    let e = RunFilter::parse("metrics.a > 1 OR metrics.b > 2").unwrap_err();
    assert_eq!(e.to_string(), e.message());
}

// ------------------------------------------------------------------------------------------
// Matching
// ------------------------------------------------------------------------------------------

/// Three runs like MLflow's `test_correct_filtering`.
struct Fixture {
    metrics: [[(&'static str, f64); 1]; 3],
    params: [[(&'static str, &'static str); 1]; 3],
    tags: [Vec<(&'static str, &'static str)>; 3],
    datasets: [[DatasetFacts<'static>; 1]; 3],
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            metrics: [[("key1", 121.0)], [("key1", 123.0)], [("key1", 125.0)]],
            params: [
                [("my_param", "A")],
                [("my_param", "A")],
                [("my_param", "B")],
            ],
            tags: [vec![], vec![("tag1", "C")], vec![("tag1", "D")]],
            datasets: [
                [DatasetFacts {
                    name: "name1",
                    digest: "digest1",
                    context: Some("train"),
                }],
                [DatasetFacts {
                    name: "name1",
                    digest: "digest1",
                    context: None,
                }],
                [DatasetFacts {
                    name: "name2",
                    digest: "digest2",
                    context: None,
                }],
            ],
        }
    }

    fn runs(&self) -> Vec<RunFacts<'_>> {
        let status = ["FAILED", "FINISHED", "FAILED"];
        let ids = ["hi", "hi2", "hi3"];
        (0..3)
            .map(|i| RunFacts {
                run_id: ids[i],
                run_name: "",
                experiment_id: "0",
                status: status[i],
                start_time: 0,
                end_time: Some(1),
                artifact_uri: "",
                user_id: "user-id",
                lifecycle_stage: "active",
                metrics: &self.metrics[i],
                params: &self.params[i],
                tags: &self.tags[i],
                datasets: &self.datasets[i],
            })
            .collect()
    }
}

fn matching(runs: &[RunFacts<'_>], filter: &str) -> Vec<usize> {
    let f = RunFilter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
    (0..runs.len()).filter(|&i| f.matches(&runs[i])).collect()
}

#[test]
fn filters_runs_as_mlflow_does() {
    let fx = Fixture::new();
    let runs = fx.runs();
    let cases: &[(&str, &[usize])] = &[
        ("", &[0, 1, 2]),
        ("attributes.status = 'FAILED'", &[0, 2]),
        ("metrics.key1 = 123", &[1]),
        ("metrics.key1 != 123", &[0, 2]),
        ("metrics.key1 >= 123", &[1, 2]),
        ("params.my_param = 'A'", &[0, 1]),
        ("tags.tag1 = 'D'", &[2]),
        // A run without the tag does not match `!=` either.
        ("tags.tag1 != 'D'", &[1]),
        (
            "params.my_param = 'A' AND attributes.status = 'FAILED'",
            &[0],
        ),
        ("datasets.name = 'name1'", &[0, 1]),
        ("datasets.name IN ('name1', 'name2')", &[0, 1, 2]),
        ("datasets.digest IN ('digest1', 'digest2')", &[0, 1, 2]),
        (
            "datasets.name = 'name1' AND datasets.digest = 'digest2'",
            &[],
        ),
        ("datasets.context = 'train'", &[0]),
        (
            "datasets.name = 'name1' AND datasets.context = 'train'",
            &[0],
        ),
        ("datasets.name NOT IN ('name1')", &[2]),
        ("run_id IN ('hi', 'hi3')", &[0, 2]),
        ("run_id NOT IN ('hi')", &[1, 2]),
        ("attributes.user_id = 'user-id'", &[0, 1, 2]),
        ("tags.tag1 IS NULL", &[0]),
        ("tags.tag1 IS NOT NULL", &[1, 2]),
        ("params.missing IS NULL", &[0, 1, 2]),
        ("metrics.missing < 1000", &[]),
        ("metrics.missing != 1", &[]),
    ];
    for (filter, expected) in cases {
        assert_eq!(matching(&runs, filter), *expected, "{filter:?}");
    }
}

#[test]
fn filters_on_start_and_end_time() {
    let runs: Vec<RunFacts<'_>> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, id)| RunFacts {
            run_id: id,
            start_time: i as i64,
            end_time: Some(i as i64),
            ..RunFacts::default()
        })
        .collect();
    assert_eq!(matching(&runs, "attribute.start_time >= 0"), [0, 1, 2]);
    assert_eq!(matching(&runs, "attribute.start_time > 1"), [2]);
    assert_eq!(matching(&runs, "attribute.start_time = 2"), [2]);
    assert_eq!(matching(&runs, "created > 0.5"), [1, 2]);
    assert_eq!(matching(&runs, "attribute.end_time >= 0"), [0, 1, 2]);
    assert_eq!(matching(&runs, "attribute.end_time > 1"), [2]);
    assert_eq!(matching(&runs, "attribute.end_time = 2"), [2]);
    // A run that has not ended has no end time to compare.
    let running = [RunFacts {
        end_time: None,
        ..RunFacts::default()
    }];
    assert_eq!(
        matching(&running, "attribute.end_time < 10"),
        Vec::<usize>::new()
    );
    assert_eq!(
        matching(&running, "attribute.end_time != 10"),
        Vec::<usize>::new()
    );
}

#[test]
fn nan_and_infinite_metrics_compare_like_ieee() {
    let vals = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0];
    let metrics: Vec<[(&str, f64); 1]> = vals.iter().map(|v| [("x", *v)]).collect();
    let runs: Vec<RunFacts<'_>> = metrics
        .iter()
        .map(|m| RunFacts {
            metrics: m,
            ..RunFacts::default()
        })
        .collect();
    assert_eq!(matching(&runs, "metrics.x != 0"), [0, 1, 2]);
    assert_eq!(matching(&runs, "metrics.x = 0"), [3]);
    assert_eq!(matching(&runs, "metrics.x > 0"), [1]);
    assert_eq!(matching(&runs, "metrics.x <= 0"), [2, 3]);
    assert_eq!(matching(&runs, "metrics.x > 1e308"), [1]);
}

#[test]
fn like_and_ilike_use_percent_and_underscore() {
    let p = |pattern: &str, fold: bool, text: &str| LikePattern::new(pattern, fold).matches(text);
    assert!(p("p_val", false, "p_val"));
    assert!(p("p_val", false, "pXval"));
    assert!(!p("p_val", false, "pval"));
    assert!(p("%a%", false, "value"));
    assert!(!p("%A%", false, "value"));
    assert!(p("%A%", true, "value"));
    assert!(p("%", false, ""));
    assert!(p("a%", false, "a"));
    assert!(!p("a%", false, "ba"));
    assert!(p("%a", false, "ba"));
    assert!(p("%a%b%c", false, "xxaxxbxxbc"));
    assert!(!p("%a%b%c", false, "xxaxxbxxb"));
    assert!(p("jamie-foo C+%", false, "jamie-foo C+W bar"));
    assert!(p("jamie-foo C+W bar", false, "jamie-foo C+W bar"));
    // Regex characters are plain characters.
    assert!(p("a.c", false, "a.c"));
    assert!(!p("a.c", false, "abc"));
    assert!(p("(x)[y]*", false, "(x)[y]*"));
    // `_` is one character, not one byte.
    assert!(p("caf_", false, "café"));
    assert!(p("CAFÉ", true, "café"));
    // No escape character, as in MLflow: a backslash is a plain character.
    assert!(p(r"a\_b", false, r"a\xb"));

    let tags = [("mlflow.runName", "Nice-Run 42")];
    let runs = [RunFacts {
        tags: &tags,
        run_name: "Nice-Run 42",
        ..RunFacts::default()
    }];
    assert_eq!(matching(&runs, "tags.`mlflow.runName` LIKE 'Nice%'"), [0]);
    assert_eq!(
        matching(&runs, "tags.`mlflow.runName` LIKE 'nice%'"),
        Vec::<usize>::new()
    );
    assert_eq!(matching(&runs, "tags.`mlflow.runName` ILIKE 'nice%'"), [0]);
    assert_eq!(matching(&runs, "attributes.run_name ILIKE '%RUN%'"), [0]);
    assert_eq!(matching(&runs, "run_name LIKE '%Run _2'"), [0]);
}

// ------------------------------------------------------------------------------------------
// Ordering
// ------------------------------------------------------------------------------------------

fn sorted_ids<'a>(runs: &[RunFacts<'a>], order_by: &[&str]) -> Vec<&'a str> {
    let order = RunOrder::parse(order_by).unwrap_or_else(|e| panic!("{order_by:?}: {e}"));
    let mut runs = runs.to_vec();
    order.sort(&mut runs);
    runs.iter().map(|r| r.run_id).collect()
}

#[test]
fn sorts_runs_as_mlflow_does() {
    // MLflow's `test_correct_sorting`: run ids 9, 8, 7 with these facts.
    let metrics = [[("key1", 121.0)], [("key1", 123.0)], [("key1", 125.0)]];
    let params = [
        [("my_param", "A")],
        [("my_param", "A")],
        [("my_param", "B")],
    ];
    let tags: [&[(&str, &str)]; 3] = [&[], &[("tag1", "C")], &[("tag1", "D")]];
    let status = ["FAILED", "FINISHED", "FAILED"];
    let ids = ["9", "8", "7"];
    let start = [0, 1, 1];
    let runs: Vec<RunFacts<'_>> = (0..3)
        .map(|i| RunFacts {
            run_id: ids[i],
            status: status[i],
            start_time: start[i],
            end_time: Some(1),
            metrics: &metrics[i],
            params: &params[i],
            tags: tags[i],
            ..RunFacts::default()
        })
        .collect();
    let by_index = |idx: [usize; 3]| idx.map(|i| ids[i]).to_vec();
    let cases: &[(&[&str], [usize; 3])] = &[
        (&[], [2, 1, 0]),
        (&["tags.noSuchTag"], [2, 1, 0]),
        (&["attributes.status"], [2, 0, 1]),
        (&["attributes.start_time"], [0, 2, 1]),
        (&["metrics.key1 asc"], [0, 1, 2]),
        (&[r#"metrics."key1"  desc"#], [2, 1, 0]),
        (&["params.my_param"], [1, 0, 2]),
        (
            &["params.my_param aSc", "attributes.status  ASC"],
            [0, 1, 2],
        ),
        (&["params.my_param", "attributes.status DESC"], [1, 0, 2]),
        (
            &["params.my_param DESC", "attributes.status   DESC"],
            [2, 1, 0],
        ),
        (
            &["params.`my_param` DESC", "attributes.status DESC"],
            [2, 1, 0],
        ),
        (&["tags.tag1"], [1, 2, 0]),
        (&["tags.tag1    DESC"], [2, 1, 0]),
    ];
    for (order_by, expected) in cases {
        assert_eq!(
            sorted_ids(&runs, order_by),
            by_index(*expected),
            "{order_by:?}"
        );
    }
}

#[test]
fn nan_then_missing_sort_last_in_both_directions() {
    let names = ["nan", "inf", "-inf", "-1000", "0", "1000", "None"];
    let values = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -1000.0,
        0.0,
        1000.0,
    ];
    let metrics: Vec<[(&str, f64); 1]> = values.iter().map(|v| [("x", *v)]).collect();
    let runs: Vec<RunFacts<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, id)| RunFacts {
            run_id: id,
            metrics: metrics.get(i).map_or(&[], |m| &m[..]),
            ..RunFacts::default()
        })
        .collect();
    assert_eq!(
        sorted_ids(&runs, &["metrics.x asc"]),
        ["-inf", "-1000", "0", "1000", "inf", "nan", "None"]
    );
    assert_eq!(
        sorted_ids(&runs, &["metrics.x desc"]),
        ["inf", "1000", "0", "-1000", "-inf", "nan", "None"]
    );
}

#[test]
fn missing_params_tags_and_end_times_sort_last_and_ties_fall_to_start_time_then_id() {
    let with = [("p", "b")];
    let other = [("p", "a")];
    let runs = [
        RunFacts {
            run_id: "r1",
            start_time: 5,
            params: &with,
            end_time: None,
            ..RunFacts::default()
        },
        RunFacts {
            run_id: "r2",
            start_time: 9,
            end_time: Some(3),
            ..RunFacts::default()
        },
        RunFacts {
            run_id: "r3",
            start_time: 5,
            params: &other,
            end_time: Some(7),
            ..RunFacts::default()
        },
        RunFacts {
            run_id: "r0",
            start_time: 9,
            end_time: Some(3),
            ..RunFacts::default()
        },
    ];
    assert_eq!(sorted_ids(&runs, &["params.p"]), ["r3", "r1", "r0", "r2"]);
    assert_eq!(
        sorted_ids(&runs, &["params.p DESC"]),
        ["r1", "r3", "r0", "r2"]
    );
    assert_eq!(
        sorted_ids(&runs, &["attributes.end_time"]),
        ["r0", "r2", "r3", "r1"]
    );
    assert_eq!(
        sorted_ids(&runs, &["attributes.end_time DESC"]),
        ["r3", "r0", "r2", "r1"]
    );
    // Ordered on start_time, ties go by run id only.
    assert_eq!(
        sorted_ids(&runs, &["created ASC"]),
        ["r1", "r3", "r0", "r2"]
    );
    // The default: newest first, then by id.
    assert_eq!(sorted_ids(&runs, &[]), ["r0", "r2", "r1", "r3"]);
}

#[test]
fn order_by_entries_are_checked() {
    let cases = [
        ("m.acc", "Invalid entity type"),
        ("acc", "Invalid attribute key"),
        ("attri.x", "Invalid entity type"),
        ("`metrics.A", "Invalid order_by clause"),
        ("`metrics.A`", "Invalid entity type"),
        ("attribute.start", "Invalid attribute key"),
        ("attribute.experiment_id", "Invalid attribute key"),
        ("attributes.lifecycle_stage", "Invalid attribute key"),
        ("metrics.A != 1", "Invalid order_by clause"),
        ("params.my_param ", "Invalid order_by clause"),
        (" params.my_param", "Invalid order_by clause"),
        ("", "Invalid order_by clause"),
        ("metrics.a DESC blah", "Invalid order_by clause"),
        ("metrics.a,metrics.b", "Invalid order_by clause"),
        (
            "attribute.run_id ACS",
            "Invalid ordering key in order_by clause 'attribute.run_id ACS'.",
        ),
        ("attribute.run_id decs", "Invalid ordering key"),
        ("attributes.run name", "Invalid ordering key"),
        ("datasets.name", "Invalid order_by entity type 'dataset'"),
    ];
    for (order_by, expected) in cases {
        let msg = order_err(order_by);
        assert!(msg.contains(expected), "{order_by:?}: {msg:?}");
    }
    let dup = RunOrder::parse(&["metrics.a", "metrics.a DESC"]).unwrap_err();
    assert_eq!(
        dup.message(),
        "`order_by` contains duplicate fields: ['metrics.a', 'metrics.a DESC']"
    );
    // Aliases name the same field.
    assert!(RunOrder::parse(&["created", "attributes.start_time"]).is_err());
}

#[test]
fn order_by_keys_may_be_quoted() {
    for (order_by, ascending) in [
        ("metrics.`Mean Square Error`", true),
        ("metrics.`Mean Square Error` ASC", true),
        ("metrics.`Mean Square Error` DESC", false),
        (r#"metrics."Mean Square Error" desc"#, false),
    ] {
        let order = RunOrder::parse(&[order_by]).unwrap();
        assert_eq!(
            order.keys,
            [(RunSortKey::Metric("Mean Square Error".into()), ascending)],
            "{order_by:?}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Paging
// ------------------------------------------------------------------------------------------

fn token_json(token: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn pages_like_mlflow() {
    let tok = |o: usize| encode_page_token(o);
    // (resume at, max_results, the page, the next offset)
    type Case = (Option<usize>, usize, Range<usize>, Option<usize>);
    let cases: &[Case] = &[
        (None, 1, 0..1, Some(1)),
        (None, 2, 0..2, Some(2)),
        (None, 3, 0..3, None),
        (None, 5, 0..3, None),
        (Some(1), 1, 1..2, Some(2)),
        (Some(1), 2, 1..3, None),
        (Some(1), 3, 1..3, None),
        (Some(2), 1, 2..3, None),
        (Some(2), 2, 2..3, None),
        (Some(3), 1, 3..3, None),
        (Some(9), 1, 3..3, None),
    ];
    for (start, max, range, next) in cases {
        let token = start.map(tok);
        let page = paginate(3, token.as_deref(), *max).unwrap();
        assert_eq!(page.range, *range, "{start:?} {max}");
        let next_offset = page
            .next_page_token
            .as_deref()
            .map(|t| token_json(t)["offset"].as_u64().unwrap() as usize);
        assert_eq!(next_offset, *next, "{start:?} {max}");
    }
    // The same bytes an MLflow server hands out.
    assert_eq!(encode_page_token(1000), "eyJvZmZzZXQiOiAxMDAwfQ==");
    assert_eq!(
        decode_page_token(Some("eyJvZmZzZXQiOiAxMDAwfQ==")).unwrap(),
        1000
    );
    assert_eq!(decode_page_token(None).unwrap(), 0);
    assert_eq!(decode_page_token(Some("")).unwrap(), 0);
}

#[test]
fn refuses_bad_page_tokens() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for token in [
        b64("{}"),
        b64(r#"{"offset": "a"}"#),
        b64(r#"{"offsoot": 7}"#),
        b64(r#"{"offset": -1}"#),
        b64("not json"),
        "not base64".to_owned(),
    ] {
        let e = decode_page_token(Some(&token)).unwrap_err();
        assert!(
            e.message().starts_with("Invalid page token"),
            "{token}: {e}"
        );
    }
}

#[test]
fn max_results_has_mlflow_bounds() {
    assert_eq!(check_max_results(None).unwrap(), 1000);
    assert_eq!(check_max_results(Some(1)).unwrap(), 1);
    assert_eq!(check_max_results(Some(50_000)).unwrap(), 50_000);
    assert_eq!(
        check_max_results(Some(50_001)).unwrap_err().message(),
        "Invalid value 50001 for parameter 'max_results' supplied. It must be at most 50000"
    );
    assert_eq!(
        check_max_results(Some(0)).unwrap_err().message(),
        "Invalid value 0 for parameter 'max_results' supplied. It must be a positive integer"
    );
}

// ------------------------------------------------------------------------------------------
// Experiments
// ------------------------------------------------------------------------------------------

#[test]
fn filters_experiments() {
    let tags_a = [("key", "value"), ("team", "vision")];
    let tags_b = [("key", "other")];
    let exps = [
        ExperimentFacts {
            experiment_id: "1",
            name: "a",
            creation_time: Some(1),
            last_update_time: Some(5),
            tags: &tags_a,
        },
        ExperimentFacts {
            experiment_id: "2",
            name: "ab",
            creation_time: Some(2),
            last_update_time: Some(4),
            tags: &tags_b,
        },
        ExperimentFacts {
            experiment_id: "3",
            name: "Abc",
            creation_time: Some(3),
            last_update_time: None,
            tags: &[],
        },
        ExperimentFacts {
            experiment_id: "4",
            name: "jamie-foo C+W bar",
            creation_time: None,
            last_update_time: None,
            tags: &[],
        },
    ];
    let ids = |filter: &str| -> Vec<&str> {
        let f = ExperimentFilter::parse(filter).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        exps.iter()
            .filter(|e| f.matches(e))
            .map(|e| e.experiment_id)
            .collect()
    };
    assert_eq!(ids(""), ["1", "2", "3", "4"]);
    assert_eq!(ids("name = 'a'"), ["1"]);
    assert_eq!(ids("attribute.name != 'a'"), ["2", "3", "4"]);
    assert_eq!(ids("name LIKE 'a%'"), ["1", "2"]);
    assert_eq!(ids("name ILIKE 'a%'"), ["1", "2", "3"]);
    assert_eq!(ids("name LIKE '%b'"), ["2"]);
    assert_eq!(ids(r#"name LIKE "jamie-foo C+%""#), ["4"]);
    assert_eq!(ids("creation_time > 1"), ["2", "3"]);
    assert_eq!(ids("attribute.last_update_time <= 4"), ["2"]);
    assert_eq!(ids("experiment_id IN ('1', '3')"), ["1", "3"]);
    assert_eq!(ids("experiment_id != '1'"), ["2", "3", "4"]);
    assert_eq!(ids("tags.key = 'value'"), ["1"]);
    assert_eq!(ids("tag.key != 'value'"), ["2"]);
    assert_eq!(ids("tags.key LIKE '%e'"), ["1"]);
    assert_eq!(ids("tags.key IS NULL"), ["3", "4"]);
    assert_eq!(ids("tags.team IS NOT NULL and name = 'a'"), ["1"]);
}

#[test]
fn refuses_experiment_filters_mlflow_refuses() {
    let cases = [
        (
            "attributes.name = 'x'",
            "Invalid entity type 'attributes'. Valid entity types are ('attribute', 'tag', 'tags')",
        ),
        ("metrics.a > 1", "Invalid entity type 'metrics'"),
        ("foo = 'x'", "Invalid attribute key 'foo' specified"),
        (
            "name IS NULL",
            "IS NULL / IS NOT NULL is only supported for tags, not for attribute 'name'",
        ),
        (
            "name IN ('a')",
            "Only ['experiment_id'] attributes support comparison with a list",
        ),
        (
            "creation_time > 'a'",
            "Expected numeric value type for numeric attribute: creation_time",
        ),
        (
            "experiment_id LIKE '1%'",
            "Invalid comparator for experiment_id: LIKE",
        ),
        ("name > 'a'", "Invalid comparator '>'"),
        ("tags.a > 'a'", "Invalid comparator '>'"),
        (
            "name = 'a' OR name = 'b'",
            "Invalid clause(s) in filter string",
        ),
    ];
    for (filter, expected) in cases {
        let msg = exp_err(filter);
        assert!(msg.contains(expected), "{filter:?}: {msg:?}");
    }
}

#[test]
fn sorts_experiments() {
    let exps = [
        ExperimentFacts {
            experiment_id: "10",
            name: "b",
            creation_time: Some(1),
            last_update_time: Some(5),
            tags: &[],
        },
        ExperimentFacts {
            experiment_id: "9",
            name: "a",
            creation_time: Some(2),
            last_update_time: None,
            tags: &[],
        },
        ExperimentFacts {
            experiment_id: "2",
            name: "c",
            creation_time: Some(2),
            last_update_time: Some(7),
            tags: &[],
        },
        ExperimentFacts {
            experiment_id: "0",
            name: "Default",
            creation_time: None,
            last_update_time: None,
            tags: &[],
        },
    ];
    let ids = |order_by: &[&str]| -> Vec<&str> {
        let order =
            ExperimentOrder::parse(order_by).unwrap_or_else(|e| panic!("{order_by:?}: {e}"));
        let mut v = exps.to_vec();
        order.sort(&mut v);
        v.iter().map(|e| e.experiment_id).collect()
    };
    // Default: newest first, then the lower id; a missing time comes last.
    assert_eq!(ids(&[]), ["2", "9", "10", "0"]);
    assert_eq!(ids(&["name"]), ["0", "9", "10", "2"]);
    assert_eq!(ids(&["name DESC"]), ["2", "10", "9", "0"]);
    // Ties break on experiment_id, descending, compared as numbers.
    assert_eq!(ids(&["creation_time"]), ["10", "9", "2", "0"]);
    assert_eq!(
        ids(&["attribute.last_update_time DESC"]),
        ["2", "10", "9", "0"]
    );
    assert_eq!(ids(&["last_update_time ASC"]), ["10", "2", "9", "0"]);
    assert_eq!(ids(&["experiment_id"]), ["0", "2", "9", "10"]);

    for (order_by, expected) in [
        ("tags.a", "Invalid order_by entity: tag"),
        ("lifecycle_stage", "Invalid attribute key 'lifecycle_stage'"),
        ("name aCs", "Invalid ordering key"),
        ("metrics.a", "Invalid entity type 'metrics'"),
    ] {
        let msg = ExperimentOrder::parse(&[order_by])
            .unwrap_err()
            .message()
            .to_owned();
        assert!(msg.contains(expected), "{order_by:?}: {msg:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Speed
// ------------------------------------------------------------------------------------------

#[test]
fn a_thousand_runs_filter_and_sort_quickly() {
    let n = 1000;
    let ids: Vec<String> = (0..n).map(|i| format!("{i:032x}")).collect();
    let metric_keys: Vec<String> = (0..20).map(|k| format!("metric_{k}")).collect();
    let metrics: Vec<Vec<(&str, f64)>> = (0..n)
        .map(|i| {
            metric_keys
                .iter()
                .enumerate()
                .map(|(k, key)| (key.as_str(), ((i * 7919 + k * 31) % 1000) as f64 / 1000.0))
                .collect()
        })
        .collect();
    let lrs = ["0.1", "0.01", "0.001"];
    let params: Vec<[(&str, &str); 2]> = (0..n)
        .map(|i| [("lr", lrs[i % 3]), ("model", "resnet")])
        .collect();
    let tags: Vec<[(&str, &str); 1]> = (0..n).map(|_| [("mlflow.runName", "run")]).collect();
    let runs: Vec<RunFacts<'_>> = (0..n)
        .map(|i| RunFacts {
            run_id: &ids[i],
            run_name: "run",
            status: if i % 5 == 0 { "FAILED" } else { "FINISHED" },
            start_time: 1_700_000_000_000 + (i as i64 % 97),
            metrics: &metrics[i],
            params: &params[i],
            tags: &tags[i],
            ..RunFacts::default()
        })
        .collect();

    let started = std::time::Instant::now();
    let filter = RunFilter::parse(
        "metrics.metric_19 > 0.2 and params.lr != '0.1' and attributes.status = 'FINISHED' \
         and tags.`mlflow.runName` LIKE 'r%'",
    )
    .unwrap();
    let order = RunOrder::parse(&[
        "metrics.metric_10 DESC",
        "params.lr",
        "attributes.start_time ASC",
    ])
    .unwrap();
    let mut hits: Vec<RunFacts<'_>> = runs.iter().copied().filter(|r| filter.matches(r)).collect();
    order.sort(&mut hits);
    let page = paginate(hits.len(), None, 100).unwrap();
    let elapsed = started.elapsed();

    assert!(!hits.is_empty() && hits.len() < n);
    assert_eq!(page.range, 0..100);
    for pair in hits.windows(2) {
        assert_ne!(order.compare(&pair[0], &pair[1]), Ordering::Greater);
    }
    // Generous for an unoptimised debug build on a busy machine; release is far below.
    assert!(elapsed.as_millis() < 50, "took {elapsed:?}");
}
