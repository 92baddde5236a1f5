//! The API's contract: an OpenAPI 3.1 document at
//! `GET /api/v1/openapi.json`, made from the code itself.
//!
//! * Each handler carries its `#[utoipa::path]` (route, parameters, body,
//!   every answer it gives) beside its code, and each request and answer
//!   type derives its schema from the definition serde uses.
//! * Scopes come from [`ROUTES`], the list the token middleware enforces:
//!   [`Scopes`] writes each token route's security requirement (the HTTP
//!   bearer scheme with the scope it needs), the answers every token route
//!   can give (401, 403, and for the routes under the request timeout,
//!   504), and `x-scope` and `x-audit-action`.
//! * The tests hold the document to the router: every route in [`ROUTES`]
//!   and [`OPEN_ROUTES`] is in it with its method, and nothing else is.
//!
//! schemathesis (`tests/schemathesis.rs` in the binary's crate) then checks
//! the daemon's answers against it.

use std::sync::OnceLock;

use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::auth::ROUTES;

/// The routes open to anyone (no token), as the router has them. With
/// [`ROUTES`] this is every route the daemon serves.
pub const OPEN_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/live/{id}/{*path}"),
    ("GET", "/vod/{id}/{*path}"),
    ("GET", "/embed/{id}"),
    ("GET", "/player/{file}"),
    ("GET", "/oembed"),
    ("GET", "/console"),
    ("GET", "/console/{file}"),
    ("GET", "/api/v1/hrtf/{file}"),
];

/// Token routes outside the request timeout: the WebSocket and the event
/// stream are long-lived by design, and `POST /api/v1/jobs` bounds its
/// JSON branch itself (an upload takes minutes).
const NO_TIMEOUT: &[&str] = &["/api/v1/sessions/{id}/meters", "/api/v1/events"];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "studiocast",
        description = "The media engine of the conservatoire's immersive studio: capture sessions, \
            transcoding jobs, live and on-demand HLS with binaural and stereo audio.\n\n\
            Control routes take `Authorization: Bearer <token>`; each needs one scope \
            (`x-scope`). A missing or unknown token gets 401, a token without the scope 403 \
            naming it. Control actions (`x-audit-action`) are written to the audit trail.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        crate::api::create,
        crate::api::list,
        crate::api::get_one,
        crate::api::stop,
        crate::playback::mint_for_session,
        crate::meters::socket,
        crate::api::devices,
        crate::api::presets,
        crate::api::disk_use,
        crate::api::pin,
        crate::api::unpin,
        crate::jobs::submit,
        crate::jobs::list,
        crate::jobs::get_one,
        crate::jobs::cancel,
        crate::playback::mint_for_job,
        crate::audit::list,
        crate::events::stream,
        crate::metrics::scrape,
        crate::health::healthz,
        crate::health::readyz,
        document_route,
        crate::origin::live,
        crate::origin::vod,
        crate::embed::page,
        crate::embed::asset,
        crate::embed::oembed,
        crate::console::page,
        crate::console::asset,
        crate::hrtf::filters,
    ),
    components(schemas(crate::MeterFrame, crate::ChannelMeter, crate::jobs::JobState)),
    modifiers(&Scopes, &OneSource),
    tags(
        (name = "sessions", description = "Capture sessions: start, watch, stop"),
        (name = "jobs", description = "Transcoding jobs: recordings become lessons"),
        (name = "operations", description = "Health, metrics, events, the audit trail"),
        (name = "playback", description = "The HLS origin, live and on demand"),
        (name = "player", description = "The embeddable player and oEmbed"),
        (name = "console", description = "The technician's console"),
    )
)]
struct Doc;

/// A job names its recording by `path` or by `session`, exactly one: a
/// rule across two fields, which a struct's derived schema cannot say.
struct OneSource;

impl Modify for OneSource {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder};
        let Some(schemas) = doc.components.as_mut().map(|c| &mut c.schemas) else {
            return;
        };
        let Some(fields) = schemas.remove("JobRequest") else {
            return;
        };
        let one = OneOfBuilder::new()
            .item(ObjectBuilder::new().required("path"))
            .item(ObjectBuilder::new().required("session"));
        let all = AllOfBuilder::new().item(fields).item(one);
        schemas.insert("JobRequest".into(), all.into());
    }
}

/// Writes what [`ROUTES`] says of each token route into its operation.
struct Scopes;

impl Modify for Scopes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `studiocast token new` (or `api_token`). The \
                         requirement lists the scope the route needs.",
                    ))
                    .build(),
            ),
        );
        for (method, path, scope, audit) in ROUTES {
            let path = openapi_path(path);
            let Some(op) = operation(doc, method, &path) else {
                // The tests catch a route the document lacks.
                continue;
            };
            op.security = Some(vec![SecurityRequirement::new("bearer", [scope.name()])]);
            error(op, "401", "No token, or one this daemon does not know");
            error(
                op,
                "403",
                &format!("The token lacks the scope `{}`", scope.name()),
            );
            error(
                op,
                "503",
                "The daemon is shutting down, or the part of it this route needs is absent",
            );
            if !NO_TIMEOUT.contains(&path.as_str()) {
                error(op, "504", "The request took longer than the API timeout");
            }
            let ext = op.extensions.get_or_insert_with(Default::default);
            ext.insert("x-scope".into(), scope.name().into());
            if let Some(a) = audit {
                ext.insert("x-audit-action".into(), (*a).into());
            }
        }
    }
}

/// An answer with the API's error body, unless the route documents that
/// status itself.
fn error(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        });
}

fn operation<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    method: &str,
    path: &str,
) -> Option<&'a mut Operation> {
    let item = doc.paths.paths.get_mut(path)?;
    match method {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PUT" => item.put.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
    }
}

/// The router's `{*path}` (a wildcard) is OpenAPI's `{path}`.
pub fn openapi_path(route: &str) -> String {
    route.replace("{*", "{")
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(Doc::openapi)
}

fn document_json() -> Bytes {
    static JSON: OnceLock<Bytes> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serialising these plain maps cannot fail; an empty body would
        // show at once in the tests if it ever did.
        Bytes::from(document().to_pretty_json().unwrap_or_default())
    })
    .clone()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn document_route() -> Response {
    let mut res = document_json().into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // It changes only with the binary.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_slice(&document_json()).unwrap()
    }

    fn methods(item: &Value) -> Vec<String> {
        ["get", "put", "post", "delete", "patch", "head", "options"]
            .into_iter()
            .filter(|m| item.get(*m).is_some())
            .map(|m| m.to_uppercase())
            .collect()
    }

    #[test]
    fn it_is_openapi_3_1_and_lists_every_route_and_nothing_else() {
        let d = doc();
        assert!(
            d["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            d["openapi"]
        );
        let documented: BTreeSet<(String, String)> = d["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(p, item)| methods(item).into_iter().map(move |m| (m, p.clone())))
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p, _, _)| (m.to_string(), openapi_path(p)))
            .chain(
                OPEN_ROUTES
                    .iter()
                    .map(|(m, p)| (m.to_string(), openapi_path(p))),
            )
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn each_token_route_names_its_scope_and_the_open_ones_none() {
        let d = doc();
        for (m, p, scope, audit) in ROUTES {
            let op = &d["paths"][openapi_path(p)][m.to_lowercase()];
            assert_eq!(op["security"][0]["bearer"][0], scope.name(), "{m} {p}");
            assert_eq!(op["x-scope"], scope.name(), "{m} {p}");
            assert_eq!(op["x-audit-action"].as_str(), *audit, "{m} {p}");
            for status in ["401", "403"] {
                assert!(op["responses"][status].is_object(), "{m} {p} {status}");
            }
        }
        for (m, p) in OPEN_ROUTES {
            let op = &d["paths"][openapi_path(p)][m.to_lowercase()];
            let sec = op["security"].as_array().unwrap();
            assert!(sec.iter().all(|r| r.get("bearer").is_none()), "{m} {p}");
            assert!(op["responses"].get("401").is_none() || *p == "/oembed");
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let d = doc();
        let mut seen = BTreeSet::new();
        for item in d["paths"].as_object().unwrap().values() {
            for m in methods(item) {
                let id = item[m.to_lowercase()]["operationId"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(seen.insert(id.clone()), "{id} twice");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(v: &Value, refs: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        refs.push(r.clone());
                    }
                    m.values().for_each(|x| walk(x, refs));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
                _ => {}
            }
        }
        let d = doc();
        let mut refs = Vec::new();
        walk(&d, &mut refs);
        assert!(refs.len() > 20, "{}", refs.len());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap();
            assert!(d["components"]["schemas"][name].is_object(), "{r}");
        }
    }

    /// The filters' schema is a twin of the borrowed struct that writes
    /// them: the same fields.
    #[test]
    fn the_filters_schema_has_the_documents_fields() {
        let f = crate::hrtf::HrtfFilters {
            sofa: "set.sofa".into(),
            method: "magls".into(),
            max_re: true,
            headphone_eq: false,
            order: 1,
            rate: 48_000,
            left: vec![vec![0.0; 4]; 4],
            right: vec![vec![0.0; 4]; 4],
        };
        let written: Value = serde_json::from_slice(&crate::hrtf::to_json(&f)).unwrap();
        let keys: BTreeSet<&String> = written.as_object().unwrap().keys().collect();
        let d = doc();
        let props = d["components"]["schemas"]["HrtfDoc"]["properties"]
            .as_object()
            .unwrap();
        assert_eq!(keys, props.keys().collect::<BTreeSet<_>>());
    }
}
