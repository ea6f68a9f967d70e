//! The worker protocol: length-prefixed binary frames over a pipe, little-endian, audio as raw f32, either in
//! the frame or in the pool's shared arena (see [`crate::arena`]).
//!
//! ```text
//! frame   = len:u32 payload[len]
//! payload = HELLO  version:u32 layout:str                        (worker → pool, once at start)
//!         | JOB    id:u64 job                                     (pool → worker)
//!         | RESULT id:u64 (OK output | ERR kind:u8 message:str)   (worker → pool)
//! job     = RENDER input:audio theta:f32s
//!         | SPSA   input:audio theta:f32s grad:audio epsilon:f32 perturbations:u32 seed:u64
//!         | PART   input:audio theta:f32s grad:audio epsilon:f32 first:u32 count:u32 seed:u64
//!         | FD     input:audio theta:f32s grad:audio step:f32
//!         | TASK   name:str renders:u32 request:bytes
//!         | VALUES input:audio key:(0 | 1 audio) stages:u32 f32s[stages]
//! output  = AUDIO audio | GRADIENT f32s | BYTES bytes | DOTS n:u32 f64[n]
//! audio   = INLINE rate:u32 channels:u16 frames:u32 samples:f32[channels*frames]     (planar)
//!         | SHARED batch:u64 offset:u64 rate:u32 channels:u16 frames:u32             (jobs only)
//!         | OUTPUT buffer:u8 rate:u32 channels:u16 frames:u32                        (results only)
//! f32s    = n:u32 f32[n];   str = n:u32 utf8[n];   bytes = n:u32 u8[n]
//! ```
//!
//! A SHARED audio's samples lie in the pool's arena (a memory file every worker process inherits), planar, at
//! byte `offset`, written there for batch `batch`: the pool writes each distinct input of a batch once, and
//! the frames that go through the pipe stay a few dozen bytes whatever the audio's length. An OUTPUT audio's
//! samples lie, planar from byte 0, in output buffer `buffer` of the worker that sent it (see
//! [`crate::arena`]): a rendered batch item comes back without crossing the pipe; audio the buffers cannot
//! take comes INLINE. No frame's payload may exceed `MAX_FRAME` bytes: encoding a larger one is an error
//! ([`WireError::TooLarge`]), which fails the one job, not the worker.

use std::io::{self, Read, Write};
use std::sync::Arc;

use afx_host::Audio;

use crate::job::{FailureKind, Job, JobOutput};

/// Bumped on any change to the format above.
pub const VERSION: u32 = 5;

/// Frames larger than this are refused: no legitimate job comes close, a corrupt length would.
pub const MAX_FRAME: usize = 1 << 31;

const HELLO: u8 = 1;
const JOB: u8 = 2;
const RESULT: u8 = 3;
const RENDER: u8 = 1;
const SPSA: u8 = 2;
const FD: u8 = 3;
const TASK: u8 = 4;
const PART: u8 = 5;
const VALUES: u8 = 6;
const OK_AUDIO: u8 = 1;
const OK_GRADIENT: u8 = 2;
const ERR: u8 = 3;
const OK_BYTES: u8 = 4;
const OK_DOTS: u8 = 5;
const KIND_NON_FINITE: u8 = 1;
const KIND_PLUGIN: u8 = 2;
const KIND_TOO_LARGE: u8 = 3;
const INLINE: u8 = 1;
const SHARED: u8 = 2;
const OUTPUT: u8 = 3;

/// Where a job's audio lies in the pool's shared arena: `channels` planar runs of `frames` f32 from byte
/// `offset`, written for batch `batch` (an arena is rewritten between batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedAudio {
    pub batch: u64,
    pub offset: u64,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u32,
}

impl SharedAudio {
    /// Bytes of samples from `offset`.
    pub fn len(&self) -> usize {
        planar_bytes(self.channels, self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The bytes of `channels` planar runs of `frames` f32.
fn planar_bytes(channels: u16, frames: u32) -> usize {
    channels as usize * frames as usize * 4
}

/// Where a result's audio lies in its worker's output buffers: `channels` planar runs of `frames` f32 from
/// byte 0 of buffer `buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputAudio {
    pub buffer: u8,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: u32,
}

impl OutputAudio {
    /// Bytes of samples.
    pub fn len(&self) -> usize {
        planar_bytes(self.channels, self.frames)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The worker's first frame: its protocol version and the chain it loaded, as the JSON of an
    /// [`afx_host::ChainLayout`] (parsed by the pool once the versions match).
    Hello {
        version: u32,
        layout: String,
    },
    Job {
        id: u64,
        job: Job,
    },
    Result {
        id: u64,
        result: Result<JobOutput, FailureKind>,
    },
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("pipe: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("a frame of {size} bytes or more exceeds the worker protocol's limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Checks that `more` bytes still fit after the payload so far in `out` (which starts with the 4-byte prefix),
/// before they are copied.
fn room(out: &[u8], more: usize) -> Result<(), WireError> {
    let size = (out.len() - 4).saturating_add(more);
    if size > MAX_FRAME {
        return Err(WireError::TooLarge { size, limit: MAX_FRAME });
    }
    Ok(())
}

/// Writes the length prefix of the frame in `out` followed by `bulk` more bytes, once it is known to fit.
fn finish(out: &mut [u8], bulk: usize) -> Result<(), WireError> {
    room(out, bulk)?;
    let len = u32::try_from(out.len() - 4 + bulk).expect("MAX_FRAME fits in u32");
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// No audio is in an arena: every job's audio goes in its frame.
pub fn inline(_: &Arc<Audio>) -> Option<SharedAudio> {
    None
}

/// Appends the frame for `message` to `out` (cleared first), ready to write in one call; jobs carry their audio
/// inline. Fails, leaving `out` unspecified, when the frame would exceed `MAX_FRAME`.
pub fn encode(message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    match message {
        Message::Hello { version, layout } => {
            out.push(HELLO);
            put_u32(out, *version);
            put_str(out, layout)?;
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
    put_u32(out, at.sample_rate);
    out.extend_from_slice(&at.channels.to_le_bytes());
    put_u32(out, at.frames);
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

/// Where in the pool's arena a job's audio lies, if it does (else it goes in the frame).
pub type Placement<'a> = &'a dyn Fn(&Arc<Audio>) -> Option<SharedAudio>;

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
    match job {
        Job::Render { input, theta } => {
            out.push(RENDER);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
        }
        Job::Spsa { input, theta, grad, epsilon, perturbations, seed } => {
            out.push(SPSA);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_audio(out, grad, shared)?;
            out.extend_from_slice(&epsilon.to_le_bytes());
            put_u32(out, *perturbations);
            out.extend_from_slice(&seed.to_le_bytes());
        }
        Job::SpsaPart { input, theta, grad, epsilon, first, count, seed } => {
            out.push(PART);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
            put_audio(out, grad, shared)?;
            out.extend_from_slice(&epsilon.to_le_bytes());
            put_u32(out, *first);
            put_u32(out, *count);
            out.extend_from_slice(&seed.to_le_bytes());
        }
        Job::FiniteDifference { input, theta, grad, step } => {
            out.push(FD);
            put_audio(out, input, shared)?;
            put_f32s(out, theta)?;
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
                put_f32s(out, stage)?;
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

/// Reads one frame's payload into `buf` (blocking). `Ok(false)` at a clean end of stream.
pub fn read_frame(reader: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, WireError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let len = frame_len(len)?;
    buf.resize(len, 0);
    reader.read_exact(buf)?;
    Ok(true)
}

/// Checks a frame's length prefix.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Malformed(format!("frame length {len}")));
    }
    Ok(len)
}

/// Writes an encoded frame and flushes.
pub fn write_frame(writer: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame)?;
    writer.flush()
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
        HELLO => Message::Hello { version: r.u32()?, layout: r.str()? },
        JOB => {
            let id = r.u64()?;
            let job = match r.u8()? {
                RENDER => Job::Render { input: r.shared_audio()?, theta: r.f32s()? },
                SPSA => Job::Spsa {
                    input: r.shared_audio()?,
                    theta: r.f32s()?,
                    grad: r.shared_audio()?,
                    epsilon: r.f32()?,
                    perturbations: r.u32()?,
                    seed: r.u64()?,
                },
                PART => Job::SpsaPart {
                    input: r.shared_audio()?,
                    theta: r.f32s()?,
                    grad: r.shared_audio()?,
                    epsilon: r.f32()?,
                    first: r.u32()?,
                    count: r.u32()?,
                    seed: r.u64()?,
                },
                FD => Job::FiniteDifference {
                    input: r.shared_audio()?,
                    theta: r.f32s()?,
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
                    let values = (0..stages).map(|_| r.f32s()).collect::<Result<_, _>>()?;
                    Job::RenderValues { input, sidechain, values }
                }
                t => return Err(WireError::Malformed(format!("unknown job tag {t}"))),
            };
            Message::Job { id, job }
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

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    put_bytes(out, s.as_bytes())
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), WireError> {
    room(out, 4 + b.len())?;
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
    Ok(())
}

// Audio is most of every frame: samples are copied as raw bytes, which is little-endian f32 on the targets
// afx supports (checked at compile time below).
#[cfg(not(target_endian = "little"))]
compile_error!("the worker protocol copies f32 samples as little-endian bytes");

fn put_samples(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(bytemuck::cast_slice(v));
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) -> Result<(), WireError> {
    room(out, 4 + v.len() * 4)?;
    put_u32(out, v.len() as u32);
    put_samples(out, v);
    Ok(())
}

fn put_audio(out: &mut Vec<u8>, a: &Arc<Audio>, shared: Placement<'_>) -> Result<(), WireError> {
    let Some(at) = shared(a) else { return put_inline_audio(out, a) };
    out.push(SHARED);
    out.extend_from_slice(&at.batch.to_le_bytes());
    out.extend_from_slice(&at.offset.to_le_bytes());
    put_u32(out, at.sample_rate);
    out.extend_from_slice(&at.channels.to_le_bytes());
    put_u32(out, at.frames);
    Ok(())
}

fn put_inline_audio(out: &mut Vec<u8>, a: &Audio) -> Result<(), WireError> {
    let samples = a.num_channels().saturating_mul(a.frames()).saturating_mul(4);
    room(out, 11 + samples)?;
    let channels = u16::try_from(a.num_channels())
        .map_err(|_| WireError::Malformed(format!("{} channels: the protocol allows 65535", a.num_channels())))?;
    out.push(INLINE);
    put_u32(out, a.sample_rate());
    out.extend_from_slice(&channels.to_le_bytes());
    put_u32(out, a.frames() as u32);
    out.reserve(samples);
    for c in a.channels() {
        put_samples(out, c);
    }
    Ok(())
}

struct Cursor<'a, 'r> {
    data: &'a [u8],
    at: usize,
    resolve: &'r mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
    read_output: &'r mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
}

impl Cursor<'_, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| WireError::Malformed(format!("truncated at byte {}", self.at)))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn str(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?).map_err(|e| WireError::Malformed(e.to_string()))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, WireError> {
        let bytes = self.take(n.checked_mul(4).ok_or_else(|| WireError::Malformed("length overflow".into()))?)?;
        // The payload buffer has no alignment guarantee for f32: copy bytes into an f32 vector.
        let mut floats = vec![0.0f32; n];
        bytemuck::cast_slice_mut::<f32, u8>(&mut floats).copy_from_slice(bytes);
        Ok(floats)
    }

    fn f32s(&mut self) -> Result<Vec<f32>, WireError> {
        let n = self.u32()? as usize;
        self.floats(n)
    }

    fn f64s(&mut self) -> Result<Vec<f64>, WireError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.checked_mul(8).ok_or_else(|| WireError::Malformed("length overflow".into()))?)?;
        let mut floats = vec![0.0f64; n];
        bytemuck::cast_slice_mut::<f64, u8>(&mut floats).copy_from_slice(bytes);
        Ok(floats)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    /// A result's audio: in the frame, or in the worker's output buffers.
    fn audio(&mut self) -> Result<Audio, WireError> {
        match self.u8()? {
            INLINE => self.inline_audio(),
            OUTPUT => {
                let at = OutputAudio {
                    buffer: self.u8()?,
                    sample_rate: self.u32()?,
                    channels: self.u16()?,
                    frames: self.u32()?,
                };
                (self.read_output)(at)
            }
            SHARED => Err(WireError::Malformed("shared audio in a result".into())),
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }

    fn inline_audio(&mut self) -> Result<Audio, WireError> {
        let rate = self.u32()?;
        let channels = self.u16()? as usize;
        let frames = self.u32()? as usize;
        let planar = (0..channels).map(|_| self.floats(frames)).collect::<Result<Vec<_>, _>>()?;
        Audio::new(rate, planar).map_err(|e| WireError::Malformed(e.to_string()))
    }

    /// A job's audio: in the frame, or in the arena.
    fn shared_audio(&mut self) -> Result<Arc<Audio>, WireError> {
        match self.u8()? {
            INLINE => Ok(Arc::new(self.inline_audio()?)),
            SHARED => {
                let at = SharedAudio {
                    batch: self.u64()?,
                    offset: self.u64()?,
                    sample_rate: self.u32()?,
                    channels: self.u16()?,
                    frames: self.u32()?,
                };
                (self.resolve)(at)
            }
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let mut frame = vec![];
        encode(&m, &mut frame).unwrap();
        let mut payload = vec![];
        assert!(read_frame(&mut &frame[..], &mut payload).unwrap());
        assert_eq!(decode(&payload).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips_bit_exactly() {
        let audio = Audio::new(44_100, vec![vec![0.5, -0.25, f32::MIN_POSITIVE], vec![1.0, 0.0, -1.0]]).unwrap();
        let audio = Arc::new(audio);
        round_trip(Message::Hello { version: VERSION, layout: r#"{"name":"eq_comp","stages":[]}"#.into() });
        round_trip(Message::Job { id: 3, job: Job::Render { input: audio.clone(), theta: vec![0.1, 0.9] } });
        for sidechain in [None, Some(audio.clone())] {
            let values = vec![vec![-30.0, 4.0], vec![], vec![0.5]];
            round_trip(Message::Job { id: 9, job: Job::RenderValues { input: audio.clone(), sidechain, values } });
        }
        round_trip(Message::Job {
            id: 4,
            job: Job::Spsa {
                input: audio.clone(),
                theta: vec![0.5],
                grad: audio.clone(),
                epsilon: 1e-3,
                perturbations: 8,
                seed: u64::MAX,
            },
        });
        round_trip(Message::Job {
            id: 5,
            job: Job::FiniteDifference { input: audio.clone(), theta: vec![0.5], grad: audio.clone(), step: 1e-2 },
        });
        round_trip(Message::Job {
            id: 13,
            job: Job::SpsaPart {
                input: audio.clone(),
                theta: vec![0.5, 0.25],
                grad: audio.clone(),
                epsilon: 1e-2,
                first: 4,
                count: 3,
                seed: 99,
            },
        });
        round_trip(Message::Result { id: 14, result: Ok(JobOutput::SpsaDots(vec![1.5, -0.0, f64::MIN_POSITIVE])) });
        round_trip(Message::Result { id: 15, result: Err(FailureKind::TooLarge("3 GiB".into())) });
        round_trip(Message::Job {
            id: 10,
            job: Job::Task { name: "collect-shard".into(), request: vec![0, 255, 10, 13], renders: 64 },
        });
        round_trip(Message::Result { id: 6, result: Ok(JobOutput::Audio((*audio).clone())) });
        round_trip(Message::Result { id: 11, result: Ok(JobOutput::Bytes(b"{}".to_vec())) });
        round_trip(Message::Result { id: 7, result: Ok(JobOutput::Gradient(vec![1.0, -2.0])) });
        round_trip(Message::Result { id: 8, result: Err(FailureKind::NonFinite("NaN at 3".into())) });
        round_trip(Message::Result { id: 9, result: Err(FailureKind::Plugin("bad".into())) });
    }

    #[test]
    fn a_job_encoded_in_two_parts_is_the_frame_encoded_whole() {
        let audio = Arc::new(Audio::new(8000, vec![vec![0.25, -0.5, 1.0]]).unwrap());
        let jobs = [
            Job::Task { name: "collect-shard".into(), request: (0..=255).collect(), renders: 64 },
            Job::Render { input: audio, theta: vec![0.1, 0.9] },
        ];
        for job in jobs {
            let (mut whole, mut head) = (vec![], vec![]);
            encode(&Message::Job { id: 12, job: job.clone() }, &mut whole).unwrap();
            let bulk = encode_job(12, &job, &mut head, &inline).unwrap();
            assert_eq!([head.as_slice(), bulk].concat(), whole, "{job:?}");
            assert_eq!(bulk.is_empty(), !matches!(job, Job::Task { .. }));
        }
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors_not_panics() {
        let mut frame = vec![];
        encode(&Message::Result { id: 1, result: Ok(JobOutput::Gradient(vec![1.0; 4])) }, &mut frame).unwrap();
        for cut in 5..frame.len() {
            assert!(decode(&frame[4..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[99]).is_err());
        assert!(frame_len([0, 0, 0, 0]).is_err());
        let mut payload = vec![];
        assert!(!read_frame(&mut &[][..], &mut payload).unwrap(), "clean EOF");
        assert!(read_frame(&mut &[8u8, 0, 0, 0, 1][..], &mut payload).is_err(), "EOF mid-frame");
    }

    #[test]
    fn output_audio_goes_by_reference_and_only_a_pool_with_buffers_reads_it() {
        let at = OutputAudio { buffer: 1, sample_rate: 48_000, channels: 2, frames: 3 };
        let mut frame = vec![];
        encode_output_result(7, at, &mut frame);
        assert!(frame.len() < 32, "a reference, not samples: {} bytes", frame.len());
        let audio = Audio::new(48_000, vec![vec![1.0, 2.0, 3.0], vec![-1.0, -2.0, -3.0]]).unwrap();
        let mut asked = vec![];
        let message = decode_from_worker(&frame[4..], &mut |got| {
            asked.push(got);
            Ok(audio.clone())
        })
        .unwrap();
        assert_eq!(asked, [at]);
        assert_eq!(message, Message::Result { id: 7, result: Ok(JobOutput::Audio(audio)) });
        assert!(decode(&frame[4..]).is_err(), "a frame decoded without the worker's buffers");
    }

    #[test]
    fn shared_audio_goes_by_reference_and_comes_back_from_the_resolver() {
        let input = Arc::new(Audio::new(48_000, vec![vec![0.5; 1000], vec![-0.5; 1000]]).unwrap());
        let at = SharedAudio { batch: 7, offset: 4096, sample_rate: 48_000, channels: 2, frames: 1000 };
        let job = Job::Render { input: input.clone(), theta: vec![0.5] };
        let mut frame = vec![];
        let place = |a: &Arc<Audio>| Arc::ptr_eq(a, &input).then_some(at);
        assert!(encode_job(1, &job, &mut frame, &place).unwrap().is_empty());
        assert!(frame.len() < 64, "the samples went into the frame: {} bytes", frame.len());
        let mut asked = vec![];
        let decoded = decode_with(&frame[4..], &mut |a| {
            asked.push(a);
            Ok(input.clone())
        });
        assert_eq!(decoded.unwrap(), Message::Job { id: 1, job });
        assert_eq!(asked, vec![at]);
        assert!(decode(&frame[4..]).is_err(), "shared audio without an arena");
    }

    #[test]
    fn a_frame_over_the_limit_is_an_encoding_error_naming_its_size_not_a_wrapped_length() {
        // 2 GiB + 1 of zeroes: calloc maps them lazily, and the check comes before any copy.
        let request = vec![0u8; MAX_FRAME + 1];
        let job = Job::Task { name: "big".into(), request, renders: 1 };
        let error = encode_job(1, &job, &mut vec![], &inline).unwrap_err();
        assert!(matches!(error, WireError::TooLarge { size, limit: MAX_FRAME } if size > MAX_FRAME), "{error}");
        assert!(error.to_string().contains(&MAX_FRAME.to_string()), "{error}");
        let Job::Task { request, .. } = job else { unreachable!() };
        let result = encode_result(2, Ok(OutputRef::Bytes(&request)), &mut vec![]).unwrap_err();
        assert!(result.to_string().contains("exceeds"), "{result}");
    }
}
