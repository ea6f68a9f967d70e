//! The worker protocol: length-prefixed binary frames over a pipe, little-endian, audio as raw f32.
//!
//! ```text
//! frame   = len:u32 payload[len]
//! payload = HELLO  version:u32 num_params:u32 chain:str          (worker → pool, once at start)
//!         | JOB    id:u64 job                                     (pool → worker)
//!         | RESULT id:u64 (OK output | ERR kind:u8 message:str)   (worker → pool)
//! job     = RENDER input:audio theta:f32s
//!         | SPSA   input:audio theta:f32s grad:audio epsilon:f32 perturbations:u32 seed:u64
//!         | FD     input:audio theta:f32s grad:audio step:f32
//!         | TASK   name:str renders:u32 request:bytes
//! output  = AUDIO audio | GRADIENT f32s | BYTES bytes
//! audio   = rate:u32 channels:u16 frames:u32 samples:f32[channels*frames] (planar)
//! f32s    = n:u32 f32[n];   str = n:u32 utf8[n];   bytes = n:u32 u8[n]
//! ```

use std::io::{self, Read, Write};

use afx_host::Audio;

use crate::job::{FailureKind, Job, JobOutput};

/// Bumped on any change to the format above.
pub const VERSION: u32 = 2;

/// Frames larger than this are refused: no legitimate job comes close, a corrupt length would.
const MAX_FRAME: usize = 1 << 31;

const HELLO: u8 = 1;
const JOB: u8 = 2;
const RESULT: u8 = 3;
const RENDER: u8 = 1;
const SPSA: u8 = 2;
const FD: u8 = 3;
const TASK: u8 = 4;
const OK_AUDIO: u8 = 1;
const OK_GRADIENT: u8 = 2;
const ERR: u8 = 3;
const OK_BYTES: u8 = 4;
const KIND_NON_FINITE: u8 = 1;
const KIND_PLUGIN: u8 = 2;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Hello { version: u32, num_params: u32, chain: String },
    Job { id: u64, job: Job },
    Result { id: u64, result: Result<JobOutput, FailureKind> },
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("pipe: {0}")]
    Io(#[from] io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Appends the frame for `message` to `out` (cleared first), ready to write in one call.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    match message {
        Message::Hello { version, num_params, chain } => {
            out.push(HELLO);
            put_u32(out, *version);
            put_u32(out, *num_params);
            put_str(out, chain);
        }
        Message::Job { id, job } => {
            let bulk = put_job(out, *id, job);
            out.extend_from_slice(bulk);
        }
        Message::Result { id, result } => {
            let result = result.as_ref().map(|output| match output {
                JobOutput::Audio(a) => OutputRef::Audio(a),
                JobOutput::Gradient(g) => OutputRef::Gradient(g),
                JobOutput::Bytes(b) => OutputRef::Bytes(b),
            });
            put_result(out, *id, result)
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

/// A job's output, borrowed: what a worker encodes without copying its buffers first.
#[derive(Debug, Clone, Copy)]
pub enum OutputRef<'a> {
    Audio(&'a Audio),
    Gradient(&'a [f32]),
    Bytes(&'a [u8]),
}

/// Like [`encode`] for `Message::Result`, from borrowed output.
pub fn encode_result(id: u64, result: Result<OutputRef<'_>, &FailureKind>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    put_result(out, id, result);
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

fn put_result(out: &mut Vec<u8>, id: u64, result: Result<OutputRef<'_>, &FailureKind>) {
    out.push(RESULT);
    out.extend_from_slice(&id.to_le_bytes());
    match result {
        Ok(OutputRef::Audio(a)) => {
            out.push(OK_AUDIO);
            put_audio(out, a);
        }
        Ok(OutputRef::Gradient(g)) => {
            out.push(OK_GRADIENT);
            put_f32s(out, g);
        }
        Ok(OutputRef::Bytes(b)) => {
            out.push(OK_BYTES);
            put_bytes(out, b);
        }
        Err(kind) => {
            out.push(ERR);
            let (tag, message) = match kind {
                FailureKind::NonFinite(m) => (KIND_NON_FINITE, m.clone()),
                other => (KIND_PLUGIN, other.to_string()),
            };
            out.push(tag);
            put_str(out, &message);
        }
    }
}

/// Like [`encode`] for `Message::Job { id, job }`, without owning the job, in two parts: the frame is `out`
/// followed by the returned bytes. A task's request (megabytes for a collect shard) is the second part, written
/// after `out` where it lies instead of being copied into it first; for other jobs it is empty.
pub fn encode_job<'j>(id: u64, job: &'j Job, out: &mut Vec<u8>) -> &'j [u8] {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    let bulk = put_job(out, id, job);
    let len = (out.len() - 4 + bulk.len()) as u32;
    out[..4].copy_from_slice(&len.to_le_bytes());
    bulk
}

/// Puts `job` into `out` but for its bulk bytes (a task's request), which it returns to go right after.
fn put_job<'j>(out: &mut Vec<u8>, id: u64, job: &'j Job) -> &'j [u8] {
    out.push(JOB);
    out.extend_from_slice(&id.to_le_bytes());
    match job {
        Job::Render { input, theta } => {
            out.push(RENDER);
            put_audio(out, input);
            put_f32s(out, theta);
        }
        Job::Spsa { input, theta, grad, epsilon, perturbations, seed } => {
            out.push(SPSA);
            put_audio(out, input);
            put_f32s(out, theta);
            put_audio(out, grad);
            out.extend_from_slice(&epsilon.to_le_bytes());
            put_u32(out, *perturbations);
            out.extend_from_slice(&seed.to_le_bytes());
        }
        Job::FiniteDifference { input, theta, grad, step } => {
            out.push(FD);
            put_audio(out, input);
            put_f32s(out, theta);
            put_audio(out, grad);
            out.extend_from_slice(&step.to_le_bytes());
        }
        Job::Task { name, request, renders } => {
            out.push(TASK);
            put_str(out, name);
            put_u32(out, *renders);
            // put_bytes, the bytes themselves left to the caller.
            put_u32(out, request.len() as u32);
            return request;
        }
    }
    &[]
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

/// Decodes a frame's payload (without the length prefix).
pub fn decode(payload: &[u8]) -> Result<Message, WireError> {
    let mut r = Cursor { data: payload, at: 0 };
    let message = match r.u8()? {
        HELLO => Message::Hello { version: r.u32()?, num_params: r.u32()?, chain: r.str()? },
        JOB => {
            let id = r.u64()?;
            let job = match r.u8()? {
                RENDER => Job::Render { input: r.audio()?, theta: r.f32s()? },
                SPSA => Job::Spsa {
                    input: r.audio()?,
                    theta: r.f32s()?,
                    grad: r.audio()?,
                    epsilon: r.f32()?,
                    perturbations: r.u32()?,
                    seed: r.u64()?,
                },
                FD => Job::FiniteDifference { input: r.audio()?, theta: r.f32s()?, grad: r.audio()?, step: r.f32()? },
                TASK => Job::Task { name: r.str()?, renders: r.u32()?, request: r.bytes()? },
                t => return Err(WireError::Malformed(format!("unknown job tag {t}"))),
            };
            Message::Job { id, job }
        }
        RESULT => {
            let id = r.u64()?;
            let result = match r.u8()? {
                OK_AUDIO => Ok(JobOutput::Audio(r.audio()?)),
                OK_GRADIENT => Ok(JobOutput::Gradient(r.f32s()?)),
                OK_BYTES => Ok(JobOutput::Bytes(r.bytes()?)),
                ERR => match (r.u8()?, r.str()?) {
                    (KIND_NON_FINITE, m) => Err(FailureKind::NonFinite(m)),
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len() as u32);
    out.extend_from_slice(b);
}

// Audio is most of every frame: samples are copied as raw bytes, which is little-endian f32 on the targets
// afx supports (checked at compile time below).
#[cfg(not(target_endian = "little"))]
compile_error!("the worker protocol copies f32 samples as little-endian bytes");

fn put_samples(out: &mut Vec<u8>, v: &[f32]) {
    out.extend_from_slice(bytemuck::cast_slice(v));
}

fn put_f32s(out: &mut Vec<u8>, v: &[f32]) {
    put_u32(out, v.len() as u32);
    put_samples(out, v);
}

fn put_audio(out: &mut Vec<u8>, a: &Audio) {
    put_u32(out, a.sample_rate());
    out.extend_from_slice(&(a.num_channels() as u16).to_le_bytes());
    put_u32(out, a.frames() as u32);
    out.reserve(a.num_channels() * a.frames() * 4);
    for c in a.channels() {
        put_samples(out, c);
    }
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
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

    fn audio(&mut self) -> Result<Audio, WireError> {
        let rate = self.u32()?;
        let channels = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        let frames = self.u32()? as usize;
        let planar = (0..channels).map(|_| self.floats(frames)).collect::<Result<Vec<_>, _>>()?;
        Audio::new(rate, planar).map_err(|e| WireError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let mut frame = vec![];
        encode(&m, &mut frame);
        let mut payload = vec![];
        assert!(read_frame(&mut &frame[..], &mut payload).unwrap());
        assert_eq!(decode(&payload).unwrap(), m);
    }

    #[test]
    fn every_message_round_trips_bit_exactly() {
        let audio = Audio::new(44_100, vec![vec![0.5, -0.25, f32::MIN_POSITIVE], vec![1.0, 0.0, -1.0]]).unwrap();
        round_trip(Message::Hello { version: VERSION, num_params: 14, chain: "eq_comp".into() });
        round_trip(Message::Job { id: 3, job: Job::Render { input: audio.clone(), theta: vec![0.1, 0.9] } });
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
            id: 10,
            job: Job::Task { name: "collect-shard".into(), request: vec![0, 255, 10, 13], renders: 64 },
        });
        round_trip(Message::Result { id: 6, result: Ok(JobOutput::Audio(audio)) });
        round_trip(Message::Result { id: 11, result: Ok(JobOutput::Bytes(b"{}".to_vec())) });
        round_trip(Message::Result { id: 7, result: Ok(JobOutput::Gradient(vec![1.0, -2.0])) });
        round_trip(Message::Result { id: 8, result: Err(FailureKind::NonFinite("NaN at 3".into())) });
        round_trip(Message::Result { id: 9, result: Err(FailureKind::Plugin("bad".into())) });
    }

    #[test]
    fn a_job_encoded_in_two_parts_is_the_frame_encoded_whole() {
        let audio = Audio::new(8000, vec![vec![0.25, -0.5, 1.0]]).unwrap();
        let jobs = [
            Job::Task { name: "collect-shard".into(), request: (0..=255).collect(), renders: 64 },
            Job::Render { input: audio, theta: vec![0.1, 0.9] },
        ];
        for job in jobs {
            let (mut whole, mut head) = (vec![], vec![]);
            encode(&Message::Job { id: 12, job: job.clone() }, &mut whole);
            let bulk = encode_job(12, &job, &mut head);
            assert_eq!([head.as_slice(), bulk].concat(), whole, "{job:?}");
            assert_eq!(bulk.is_empty(), !matches!(job, Job::Task { .. }));
        }
    }

    #[test]
    fn truncated_and_garbage_frames_are_errors_not_panics() {
        let mut frame = vec![];
        encode(&Message::Result { id: 1, result: Ok(JobOutput::Gradient(vec![1.0; 4])) }, &mut frame);
        for cut in 5..frame.len() {
            assert!(decode(&frame[4..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[99]).is_err());
        assert!(frame_len([0, 0, 0, 0]).is_err());
        let mut payload = vec![];
        assert!(!read_frame(&mut &[][..], &mut payload).unwrap(), "clean EOF");
        assert!(read_frame(&mut &[8u8, 0, 0, 0, 1][..], &mut payload).is_err(), "EOF mid-frame");
    }
}
