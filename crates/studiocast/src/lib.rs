//! The studiocast binary's library half: command implementations and
//! configuration, so integration tests and other crates can reuse them.

pub mod accuracy;
pub mod auth;
pub mod config;
pub mod daemon;
pub mod encode;
pub mod filters;
pub mod http_client;
pub mod jobs;
pub mod render;
pub mod transcode;

/// A preset's default visibility, as the HTTP layer names it.
pub fn visibility_of(spec: &studiocast_media::PipelineSpec) -> studiocast_server::Visibility {
    match spec.visibility {
        studiocast_media::spec::PresetVisibility::Public => studiocast_server::Visibility::Public,
        studiocast_media::spec::PresetVisibility::Private => studiocast_server::Visibility::Private,
    }
}
