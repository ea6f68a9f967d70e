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
//!
//! The parts: frames (the length prefix and its limit), the codec of messages, the wire form of each kind of
//! job (one file, encode beside decode), the primitives both write and read, and the references to audio
//! outside the frame.

mod codec;
mod frame;
mod job;
mod primitives;
mod refs;

use std::io;

use crate::job::{FailureKind, Job, JobOutput};

pub use codec::{
    OutputRef, decode, decode_from_worker, decode_with, encode, encode_job, encode_output_result, encode_result,
};
pub use frame::{frame_len, read_frame, write_frame};
pub use refs::{OutputAudio, Placement, Planar, SharedAudio, inline};

/// Bumped on any change to the format above.
pub const VERSION: u32 = 7;

/// Frames larger than this are refused: no legitimate job comes close, a corrupt length would.
pub const MAX_FRAME: usize = 1 << 31;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The worker's first frame: its protocol version, the chain it loaded, as the JSON of an
    /// [`afx_host::ChainLayout`] (parsed by the pool once the versions match), and the protections in force in
    /// it, as the JSON of an [`afx_sandbox::Report`] (empty when it runs without a sandbox).
    Hello {
        version: u32,
        layout: String,
        sandbox: String,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use afx_host::{Audio, Automation};

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
        round_trip(Message::Hello {
            version: VERSION,
            layout: r#"{"name":"eq_comp","stages":[]}"#.into(),
            sandbox: r#"{"enforced":["threads: at most 256"],"missing":[]}"#.into(),
        });
        round_trip(Message::Job { id: 3, job: Job::Render { hop: 0, input: audio.clone(), theta: vec![0.1, 0.9] } });
        for sidechain in [None, Some(audio.clone())] {
            let values = vec![
                Automation::constant(&[-30.0, 4.0]),
                Automation::constant(&[]),
                Automation::new(3, 1, vec![0.5, 0.25]).unwrap(),
            ];
            round_trip(Message::Job { id: 9, job: Job::RenderValues { input: audio.clone(), sidechain, values } });
        }
        round_trip(Message::Job {
            id: 4,
            job: Job::Spsa {
                hop: 0,
                scoring: crate::estimator::Scoring::Whole,
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
            job: Job::FiniteDifference {
                hop: 0,
                input: audio.clone(),
                theta: vec![0.5],
                grad: audio.clone(),
                step: 1e-2,
            },
        });
        round_trip(Message::Job {
            id: 13,
            job: Job::SpsaPart {
                hop: 0,
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
            Job::Render { hop: 0, input: audio, theta: vec![0.1, 0.9] },
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
        let at = OutputAudio { buffer: 1, planar: Planar { sample_rate: 48_000, channels: 2, frames: 3 } };
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
        let at =
            SharedAudio { batch: 7, offset: 4096, planar: Planar { sample_rate: 48_000, channels: 2, frames: 1000 } };
        let job = Job::Render { hop: 0, input: input.clone(), theta: vec![0.5] };
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

    #[test]
    fn every_frame_keeps_the_bytes_of_protocol_6() {
        // Written down from the encoder of 2442c95 (protocol 5), before the codec was split into files. Protocol 6
        // added automation: `RenderValues`' stages carry it (a 64-bit hop, the parameter count, the rows; u64::MAX
        // for fixed values), the jobs at θ carry a 32-bit hop after θ, and `Spsa` ends with its scoring (a tag
        // and a window). A change to any of these bytes is a change of protocol
        // (bump VERSION). `samples!()` is the INLINE audio below.
        macro_rules! samples {
            () => {
                "01401f00000100020000000000003f000080bf"
            };
        }
        let audio = Arc::new(Audio::new(8000, vec![vec![0.5, -1.0]]).unwrap());
        let frames = [
            (
                Message::Hello { version: VERSION, layout: "{}".into(), sandbox: String::new() },
                "0f0000000107000000020000007b7d00000000",
            ),
            (
                Message::Job { id: 1, job: Job::Render { hop: 0, input: audio.clone(), theta: vec![0.25] } },
                concat!("2900000002010000000000000001", samples!(), "010000000000803e", "00000000"),
            ),
            (
                Message::Job {
                    id: 2,
                    job: Job::Spsa {
                        hop: 0,
                        scoring: crate::estimator::Scoring::Window(5),
                        input: audio.clone(),
                        theta: vec![0.25],
                        grad: audio.clone(),
                        epsilon: 0.5,
                        perturbations: 3,
                        seed: 7,
                    },
                },
                concat!(
                    "5100000002020000000000000002",
                    samples!(),
                    "010000000000803e",
                    "00000000",
                    samples!(),
                    "0000003f030000000700000000000000",
                    "0205000000"
                ),
            ),
            (
                Message::Job {
                    id: 3,
                    job: Job::SpsaPart {
                        hop: 1024,
                        input: audio.clone(),
                        theta: vec![],
                        grad: audio.clone(),
                        epsilon: 0.5,
                        first: 1,
                        count: 2,
                        seed: 7,
                    },
                },
                concat!(
                    "4c00000002030000000000000005",
                    samples!(),
                    "00000000",
                    "00040000",
                    samples!(),
                    "0000003f01000000020000000700000000000000"
                ),
            ),
            (
                Message::Job {
                    id: 4,
                    job: Job::FiniteDifference {
                        hop: 0,
                        input: audio.clone(),
                        theta: vec![],
                        grad: audio.clone(),
                        step: 0.5,
                    },
                },
                concat!("3c00000002040000000000000003", samples!(), "00000000", "00000000", samples!(), "0000003f"),
            ),
            (
                Message::Job { id: 5, job: Job::Task { name: "t".into(), request: vec![9], renders: 2 } },
                "18000000020500000000000000040100000074020000000100000009",
            ),
            (
                Message::Job {
                    id: 6,
                    job: Job::RenderValues {
                        input: audio.clone(),
                        sidechain: Some(audio.clone()),
                        values: vec![Automation::constant(&[1.0])],
                    },
                },
                concat!(
                    "4900000002060000000000000006",
                    samples!(),
                    "01",
                    samples!(),
                    "01000000ffffffffffffffff01000000010000000000803f"
                ),
            ),
            (
                Message::Result { id: 7, result: Ok(JobOutput::Audio((*audio).clone())) },
                concat!("1d00000003070000000000000001", samples!()),
            ),
            (
                Message::Result { id: 8, result: Ok(JobOutput::Gradient(vec![0.5])) },
                "1200000003080000000000000002010000000000003f",
            ),
            (
                Message::Result { id: 9, result: Ok(JobOutput::Bytes(vec![1, 2])) },
                "1000000003090000000000000004020000000102",
            ),
            (
                Message::Result { id: 10, result: Ok(JobOutput::SpsaDots(vec![0.5])) },
                "16000000030a000000000000000501000000000000000000e03f",
            ),
            (
                Message::Result { id: 11, result: Err(FailureKind::NonFinite("n".into())) },
                "10000000030b000000000000000301010000006e",
            ),
            (
                Message::Result { id: 12, result: Err(FailureKind::Plugin("p".into())) },
                "10000000030c0000000000000003020100000070",
            ),
            (
                Message::Result { id: 13, result: Err(FailureKind::TooLarge("l".into())) },
                "10000000030d000000000000000303010000006c",
            ),
        ];
        for (message, want) in frames {
            let mut frame = vec![];
            encode(&message, &mut frame).unwrap();
            let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, want, "{message:?}");
            assert_eq!(decode(&frame[4..]).unwrap(), message);
        }
    }
}
