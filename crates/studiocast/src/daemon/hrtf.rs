//! The spatial engine's filters for the player's head-tracked mode: the
//! same design (SOFA set, method, max-rE, headphone EQ) as the sessions'
//! binaural renditions, at first order, made in the isolated designer
//! process and cached like theirs.

use std::path::Path;

use studiocast_server::hrtf::{FilterSource, HrtfFilters};
use studiocast_server::{BoxFuture, ControlError};

use crate::config::SpatialConfig;
use crate::filters::{filters_isolated, FilterRequest};

pub struct SpatialFilters {
    pub spatial: SpatialConfig,
}

impl FilterSource for SpatialFilters {
    fn hrtf(&self, order: u32, rate: u32) -> BoxFuture<'_, Result<HrtfFilters, ControlError>> {
        let spatial = self.spatial.clone();
        Box::pin(async move {
            let req = FilterRequest::for_session(&spatial, order as usize, rate)
                .map_err(|e| ControlError::Internal(e.to_string()))?;
            let f = tokio::task::spawn_blocking(move || filters_isolated(&req))
                .await
                .map_err(|e| ControlError::Internal(e.to_string()))?
                .map_err(|e| ControlError::Unavailable(format!("{e:#}")))?;
            Ok(HrtfFilters {
                sofa: file_name(&spatial.hrtf),
                method: f.method.to_string(),
                max_re: spatial.max_re,
                headphone_eq: spatial.headphone_eq.is_some(),
                order,
                rate,
                left: f.left,
                right: f.right,
            })
        })
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
