//! A worker's random source: masking keys for outbound connections' frames (RFC 6455 §5.3: a
//! fresh, unpredictable key per frame, from a strong source of entropy) and the jitter of
//! their reconnection back-off.
//!
//! One generator per worker, so that drawing takes no lock: ChaCha12 (rand's `StdRng`),
//! a CSPRNG, seeded from the operating system when the worker starts. It makes its output 256
//! bytes (64 keys) at a time with SIMD, about a cycle per byte, so a key costs a few
//! nanoseconds: less than masking a 20-byte payload, and far less than the write it goes out in.

use rand::Rng;
#[cfg(test)]
use rand::SeedableRng;
use rand::rngs::StdRng;

/// A worker's random source.
pub(crate) struct WorkerRng {
    rng: StdRng,
}

impl WorkerRng {
    /// A generator seeded from the operating system.
    pub(crate) fn new() -> WorkerRng {
        WorkerRng {
            rng: rand::make_rng::<StdRng>(),
        }
    }

    /// A generator with a fixed seed (tests only).
    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> WorkerRng {
        WorkerRng {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next frame's key.
    #[inline]
    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        self.rng.next_u32().to_ne_bytes()
    }

    /// A uniform random number in [0, 1) (53 bits).
    pub(crate) fn next_unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl std::fmt::Debug for WorkerRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerRng")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_from_frame_to_frame_and_between_generators() {
        let mut a = WorkerRng::new();
        let mut b = WorkerRng::new();
        let from_a: Vec<[u8; 4]> = (0..64).map(|_| a.next_key()).collect();
        let from_b: Vec<[u8; 4]> = (0..64).map(|_| b.next_key()).collect();
        let mut distinct = from_a.clone();
        distinct.sort();
        distinct.dedup();
        // 64 draws of 32 bits: a repeat has odds of about 5e-7.
        assert!(distinct.len() >= 63, "{distinct:?}");
        assert_ne!(
            from_a, from_b,
            "two workers' generators must not share a seed"
        );
        for _ in 0..1000 {
            let unit = a.next_unit();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
        let mut seeded = WorkerRng::seeded(7);
        let mut again = WorkerRng::seeded(7);
        assert_eq!(seeded.next_key(), again.next_key());
    }
}
