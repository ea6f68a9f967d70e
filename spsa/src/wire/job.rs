//! A job's wire form: each kind's tag, its fields in order when encoded, and read back in the same order
//! when decoded, side by side (the `job` rule of the grammar in [`crate::wire`]). A new kind of job adds its
//! tag and one arm to each function here.

use afx_host::Automation;

use crate::estimator::Scoring;
use crate::job::Job;

use super::WireError;
use super::frame::room;
use super::primitives::{Cursor, put_audio, put_f32s, put_str, put_u32};
use super::refs::Placement;

const RENDER: u8 = 1;
const SPSA: u8 = 2;
const FD: u8 = 3;
const TASK: u8 = 4;
const PART: u8 = 5;
const VALUES: u8 = 6;

/// Puts `job`'s tag and fields into `out` but for its bulk bytes (a task's request), which it returns to go
/// right after.
pub(super) fn put_job<'j>(out: &mut Vec<u8>, job: &'j Job, shared: Placement<'_>) -> Result<&'j [u8], WireError> {
    match job {
        Job::Render { input, theta, hop } => {
            out.push(RENDER);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_u32(out, *hop);
        }
        Job::Spsa { input, theta, hop, grad, epsilon, perturbations, seed, scoring } => {
            out.push(SPSA);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_u32(out, *hop);
            put_audio(out, grad, shared)?;
            out.extend_from_slice(&epsilon.to_le_bytes());
            put_u32(out, *perturbations);
            out.extend_from_slice(&seed.to_le_bytes());
            let (tag, window) = match scoring {
                Scoring::Whole => (0, 0),
                Scoring::Causal => (1, 0),
                Scoring::Window(w) => (2, *w),
            };
            out.push(tag);
            put_u32(out, window);
        }
        Job::SpsaPart { input, theta, hop, grad, epsilon, first, count, seed } => {
            out.push(PART);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_u32(out, *hop);
            put_audio(out, grad, shared)?;
            out.extend_from_slice(&epsilon.to_le_bytes());
            put_u32(out, *first);
            put_u32(out, *count);
            out.extend_from_slice(&seed.to_le_bytes());
        }
        Job::FiniteDifference { input, theta, hop, grad, step } => {
            out.push(FD);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_u32(out, *hop);
            put_audio(out, grad, shared)?;
            out.extend_from_slice(&step.to_le_bytes());
        }
        Job::RenderValues { input, sidechain, values } => {
            out.push(VALUES);
            put_audio(out, input, shared)?;
            match sidechain {
                None => out.push(0),
                Some(key) => {
                    out.push(1);
                    put_audio(out, key, shared)?;
                }
            }
            put_u32(out, values.len() as u32);
            for stage in values {
                out.extend_from_slice(&(stage.hop() as u64).to_le_bytes());
                put_u32(out, stage.num_params() as u32);
                put_f32s(out, stage.rows())?;
            }
        }
        Job::Task { name, request, renders } => {
            out.push(TASK);
            put_str(out, name)?;
            put_u32(out, *renders);
            // put_bytes, the bytes themselves left to the caller.
            room(out, 4 + request.len())?;
            put_u32(out, request.len() as u32);
            return Ok(request);
        }
    }
    Ok(&[])
}

impl Cursor<'_, '_> {
    /// A job's tag and fields, its audio in the frame or in the arena.
    pub(super) fn job(&mut self) -> Result<Job, WireError> {
        let r = self;
        Ok(match r.u8()? {
            RENDER => Job::Render { input: r.shared_audio()?, theta: r.f32s()?, hop: r.u32()? },
            SPSA => Job::Spsa {
                input: r.shared_audio()?,
                theta: r.f32s()?,
                hop: r.u32()?,
                grad: r.shared_audio()?,
                epsilon: r.f32()?,
                perturbations: r.u32()?,
                seed: r.u64()?,
                scoring: match (r.u8()?, r.u32()?) {
                    (0, _) => Scoring::Whole,
                    (1, _) => Scoring::Causal,
                    (2, w) => Scoring::Window(w),
                    (t, _) => return Err(WireError::Malformed(format!("scoring tag {t}"))),
                },
            },
            PART => Job::SpsaPart {
                input: r.shared_audio()?,
                theta: r.f32s()?,
                hop: r.u32()?,
                grad: r.shared_audio()?,
                epsilon: r.f32()?,
                first: r.u32()?,
                count: r.u32()?,
                seed: r.u64()?,
            },
            FD => Job::FiniteDifference {
                input: r.shared_audio()?,
                theta: r.f32s()?,
                hop: r.u32()?,
                grad: r.shared_audio()?,
                step: r.f32()?,
            },
            TASK => Job::Task { name: r.str()?, renders: r.u32()?, request: r.bytes()? },
            VALUES => {
                let input = r.shared_audio()?;
                let sidechain = match r.u8()? {
                    0 => None,
                    1 => Some(r.shared_audio()?),
                    t => return Err(WireError::Malformed(format!("sidechain tag {t}"))),
                };
                let stages = r.u32()? as usize;
                let values = (0..stages)
                    .map(|_| {
                        let (hop, num_params, rows) = (r.u64()?, r.u32()?, r.f32s()?);
                        let hop = usize::try_from(hop).unwrap_or(usize::MAX);
                        Automation::new(hop, num_params as usize, rows)
                            .map_err(|e| WireError::Malformed(format!("stage automation: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                Job::RenderValues { input, sidechain, values }
            }
            t => return Err(WireError::Malformed(format!("unknown job tag {t}"))),
        })
    }
}
