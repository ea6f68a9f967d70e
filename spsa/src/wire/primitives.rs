//! The protocol's primitives: numbers, strings, bytes, f32s and audio (in the frame, or by reference to the
//! arena or a worker's output buffers) written into a frame, and read back by a [`Cursor`].

use std::sync::Arc;

use afx_host::Audio;

use super::WireError;
use super::frame::room;
use super::refs::{OutputAudio, Placement, Planar, SharedAudio};

pub(super) const INLINE: u8 = 1;
pub(super) const SHARED: u8 = 2;
pub(super) const OUTPUT: u8 = 3;

pub(super) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(super) fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), WireError> {
    put_bytes(out, s.as_bytes())
}

pub(super) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), WireError> {
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

pub(super) fn put_f32s(out: &mut Vec<u8>, v: &[f32]) -> Result<(), WireError> {
    room(out, 4 + v.len() * 4)?;
    put_u32(out, v.len() as u32);
    put_samples(out, v);
    Ok(())
}

pub(super) fn put_audio(out: &mut Vec<u8>, a: &Arc<Audio>, shared: Placement<'_>) -> Result<(), WireError> {
    let Some(at) = shared(a) else { return put_inline_audio(out, a) };
    out.push(SHARED);
    out.extend_from_slice(&at.batch.to_le_bytes());
    out.extend_from_slice(&at.offset.to_le_bytes());
    put_planar(out, at.planar);
    Ok(())
}

pub(super) fn put_planar(out: &mut Vec<u8>, planar: Planar) {
    put_u32(out, planar.sample_rate);
    out.extend_from_slice(&planar.channels.to_le_bytes());
    put_u32(out, planar.frames);
}

pub(super) fn put_inline_audio(out: &mut Vec<u8>, a: &Audio) -> Result<(), WireError> {
    let samples = a.num_channels().saturating_mul(a.frames()).saturating_mul(4);
    room(out, 11 + samples)?;
    let planar = Planar::of(a).ok_or_else(|| {
        WireError::Malformed(format!(
            "{} channels of {} frames: the protocol allows 65535 channels of 2^32 - 1 frames",
            a.num_channels(),
            a.frames()
        ))
    })?;
    out.push(INLINE);
    put_planar(out, planar);
    out.reserve(samples);
    for c in a.channels() {
        put_samples(out, c);
    }
    Ok(())
}

pub(super) struct Cursor<'a, 'r> {
    pub(super) data: &'a [u8],
    pub(super) at: usize,
    pub(super) resolve: &'r mut dyn FnMut(SharedAudio) -> Result<Arc<Audio>, WireError>,
    pub(super) read_output: &'r mut dyn FnMut(OutputAudio) -> Result<Audio, WireError>,
}

impl Cursor<'_, '_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| WireError::Malformed(format!("truncated at byte {}", self.at)))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(super) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub(super) fn f32(&mut self) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub(super) fn str(&mut self) -> Result<String, WireError> {
        String::from_utf8(self.bytes()?).map_err(|e| WireError::Malformed(e.to_string()))
    }

    pub(super) fn bytes(&mut self) -> Result<Vec<u8>, WireError> {
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

    pub(super) fn f32s(&mut self) -> Result<Vec<f32>, WireError> {
        let n = self.u32()? as usize;
        self.floats(n)
    }

    pub(super) fn f64s(&mut self) -> Result<Vec<f64>, WireError> {
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
    pub(super) fn audio(&mut self) -> Result<Audio, WireError> {
        match self.u8()? {
            INLINE => self.inline_audio(),
            OUTPUT => {
                let at = OutputAudio { buffer: self.u8()?, planar: self.planar()? };
                (self.read_output)(at)
            }
            SHARED => Err(WireError::Malformed("shared audio in a result".into())),
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }

    fn planar(&mut self) -> Result<Planar, WireError> {
        Ok(Planar { sample_rate: self.u32()?, channels: self.u16()?, frames: self.u32()? })
    }

    fn inline_audio(&mut self) -> Result<Audio, WireError> {
        let Planar { sample_rate, channels, frames } = self.planar()?;
        let planar = (0..channels).map(|_| self.floats(frames as usize)).collect::<Result<Vec<_>, _>>()?;
        Audio::new(sample_rate, planar).map_err(|e| WireError::Malformed(e.to_string()))
    }

    /// A job's audio: in the frame, or in the arena.
    pub(super) fn shared_audio(&mut self) -> Result<Arc<Audio>, WireError> {
        match self.u8()? {
            INLINE => Ok(Arc::new(self.inline_audio()?)),
            SHARED => {
                let at = SharedAudio { batch: self.u64()?, offset: self.u64()?, planar: self.planar()? };
                (self.resolve)(at)
            }
            t => Err(WireError::Malformed(format!("unknown audio tag {t}"))),
        }
    }
}
