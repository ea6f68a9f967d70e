//! One render at θ on a worker's chain, as render jobs, the estimators and tasks all run it, and a chain's
//! error as the job's failure.

use afx_host::{Audio, Chain, ChainError, RenderError, RenderSettings};

use crate::job::FailureKind;

/// Renders `input` at normalised θ: one row of the chain's P values, or a trajectory of rows at `hop` (see
/// [`crate::Job`]).
pub(crate) fn render(
    chain: &mut Chain,
    settings: &RenderSettings,
    input: &Audio,
    theta: &[f32],
    hop: u32,
    output: &mut Audio,
) -> Result<(), FailureKind> {
    if theta.len() == chain.num_params() {
        let values = chain.plain_values(theta).map_err(failure)?;
        return chain.render_into(input, &values, settings, output).map_err(failure);
    }
    let automation = chain.layout().plain_automation(theta, hop as usize).map_err(failure)?;
    chain.render_automated_into(input, None, &automation, settings, output).map_err(failure)
}

pub(crate) fn failure(e: ChainError) -> FailureKind {
    match e {
        ChainError::Render(e @ RenderError::NonFinite { .. }) => FailureKind::NonFinite(e.to_string()),
        e => FailureKind::Plugin(e.to_string()),
    }
}
