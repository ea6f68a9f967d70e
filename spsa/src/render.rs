//! One render at θ on a worker's chain, as render jobs, the estimators and tasks all run it, and a chain's
//! error as the job's failure.

use afx_host::{Audio, Chain, ChainError, RenderError, RenderSettings};

use crate::job::FailureKind;

pub(crate) fn render(
    chain: &mut Chain,
    settings: &RenderSettings,
    input: &Audio,
    theta: &[f32],
    output: &mut Audio,
) -> Result<(), FailureKind> {
    let values = chain.plain_values(theta).map_err(failure)?;
    chain.render_into(input, &values, settings, output).map_err(failure)
}

pub(crate) fn failure(e: ChainError) -> FailureKind {
    match e {
        ChainError::Render(e @ RenderError::NonFinite { .. }) => FailureKind::NonFinite(e.to_string()),
        e => FailureKind::Plugin(e.to_string()),
    }
}
