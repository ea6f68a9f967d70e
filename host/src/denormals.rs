//! Flush-to-zero and denormals-are-zero for the render thread.
//!
//! Denormal floats make IIR filters and reverb tails run orders of magnitude slower on x86 and make timing
//! depend on the signal. Real hosts set FTZ/DAZ on their audio threads; afx sets them for the span of a render
//! and restores the caller's mode afterwards.

/// While alive, the current thread flushes denormals to zero.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
    #[cfg(target_arch = "aarch64")]
    saved: u64,
}

#[cfg(target_arch = "x86_64")]
impl FlushDenormals {
    /// MXCSR bit 15 (FTZ) and bit 6 (DAZ).
    const FTZ_DAZ: u32 = 0x8040;

    pub fn enable() -> FlushDenormals {
        let mut saved: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR register into the valid, aligned u32 we point at; SSE is part
        // of the x86_64 baseline.
        unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut saved, options(nostack)) };
        let flushed = saved | Self::FTZ_DAZ;
        // SAFETY: ldmxcsr loads a value derived from the current MXCSR with only the FTZ and DAZ bits set,
        // which changes rounding of denormals only; it cannot fault because no reserved bit is set.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &flushed, options(nostack, readonly)) };
        FlushDenormals { saved }
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for FlushDenormals {
    fn drop(&mut self) {
        // SAFETY: restores the MXCSR value this guard read from the same register.
        unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &self.saved, options(nostack, readonly)) };
    }
}

#[cfg(target_arch = "aarch64")]
impl FlushDenormals {
    /// FPCR bit 24 (FZ).
    const FZ: u64 = 1 << 24;

    pub fn enable() -> FlushDenormals {
        let saved: u64;
        // SAFETY: reading FPCR has no side effects.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) saved, options(nomem, nostack)) };
        // SAFETY: setting FZ only changes how denormals are treated.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) saved | Self::FZ, options(nomem, nostack)) };
        FlushDenormals { saved }
    }
}

#[cfg(target_arch = "aarch64")]
impl Drop for FlushDenormals {
    fn drop(&mut self) {
        // SAFETY: restores the FPCR value this guard read.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) self.saved, options(nomem, nostack)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
impl FlushDenormals {
    pub fn enable() -> FlushDenormals {
        FlushDenormals {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denormals_flush_while_the_guard_lives_and_not_after() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        {
            let _guard = FlushDenormals::enable();
            assert_eq!(std::hint::black_box(tiny * half), 0.0);
        }
        assert!(std::hint::black_box(tiny * half) > 0.0);
    }
}
