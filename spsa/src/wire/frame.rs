//! Frames: the length prefix, its limit ([`MAX_FRAME`]), and reading and writing whole frames.

use std::io::{self, Read, Write};

use super::{MAX_FRAME, WireError};

/// Checks that `more` bytes still fit after the payload so far in `out` (which starts with the 4-byte prefix),
/// before they are copied.
pub(super) fn room(out: &[u8], more: usize) -> Result<(), WireError> {
    let size = (out.len() - 4).saturating_add(more);
    if size > MAX_FRAME {
        return Err(WireError::TooLarge { size, limit: MAX_FRAME });
    }
    Ok(())
}

/// Writes the length prefix of the frame in `out` followed by `bulk` more bytes, once it is known to fit.
pub(super) fn finish(out: &mut [u8], bulk: usize) -> Result<(), WireError> {
    room(out, bulk)?;
    let len = u32::try_from(out.len() - 4 + bulk).expect("MAX_FRAME fits in u32");
    out[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
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
