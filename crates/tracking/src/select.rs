//! Which runs and experiments a search answers, in which order, one page at a time: the
//! candidates come from the store, the filter, the order and the paging are MLflow's grammar as
//! [`crate::search`] parses and evaluates it. This module only lays each run or experiment out
//! as the search's facts and picks the page.

use crate::error::{Result, TrackingError};
use crate::search::{
    self, DatasetFacts, ExperimentFacts, ExperimentFilter, ExperimentOrder, RunFacts, RunFilter,
    RunOrder, SearchError,
};
use crate::store::RUN_NAME_TAG;
use crate::wire::{Experiment, Run};

impl From<SearchError> for TrackingError {
    fn from(e: SearchError) -> Self {
        TrackingError::Invalid(e.message().to_string())
    }
}

/// The offset a page token stands for (0 for none).
pub(crate) fn offset_of(token: Option<&str>) -> Result<usize> {
    Ok(search::decode_page_token(token)?)
}

/// The page token of the page that starts at `offset`.
pub(crate) fn token_for(offset: usize) -> String {
    search::encode_page_token(offset)
}

/// The owned parts of one run's facts that the facts borrow as slices.
struct RunParts<'a> {
    metrics: Vec<(&'a str, f64)>,
    params: Vec<(&'a str, &'a str)>,
    tags: Vec<(&'a str, &'a str)>,
    datasets: Vec<DatasetFacts<'a>>,
}

fn pairs(list: &[crate::wire::KeyValue]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_str()))
        .collect()
}

fn parts(run: &Run) -> RunParts<'_> {
    RunParts {
        metrics: run
            .data
            .metrics
            .iter()
            .map(|m| (m.key.as_str(), m.value))
            .collect(),
        params: pairs(&run.data.params),
        tags: pairs(&run.data.tags),
        datasets: run
            .inputs
            .dataset_inputs
            .iter()
            .map(|d| DatasetFacts {
                name: &d.dataset.name,
                digest: &d.dataset.digest,
                context: d
                    .tags
                    .iter()
                    .find(|t| t.key == "mlflow.data.context")
                    .map(|t| t.value.as_str()),
            })
            .collect(),
    }
}

fn facts<'a>(run: &'a Run, p: &'a RunParts<'a>) -> RunFacts<'a> {
    let i = &run.info;
    RunFacts {
        run_id: &i.run_id,
        run_name: run.tag(RUN_NAME_TAG).unwrap_or(&i.run_name),
        experiment_id: &i.experiment_id,
        status: &i.status,
        start_time: i.start_time,
        end_time: i.end_time,
        artifact_uri: &i.artifact_uri,
        user_id: &i.user_id,
        lifecycle_stage: &i.lifecycle_stage,
        metrics: &p.metrics,
        params: &p.params,
        tags: &p.tags,
        datasets: &p.datasets,
    }
}

/// A page of the runs that match `filter`, in `order_by`'s order (then MLflow's tie-breakers).
pub(crate) fn runs(
    runs: Vec<Run>,
    filter: &str,
    order_by: &[String],
    max: usize,
    token: Option<&str>,
) -> Result<(Vec<Run>, Option<String>)> {
    let filter = RunFilter::parse(filter)?;
    let order = RunOrder::parse(order_by)?;
    let owned: Vec<RunParts> = runs.iter().map(parts).collect();
    let mut chosen: Vec<(usize, RunFacts)> = runs
        .iter()
        .zip(&owned)
        .map(|(r, p)| facts(r, p))
        .enumerate()
        .filter(|(_, f)| filter.matches(f))
        .collect();
    order.sort_by_facts(&mut chosen, |(_, f)| f);
    let page = search::paginate(chosen.len(), token, max)?;
    let picked: Vec<usize> = chosen[page.range].iter().map(|(i, _)| *i).collect();
    drop(chosen);
    let mut slots: Vec<Option<Run>> = runs.into_iter().map(Some).collect();
    let out = picked.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok((out, page.next_page_token))
}

/// A page of the experiments that match `filter`, in `order_by`'s order (by default the newest
/// first, then by id).
pub(crate) fn experiments(
    experiments: Vec<Experiment>,
    filter: &str,
    order_by: &[String],
    max: usize,
    token: Option<&str>,
) -> Result<(Vec<Experiment>, Option<String>)> {
    let filter = ExperimentFilter::parse(filter)?;
    let order = ExperimentOrder::parse(order_by)?;
    let tags: Vec<Vec<(&str, &str)>> = experiments
        .iter()
        .map(|e| {
            e.tags
                .iter()
                .map(|t| (t.key.as_str(), t.value.as_str()))
                .collect()
        })
        .collect();
    let mut chosen: Vec<(usize, ExperimentFacts)> = experiments
        .iter()
        .zip(&tags)
        .map(|(e, t)| ExperimentFacts {
            experiment_id: &e.experiment_id,
            name: &e.name,
            creation_time: Some(e.creation_time),
            last_update_time: Some(e.last_update_time),
            tags: t,
        })
        .enumerate()
        .filter(|(_, f)| filter.matches(f))
        .collect();
    order.sort_by_facts(&mut chosen, |(_, f)| f);
    let page = search::paginate(chosen.len(), token, max)?;
    let picked: Vec<usize> = chosen[page.range].iter().map(|(i, _)| *i).collect();
    drop(chosen);
    let mut slots: Vec<Option<Experiment>> = experiments.into_iter().map(Some).collect();
    let out = picked.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok((out, page.next_page_token))
}
