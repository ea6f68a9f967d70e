//! The codec: messages to frames and back (each job's own fields: see the `job` module).

use std::sync::Arc;

use afx_host::Audio;

use crate::job::{FailureKind, Job, JobOutput};

use super::frame::{finish, room};
use super::job::put_job as put_job_fields;
use super::primitives::{Cursor, OUTPUT, put_bytes, put_f32s, put_inline_audio, put_planar, put_str, put_u32};
use super::refs::{OutputAudio, Placement, SharedAudio, inline};
use super::{Message, WireError};

const HELLO: u8 = 1;
const JOB: u8 = 2;
const RESULT: u8 = 3;
const OK_AUDIO: u8 = 1;
const OK_GRADIENT: u8 = 2;
const ERR: u8 = 3;
const OK_BYTES: u8 = 4;
const OK_DOTS: u8 = 5;
const KIND_NON_FINITE: u8 = 1;
const KIND_PLUGIN: u8 = 2;
const KIND_TOO_LARGE: u8 = 3;

/// Appends the frame for `message` to `out` (cleared first), ready to write in one call; jobs carry their audio
/// inline. Fails, leaving `out` unspecified, when the frame would exceed `MAX_FRAME`.
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    match message {
        Message::Hello { version, layout, sandbox } => {
            out.push(HELLO);
            put_u32(out, *version);
            put_str(out, layout)?;
            put_str(out, sandbox)?;
        }
        Message::Job { id, job } => {
            let bulk = put_job(out, *id, job, &inline)?;
            room(out, bulk.len())?;
            out.extend_from_slice(bulk);
        }
        Message::Result { id, result } => {
            let result = result.as_ref().map(|output| match output {
                JobOutput::Audio(a) => OutputRef::Audio(a),
                JobOutput::Gradient(g) => OutputRef::Gradient(g),
                JobOutput::Bytes(b) => OutputRef::Bytes(b),
                JobOutput::SpsaDots(d) => OutputRef::SpsaDots(d),
            });
            put_result(out, *id, result)?
        }
    }
    finish(out, 0)
}

/// A job's output, borrowed: what a worker encodes without copying its buffers first.
#[derive(Debug, Clone, Copy)]
pub enum OutputRef<'a> {
    Audio(&'a Audio),
    Gradient(&'a [f32]),
    Bytes(&'a [u8]),
    SpsaDots(&'a [f64]),
}

/// Like [`encode`] for `Message::Result`, from borrowed output.
pub fn encode_result(id: u64, result: Result<OutputRef<'_>, &FailureKind>, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    put_result(out, id, result)?;
    finish(out, 0)
}

/// Like [`encode`] for the result of a job whose audio the worker wrote to its output buffer `at.buffer`.
pub fn encode_output_result(id: u64, at: OutputAudio, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    out.push(RESULT);
    out.extend_from_slice(&id.to_le_bytes());
    out.push(OK_AUDIO);
    out.push(OUTPUT);
    out.push(at.buffer);
    put_planar(out, at.planar);
    finish(out, 0).expect("a few dozen bytes fit in a frame");
}

fn put_result(out: &mut Vec<u8>, id: u64, result: Result<OutputRef<'_>, &FailureKind>) -> Result<(), WireError> {
    out.push(RESULT);
    out.extend_from_slice(&id.to_le_bytes());
    match result {
        Ok(OutputRef::Audio(a)) => {
            out.push(OK_AUDIO);
            put_inline_audio(out, a)?;
        }
        Ok(OutputRef::Gradient(g)) => {
            out.push(OK_GRADIENT);
            put_f32s(out, g)?;
        }
        Ok(OutputRef::Bytes(b)) => {
            out.push(OK_BYTES);
            put_bytes(out, b)?;
        }
        Ok(OutputRef::SpsaDots(d)) => {
            out.push(OK_DOTS);
            room(out, 4 + d.len() * 8)?;
            put_u32(out, d.len() as u32);
            out.extend_from_slice(bytemuck::cast_slice(d));
        }
        Err(kind) => {
            out.push(ERR);
            let (tag, message) = match kind {
                FailureKind::NonFinite(m) => (KIND_NON_FINITE, m.clone()),
                FailureKind::TooLarge(m) => (KIND_TOO_LARGE, m.clone()),
                other => (KIND_PLUGIN, other.to_string()),
            };
            out.push(tag);
            put_str(out, &message)?;
        }
    }
    Ok(())
}

/// Like [`encode`] for `Message::Job { id, job }`, without owning the job, in two parts: the frame is `out`
/// followed by the returned bytes. A task's request (megabytes for a collect shard) is the second part, written
/// after `out` where it lies instead of being copied into it first; for other jobs it is empty. Audio that
/// `shared` places in the arena goes as a SHARED reference, the rest inline.
pub fn encode_job<'j>(id: u64, job: &'j Job, out: &mut Vec<u8>, shared: Placement<'_>) -> Result<&'j [u8], WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    let bulk = put_job(out, id, job, shared)?;
    finish(out, bulk.len())?;
    Ok(bulk)
}

/// Puts `job` into `out` but for its bulk bytes (a task's request), which it returns to go right after.
fn put_job<'j>(out: &mut Vec<u8>, id: u64, job: &'j Job, shared: Placement<'_>) -> Result<&'j [u8], WireError> {
    out.push(JOB);
    out.extend_from_slice(&id.to_le_bytes());
    put_job_fields(out, job, shared)
}

/// Decodes a frame's payload (without the length prefix); SHARED audio is an error (see [`decode_with`]).
pub fn decode(payload: &[u8]) -> Result<Message, WireError> {
    decode_with(payload, &mut |_| Err(WireError::Malformed("shared audio without an arena".into())))
}

/// Decodes a frame's payload, SHARED audio as `resolve` reads it from the arena.
pub fn decode_with(
    payload: &[u8],
    resolve: &mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
) -> Result<Message, WireError> {
    let mut no_output = |_| Err(WireError::Malformed("output audio without output buffers".into()));
    decode_all(payload, resolve, &mut no_output)
}

/// Decodes a frame a worker sent, OUTPUT audio as `read` copies it out of that worker's output buffers.
pub fn decode_from_worker(
    payload: &[u8],
    read: &mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
) -> Result<Message, WireError> {
    let mut no_arena = |_| Err(WireError::Malformed("shared audio from a worker".into()));
    decode_all(payload, &mut no_arena, read)
}

fn decode_all(
    payload: &[u8],
    resolve: &mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
    read_output: &mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
) -> Result<Message, WireError> {
    let mut r = Cursor { data: payload, at: 0, resolve, read_output };
    let message = match r.u8()? {
        HELLO => {
            let (version, layout) = (r.u32()?, r.str()?);
            // A worker of another version is told apart by its version alone (the pool names both).
            let sandbox = if version == super::VERSION { r.str()? } else { String::new() };
            Message::Hello { version, layout, sandbox }
        }
        JOB => {
            let id = r.u64()?;
            Message::Job { id, job: r.job()? }
        }
        RESULT => {
            let id = r.u64()?;
            let result = match r.u8()? {
                OK_AUDIO => Ok(JobOutput::Audio(r.audio()?)),
                OK_DOTS => Ok(JobOutput::SpsaDots(r.f64s()?)),
                OK_GRADIENT => Ok(JobOutput::Gradient(r.f32s()?)),
                OK_BYTES => Ok(JobOutput::Bytes(r.bytes()?)),
                ERR => match (r.u8()?, r.str()?) {
                    (KIND_NON_FINITE, m) => Err(FailureKind::NonFinite(m)),
                    (KIND_TOO_LARGE, m) => Err(FailureKind::TooLarge(m)),
                    (_, m) => Err(FailureKind::Plugin(m)),
                },
                t => return Err(WireError::Malformed(format!("unknown result tag {t}"))),
            };
            Message::Result { id, result }
        }
        t => return Err(WireError::Malformed(format!("unknown message tag {t}"))),
    };
    if r.at != payload.len() {
        return Err(WireError::Malformed(format!("{} trailing bytes", payload.len() - r.at)));
    }
    Ok(message)
}
