//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Petri API", description = "The daemon's HTTP API. Every route but /healthz needs `Authorization: Bearer <token>`: the owner's (the file `token` in the Petri home) or one made with `petri token create`, whose scopes (read, submit, admin, tracking) decide what it may do; over the daemon's Unix socket no token is needed, the kernel says who calls. The caller's role (admin, member, viewer) and whose a job, notebook or secret is decide the rest."),
    paths(
        crate::jobs::submit,
        crate::jobs::list,
        crate::jobs::show,
        crate::jobs::cancel,
        crate::jobs::hold,
        crate::jobs::release,
        crate::jobs::log,
        crate::events::follow_log,
        crate::events::stream,
        crate::system::status,
        crate::system::gpus,
        crate::system::gpu_history,
        crate::system::settings,
        crate::notebooks::start,
        crate::notebooks::list,
        crate::notebooks::show,
        crate::notebooks::stop,
        crate::notebooks::remove,
        crate::notebooks::open,
        crate::notebooks::images,
        crate::notebooks::build_image,
        crate::tokens::create,
        crate::tokens::list,
        crate::tokens::revoke,
        crate::secrets::list,
        crate::secrets::put,
        crate::secrets::remove,
        crate::clusters::list,
        crate::clusters::add,
        crate::clusters::remove,
        crate::clusters::check,
        crate::artifacts::gc,
        crate::artifacts::usage,
        crate::artifacts::home_usage,
        crate::artifacts::get,
        crate::pipelines::list,
        crate::pipelines::show,
        crate::pipelines::save,
        crate::pipelines::remove,
        crate::pipelines::validate,
        crate::pipelines::schema,
        crate::pipelines::backfill,
        crate::pipelines::components,
        crate::pipelines::run,
        crate::pipelines::runs,
        crate::pipelines::show_run,
        crate::pipelines::cancel,
        crate::pipelines::retry,
        crate::tracking::experiments,
        crate::tracking::runs,
        crate::tracking::run,
        crate::tracking::metric_history,
        crate::models::list,
        crate::models::show,
        crate::models::delete,
        crate::models::register,
        crate::models::version,
        crate::models::delete_version,
        crate::models::file,
        crate::models::set_alias,
        crate::models::delete_alias,
        crate::models::upload,
        crate::serving::list,
        crate::serving::serve,
        crate::serving::show,
        crate::serving::unserve,
        crate::serving::stats,
        crate::users::me,
        crate::users::list,
        crate::users::put,
        crate::users::set_quota,
        crate::users::shares,
        crate::users::audit,
    ),
    components(schemas(petri_daemon::Event, petri_daemon::JobChange, petri_domain::ErrorCode, petri_domain::ListOrder)),
    modifiers(&Bearer),
    security(("token" = []))
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
